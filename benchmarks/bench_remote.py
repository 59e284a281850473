"""Overhead of a policy behind a websocket policy server, per call, on loopback, per protocol.

Run ``python benchmarks/bench_remote.py`` (prints JSON) or call :func:`bench_remote_policy`.
The same `random` policy (K=1: every call reaches the policy, which a vla-eval server would
otherwise answer from its chunk buffer) answers a direct `act` call and a `remote` call through a
server on 127.0.0.1 (a thread of this process: client and server share this machine's cores), for
each protocol: `openpi` (`PolicyServer`, `remote`) and `vla-eval` (`VlaEvalPolicyServer`,
`remote` with `protocol=vla-eval`; plain arrays on the wire); `vla-eval-png` is vla-eval's own
client (`vla_eval.connection.Connection`, its default PNG image encoding) against our server.
Each payload is a LIBERO observation: two uint8 cameras of `image_size` px, the 8-d state and
the instruction; `blind` sends no image (the server's policy reads none). Overhead = remote -
direct, in ms per call (median and mean over `n_calls` after a warm-up).

``--episodes`` also drives one libero_spatial task 0 episode (256 px, its 220-step limit) each
way over vla-eval's protocol and reports the wall times: our engine with `remote` against a
model server built on vla-eval's `PredictModelServer` (random 7-d actions), and vla-eval's own
LIBERO benchmark loop (in-process, no docker) against our server serving `random`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WIRE_FORMATS = ("openpi", "vla-eval", "vla-eval-png")


def available_wire_formats() -> tuple[str, ...]:
    """`WIRE_FORMATS`, without `vla-eval-png` when vla-eval (a dev dependency) is not installed."""
    import importlib.util

    return WIRE_FORMATS if importlib.util.find_spec("vla_eval") else WIRE_FORMATS[:2]


def _observation(size: int, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "agentview_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "robot0_eye_in_hand_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=8),
        "instruction": "put the black bowl on the plate",
    }


def _per_call_ms(act, observation: dict[str, Any], n_calls: int) -> list[float]:
    for _ in range(min(20, n_calls)):  # warm-up
        act(observation)
    times = []
    for _ in range(n_calls):
        start = time.perf_counter()
        act(observation)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _vla_eval_png_ms(url: str, observation: dict[str, Any], n_calls: int, observe: bool):
    """Per-call ms of vla-eval's own client (PNG images, its default) against `url`."""
    from vla_eval.connection import Connection

    payload: dict[str, Any] = {
        "task_description": observation["instruction"],
        "states": observation["state"],
    }
    if observe:
        payload["images"] = {
            "agentview": observation["agentview_image"],
            "wrist": observation["robot0_eye_in_hand_image"],
        }

    async def run() -> list[float]:
        connection = Connection(url)
        await connection.connect(benchmark="bench")
        await connection.start_episode(
            {"task": {"name": "bench", "suite": "libero_spatial", "task_id": 0, "episode_idx": 0}}
        )
        times = []
        for _ in range(min(20, n_calls) + n_calls):
            start = time.perf_counter()
            await connection.act(payload)
            times.append((time.perf_counter() - start) * 1000.0)
        await connection.close()
        return times[min(20, n_calls) :]

    return asyncio.run(run())


