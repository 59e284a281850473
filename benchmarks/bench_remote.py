"""Overhead of a policy behind the websocket policy server, per call, on loopback.

Run ``python benchmarks/bench_remote.py`` (prints JSON) or call :func:`bench_remote_policy`.
The same `random` policy answers a direct `act` call and a `remote` call through a server on
127.0.0.1 (a thread of this process: client and server share this machine's cores). Each payload
is a LIBERO observation: two uint8 cameras of `image_size` px, the 8-d state and the instruction;
`blind` sends no image (the server's policy reads none). Overhead = remote - direct, in ms per call
(mean and median over `n_calls` after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np


def _observation(size: int, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "agentview_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "robot0_eye_in_hand_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=8),
        "instruction": "put the black bowl on the plate",
    }


def _per_call_ms(policy, observation: dict[str, Any], n_calls: int) -> list[float]:
    for _ in range(min(20, n_calls)):  # warm-up
        policy.act(observation)
    times = []
    for _ in range(n_calls):
        start = time.perf_counter()
        policy.act(observation)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def bench_remote_policy(
    n_calls: int = 200, image_size: int = 256, chunk_size: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Per-call latency of a direct and a remote `act`, with images and without ('blind')."""
    from worldvla_bench.policies.remote import RemotePolicy
    from worldvla_bench.policy import EpisodeContext, make_policy
    from worldvla_bench.serving.server import PolicyServer

    rng = np.random.default_rng(seed)
    observation = _observation(image_size, rng)
    context = EpisodeContext("libero_spatial", 0, "bench", observation["instruction"], 0, 1, 220)
    result: dict[str, Any] = {"n_calls": n_calls, "image_size": image_size,
                              "chunk_size": chunk_size}
    for label, observe in (("images", True), ("blind", False)):
        kwargs = {"chunk_size": chunk_size, "observe": observe}
        direct = make_policy("random", **kwargs)
        direct.reset(context)
        direct_ms = _per_call_ms(direct, observation, n_calls)
        with PolicyServer("random", kwargs, port=0) as server:
            remote = RemotePolicy(port=server.port)
            remote.reset(context)
            remote_ms = _per_call_ms(remote, observation, n_calls)
            remote.close()
        payload = sum(v.nbytes for k, v in observation.items() if observe and k.endswith("_image"))
        result[label] = {
            "payload_bytes": int(payload + observation["state"].nbytes),
            "direct_ms_mean": round(statistics.fmean(direct_ms), 4),
            "remote_ms_mean": round(statistics.fmean(remote_ms), 4),
            "remote_ms_median": round(statistics.median(remote_ms), 4),
            "remote_ms_p95": round(float(np.percentile(remote_ms, 95)), 4),
            "overhead_ms_mean": round(statistics.fmean(remote_ms) - statistics.fmean(direct_ms), 4),
            "overhead_ms_median": round(
                statistics.median(remote_ms) - statistics.median(direct_ms), 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    print(json.dumps(bench_remote_policy(args.n_calls, args.image_size), indent=2))


if __name__ == "__main__":
    main()
