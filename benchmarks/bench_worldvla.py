"""Inference cost of the WorldVLA model per action chunk on CPU (tiny preset, random weights).

Constrained decoding forces well-formed blocks, so every call generates exactly `chunk` action
blocks (9 tokens each) whatever the weights: the cost of a trained model's chunk.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np


def bench_worldvla_chunk(preset: str = "tiny", chunk: int = 5, batch: int = 1, calls: int = 5,
                         threads: int = 1, seed: int = 0) -> dict[str, Any]:
    import torch

    from worldvla_bench.integrations.worldvla.model import WorldVLA

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = WorldVLA.from_preset(preset).eval()
    size = model.config.vq.image_size
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(2, batch, size, size, 3), dtype=np.uint8)
    instructions = ["put the bowl on the plate"] * batch
    timings = []
    with torch.no_grad():
        for call in range(calls + 1):
            start = time.perf_counter()
            chunks = model.predict_actions(instructions, frames[0], frames[1], num_blocks=chunk,
                                           constrained=True)
            if call:  # the first call warms up
                timings.append(1e3 * (time.perf_counter() - start))
    return {"preset": preset, "chunk": chunk, "batch": batch, "threads": threads,
            "actions_per_chunk": [len(c) for c in chunks],
            "ms_per_chunk_median": round(statistics.median(timings), 1),
            "ms_per_chunk_min": round(min(timings), 1)}


if __name__ == "__main__":
    print(json.dumps(bench_worldvla_chunk(), indent=2))
