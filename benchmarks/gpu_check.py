"""The GPU check behind `benchmarks/gpu_check.sh` (run that; it checks for a GPU first).

Two timings, one table (stdout; JSON with --json):

1. A released-size WorldVLA model: transformers' Chameleon with the 7B layout (`ChameleonConfig`
   defaults: hidden 4096, 32 layers, 32 heads, MLP 11008, vocabulary 65536), bfloat16, RANDOM
   weights built from the config on the GPU (nothing downloaded), with a random VQ-GAN of
   Chameleon's layout (`ChameleonVQVAEConfig` defaults). Our adapter (`ChameleonWorldVLA`: the
   released vocabulary ids, WorldVLA's 256 px prompts with the previous and current frame, the
   action attention mask as a 4-d mask, SDPA, KV cache) decodes action chunks at batch 1, 8, 32:
   `--blocks` K action blocks' worth of new tokens (9 K + 1, K = 5: 46 tokens; a random model
   never ends its turn, so every chunk costs exactly that), timed after a warm-up, as
   seconds per call, chunks per second and new tokens per second. Out of memory is reported.
2. A short LIBERO eval with EGL on the GPU (`MUJOCO_GL=egl`, device 0): `worldvla-bench eval`
   of libero_spatial task 0, 2 trials of 60 steps at 256 px, with the `random` policy (the
   render and physics rate) and the tiny `worldvla` policy on CUDA (`device=cuda`, bf16); env
   steps per second and the renderer the run's manifest recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


#: `--smoke`: the same code on CPU with a small layout (checks the script where no GPU is)
SMOKE_LAYOUT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 2}
SMOKE_VQ = {"base_channels": 32, "channel_multiplier": [1, 1, 2, 2, 4], "num_res_blocks": 1,
            "embed_dim": 32, "latent_channels": 32}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def released_size_adapter(device: str = "cuda", smoke: bool = False):
    """A random 7B-layout Chameleon in bf16 on `device`, wrapped as `ChameleonWorldVLA`
    (`smoke`: a small layout in float32, for a check of this script on CPU)."""
    import torch
    from tokenizers import Tokenizer, models
    from transformers import (
        ChameleonConfig,
        ChameleonForConditionalGeneration,
        ChameleonVQVAE,
        ChameleonVQVAEConfig,
    )

    from worldvla_bench.integrations.worldvla.chameleon_adapter import (
        ChameleonWorldVLA,
        TokenIds,
    )

    # Chameleon's vocabulary as far as WorldVLA uses it: image codes at 4..8195 (8192 codes),
    # <eoss> 8196, <racm3:break> 8197, <reservedNNNNN> at NNNNN + 4, text tokens above
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    digits = "ABCDEFGHIJ"
    vocab.update({"IMGIMG" + "".join(digits[int(d)] for d in str(c)) + "Z": 4 + c
                  for c in range(8192)})
    vocab.update({"<eoss>": 8196, "<racm3:break>": 8197})
    vocab.update({f"<reserved{n:05d}>": n + 4 for n in range(8198 - 4 + 1, 16384)
                  if n + 4 not in (8196, 8197)})
    text = {chr(c): 20000 + i for i, c in enumerate(range(32, 127))}
    vocab.update(text)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    config = ChameleonConfig(vocabulary_map=vocab, **(SMOKE_LAYOUT if smoke else {}))
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    t0 = time.perf_counter()
    default = torch.get_default_dtype()
    # built in its dtype on the device: 7B parameters in float32 first would need 28 GB
    torch.set_default_dtype(torch.float32 if smoke else torch.bfloat16)
    try:
        with torch.device(device):
            model = ChameleonForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    with torch.device(device):
        vq = ChameleonVQVAE(ChameleonVQVAEConfig(**(SMOKE_VQ if smoke else {}))).float()
    _sync(device)
    build_s = time.perf_counter() - t0
    ids = TokenIds.from_vocab(vocab, config.vocab_size)
    return ChameleonWorldVLA(model.eval(), vq.eval(), tokenizer, ids), build_s


def time_chunks(adapter, batch: int, blocks: int, repeats: int = 2) -> dict:
    import numpy as np
    import torch

    device = str(adapter.device)

    rng = np.random.default_rng(batch)
    frames = rng.integers(0, 255, (2 * batch, 256, 256, 3), dtype=np.uint8)
    texts = ["put the black bowl on the plate"] * batch
    new_tokens = 9 * blocks + 1
    row = {"batch": batch, "new_tokens": new_tokens}
    try:
        adapter.predict(texts, list(frames[:batch]), frames[batch:], max_new_tokens=new_tokens)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = adapter.predict(texts, list(frames[:batch]), frames[batch:],
                                  max_new_tokens=new_tokens)
        _sync(device)
        seconds = (time.perf_counter() - t0) / repeats
        row.update(prompt_tokens=len(out.prompts[0]), s_per_call=round(seconds, 3),
                   chunks_per_s=round(batch / seconds, 2),
                   tokens_per_s=round(batch * new_tokens / seconds, 1),
                   peak_gb=(round(torch.cuda.max_memory_allocated() / 2**30, 1)
                            if device.startswith("cuda") else None))
    except torch.cuda.OutOfMemoryError:
        row["error"] = "out of GPU memory"
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def libero_eval(policy: str, policy_args: list[str], trials: int, steps: int) -> dict:
    env = {**os.environ, "MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "0",
           "PYOPENGL_PLATFORM": "egl"}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        args = [sys.executable, "-m", "worldvla_bench", "eval", "--suite", "libero_spatial",
                "--tasks", "0", "--trials", str(trials), "--max-steps", str(steps),
                "--image-size", "256", "--workers", "1", "--policy", policy, "--run", str(run),
                "--no-progress"]
        for item in policy_args:
            args += ["--policy-arg", item]
        t0 = time.perf_counter()
        done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            return {"policy": policy, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        from worldvla_bench.manifest import read_manifest
        from worldvla_bench.records import read_episodes

        records = read_episodes(run)
        manifest = read_manifest(run) or {}
    steps_done = sum(r["steps"] for r in records)
    busy = sum(r["wall_time_s"] for r in records)
    render = manifest.get("render") or {}
    return {"policy": policy, "episodes": len(records), "steps": steps_done,
            "steps_per_s": round(steps_done / busy, 2) if busy else None,
            "errors": sum(1 for r in records if r.get("error")),
            "run_wall_s": round(wall, 1),
            "renderer": render.get("gl_renderer") or render.get("mujoco_gl") or "?"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--blocks", type=int, default=5, help="action blocks per chunk (K)")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--smoke", action="store_true",
                        help="check this script on CPU: a small random layout, no LIBERO eval")
    args = parser.parse_args()
    import torch

    name = "CPU smoke run (small layout)" if args.smoke else torch.cuda.get_device_name(0)
    print(f"gpu_check on {name} (torch {torch.__version__})", file=sys.stderr, flush=True)
    adapter, build_s = released_size_adapter("cpu" if args.smoke else "cuda", args.smoke)
    print(f"random 7B-layout Chameleon built in {build_s:.1f} s", file=sys.stderr, flush=True)
    decode = []
    for batch in args.batches:
        decode.append(time_chunks(adapter, batch, args.blocks))
        print(f"  {decode[-1]}", file=sys.stderr, flush=True)
    del adapter
    evals = []
    if not args.smoke:
        torch.cuda.empty_cache()
        evals = [libero_eval("random", ["chunk_size=5"], args.trials, args.steps),
                 libero_eval("worldvla", ["device=cuda"], args.trials, args.steps)]
    lines = [f"# GPU check: {name}", "",
             "| what | batch | tokens in / out | s per call | chunks/s | new tokens/s | peak GB |",
             "|---|---|---|---|---|---|---|"]
    what = ("small layout (smoke), float32, CPU" if args.smoke
            else "Chameleon 7B layout, random, bf16, SDPA + action mask")
    for r in decode:
        if "error" in r:
            lines.append(f"| {what} | {r['batch']} | - / {r['new_tokens']} | {r['error']} | | | |")
            continue
        lines.append(f"| {what} | {r['batch']} | "
                     f"{r['prompt_tokens']} / {r['new_tokens']} | {r['s_per_call']} | "
                     f"{r['chunks_per_s']} | {r['tokens_per_s']} | {r['peak_gb']} |")
    lines += ["", "| LIBERO eval, EGL on the GPU | episodes | env steps | env steps/s | errors |"
              " run wall s | renderer |", "|---|---|---|---|---|---|---|"]
    for r in evals:
        if "error" in r:
            lines.append(f"| {r['policy']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['policy']} | {r['episodes']} | {r['steps']} | {r['steps_per_s']} | "
                     f"{r['errors']} | {r['run_wall_s']} | {r['renderer']} |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": name, "decode": decode, "eval": evals,
                                               "build_s": build_s}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
