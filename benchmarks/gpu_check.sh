#!/usr/bin/env bash
# GPU check (issue 24): on a machine with a CUDA GPU, times a released-size random Chameleon
# (7B layout, bf16, random weights built from its config: nothing downloaded) decoding WorldVLA
# action chunks at batch 1/8/32, and a short LIBERO eval with EGL on the GPU; prints one table.
# Bounded to 8 minutes. Where no GPU is visible it says so and exits with status 2.
#   benchmarks/gpu_check.sh [--json out.json] [--batches 1 8 32]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch on $(hostname) (torch.cuda.is_available() is" \
         "False): nothing to time; run this on a machine with an NVIDIA GPU." >&2
    exit 2
fi
exec timeout --signal=INT 480 "$PY" benchmarks/gpu_check.py "$@"