def bench_remote_policy(
    n_calls: int = 200,
    image_size: int = 256,
    chunk_size: int = 1,
    seed: int = 0,
    protocols: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Per-call latency of a direct and a remote `act`, per protocol, with images and without."""
    protocols = available_wire_formats() if protocols is None else protocols
    from worldvla_bench.policies.remote import RemotePolicy
    from worldvla_bench.policy import EpisodeContext, make_policy
    from worldvla_bench.serving.server import PolicyServer
    from worldvla_bench.serving.vla_eval_server import VlaEvalPolicyServer

    rng = np.random.default_rng(seed)
    observation = _observation(image_size, rng)
    context = EpisodeContext("libero_spatial", 0, "bench", observation["instruction"], 0, 1, 220)
    result: dict[str, Any] = {
        "n_calls": n_calls,
        "image_size": image_size,
        "chunk_size": chunk_size,
    }
    for label, observe in (("images", True), ("blind", False)):
        kwargs = {"chunk_size": chunk_size, "observe": observe}
        direct = make_policy("random", **kwargs)
        direct.reset(context)
        direct_ms = _per_call_ms(direct.act, observation, n_calls)
        payload = sum(v.nbytes for k, v in observation.items() if observe and k.endswith("_image"))
        for protocol in protocols:
            server_class = PolicyServer if protocol == "openpi" else VlaEvalPolicyServer
            with server_class("random", kwargs, port=0) as server:
                if protocol == "vla-eval-png":
                    remote_ms = _vla_eval_png_ms(server.url, observation, n_calls, observe)
                else:
                    remote = RemotePolicy(port=server.port, protocol=protocol.removesuffix("-png"))
                    remote.reset(context)
                    remote_ms = _per_call_ms(remote.act, observation, n_calls)
                    remote.close()
            result.setdefault(protocol, {})[label] = {
                "payload_bytes": int(payload + observation["state"].nbytes),
                "direct_ms_mean": round(statistics.fmean(direct_ms), 4),
                "remote_ms_mean": round(statistics.fmean(remote_ms), 4),
                "remote_ms_median": round(statistics.median(remote_ms), 4),
                "remote_ms_p95": round(float(np.percentile(remote_ms, 95)), 4),
                "overhead_ms_mean": round(
                    statistics.fmean(remote_ms) - statistics.fmean(direct_ms), 4
                ),
                "overhead_ms_median": round(
                    statistics.median(remote_ms) - statistics.median(direct_ms), 4
                ),
            }
    return result


def _random_model_server():
    """A vla-eval `PredictModelServer` answering uniform random LIBERO actions (K=1)."""
    from vla_eval.model_servers.predict import PredictModelServer
    from vla_eval.specs import GRIPPER_CLOSE_POS, IMAGE_RGB, LANGUAGE, POSITION_DELTA, ROTATION_AA

    class RandomModelServer(PredictModelServer):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(0)

        def get_action_spec(self):
            return {
                "position": POSITION_DELTA,
                "rotation": ROTATION_AA,
                "gripper": GRIPPER_CLOSE_POS,
            }

        def get_observation_spec(self):
            return {"image": IMAGE_RGB, "language": LANGUAGE}

        def predict(self, obs, ctx):
            return {"actions": self.rng.uniform(-1, 1, 7)}

    return RandomModelServer()


def bench_episodes(max_steps: int = 220) -> dict[str, Any]:
    """One libero_spatial task 0 episode (256 px) each way over vla-eval's protocol: wall s."""
    from vla_eval import api

    from worldvla_bench.protocol import Protocol, RunOptions
    from worldvla_bench.records import read_episodes
    from worldvla_bench.rollout import run_evaluation
    from worldvla_bench.serving.vla_eval_server import VlaEvalPolicyServer

    out: dict[str, Any] = {"max_steps": max_steps}
    with tempfile.TemporaryDirectory() as tmp:
        with api.serve_background(_random_model_server(), host="127.0.0.1", port=0) as handle:
            start = time.perf_counter()
            run_dir = run_evaluation(
                Protocol(
                    suite="libero_spatial",
                    policy="remote",
                    image_size=256,
                    max_steps=max_steps,
                    policy_kwargs={"protocol": "vla-eval", "port": handle.port},
                ),
                RunOptions(
                    run_dir=Path(tmp) / "ours", tasks="0", trials=1, workers=1, progress=False
                ),
            )
            wall = time.perf_counter() - start
        [record] = read_episodes(run_dir)
        out["our_engine_vla_eval_model_server"] = {
            "run_wall_s": round(wall, 2),
            "episode_wall_s": record["wall_time_s"],
            "steps": record["steps"],
            "policy_calls": record["policy_calls"],
            "policy_time_s": record["policy_time_s"],
            "env_time_s": record["env_time_s"],
            "success": record["success"],
            "error": record["error"],
        }
        config = {
            "server": {"url": "ws://unused", "timeout": 120},
            "output_dir": tmp,
            "benchmarks": [
                {
                    "benchmark": "vla_eval.benchmarks.libero.benchmark:LIBEROBenchmark",
                    "episodes_per_task": 1,
                    "max_tasks": 1,
                    "max_steps": max_steps,
                    "params": {"suite": "libero_spatial", "seed": 7, "num_steps_wait": 10},
                }
            ],
        }
        with VlaEvalPolicyServer("random", {"chunk_size": 1, "observe": True}, port=0) as server:
            start = time.perf_counter()
            [result] = api.run(config, server_url=server.url, docker=False, no_save=True)
            wall = time.perf_counter() - start
            stats = server.stats()
        [episode] = result["tasks"][0]["episodes"]
        out["vla_eval_libero_our_server"] = {
            "run_wall_s": round(wall, 2),
            "episode_elapsed_s": episode.get("elapsed_sec"),
            "steps": episode.get("steps"),
            "policy_calls": stats.get("requests", 0),
            "success": bool(episode.get("metrics", {}).get("success")),
            "error": episode.get("failure_reason"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument(
        "--episodes",
        action="store_true",
        help="also drive one LIBERO episode each way over vla-eval's protocol",
    )
    parser.add_argument("--max-steps", type=int, default=220, help="episode step limit")
    args = parser.parse_args()
    result = bench_remote_policy(args.n_calls, args.image_size)
    if args.episodes:
        result["episodes"] = bench_episodes(args.max_steps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
