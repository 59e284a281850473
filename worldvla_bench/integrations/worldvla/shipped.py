"""Tiny WorldVLA checkpoints shipped inside the package, and the export that makes them.

A fresh clone can run `--policy worldvla`, `wm-eval --model worldvla` and the world-model probes
without training first: `checkpoint=tiny-libero-goal` (the default) names a file in `weights/`.
`make tiny-checkpoints` regenerates every shipped file from scratch (scripted-expert demos,
`worldvla-bench train`, then `export_checkpoint`); `weights/README.md` lists what each was
trained on.

An export keeps what loading and evaluation read (config, weights, chunk size, action mask,
instructions, training arguments, step) and drops what only resuming needs (optimizer, RNG, the
loss history); float weights are stored as float16 (`load_checkpoint` widens them back to the
model's float32: the halving changes the logits by about 1e-3 relative, and is what keeps the
tiny model under 5 MB).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.checkpoints import (  # noqa: F401 - the shipped names
    DEFAULT_CHECKPOINT,
    SHIPPED,
    WEIGHTS_DIR,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    shipped_path,
)

#: the largest file we ship (bytes)
MAX_SHIPPED_BYTES = 5 * 1024 * 1024
#: payload keys an export keeps (see trainer._payload)
KEPT_KEYS = ("format", "config", "train_args", "chunk_size", "action_mask", "world_model_weight",
             "instruction_source", "instructions", "data", "stage", "vq_step", "step",
             "elapsed_s", "torch_version")


def export_checkpoint(source: str | Path, target: str | Path, half: bool = True) -> Path:
    """Write the evaluation part of checkpoint `source` (a file or training directory) to
    `target`, float weights as float16 when `half`; returns the written path."""
    payload = export_payload(read_checkpoint(source), str(resolve_checkpoint(source)), half)
    return save_checkpoint(Path(target), payload)


def export_payload(data: dict[str, Any], source: str, half: bool = True) -> dict[str, Any]:
    """The evaluation part of checkpoint payload `data` (read from, or to be saved as, `source`),
    float weights as float16 when `half`, with an `exported` record (source, step, planned)."""
    payload: dict[str, Any] = {key: data[key] for key in KEPT_KEYS if key in data}
    payload["state_dict"] = {
        name: (tensor.half() if half and tensor.is_floating_point() else tensor)
        for name, tensor in data["state_dict"].items()}
    planned = int((data.get("train_args") or {}).get("steps", 0))
    payload["exported"] = {"source": source, "step": int(data["step"]),
                           "planned_steps": planned, "half": bool(half)}
    return payload


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser("export-checkpoint",
                            help="write a small evaluation-only copy of a WorldVLA checkpoint")
    parser.add_argument("source", help="checkpoint file or training directory")
    parser.add_argument("target", help="output .pt file")
    parser.add_argument("--full-precision", action="store_true",
                        help="keep float32 weights (default: float16)")
    parser.set_defaults(func=cmd_export)
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    path = export_checkpoint(args.source, args.target, half=not args.full_precision)
    size = path.stat().st_size
    print(f"written: {path} ({size / 2**20:.2f} MiB)")
    if size > MAX_SHIPPED_BYTES:
        raise BenchError(f"{path} is {size / 2**20:.2f} MiB, over the {MAX_SHIPPED_BYTES // 2**20}"
                         " MiB we ship")
    return 0


def describe_shipped() -> list[str]:
    """One line per shipped checkpoint: name, file, size, or 'missing'."""
    lines = []
    for name, file in SHIPPED.items():
        path = WEIGHTS_DIR / file
        state = f"{path.stat().st_size / 2**20:.2f} MiB" if path.exists() else "missing"
        lines.append(f"{name:26s} {path} ({state})")
    return lines
