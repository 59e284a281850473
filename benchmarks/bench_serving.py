"""Batched serving of the tiny `worldvla` policy: calls/s through the policy server.

    python benchmarks/bench_serving.py [--batches 1 4 16] [--calls 12]   (prints a table)

For each N, `worldvla-bench serve-policy worldvla --max-batch N` runs as its own process (the
shipped tiny checkpoint, CPU, 1 torch thread) and N client workers (threads of this process,
each a `remote` policy with its own session) send prepared observations of the `worldvla`
profile (64 px agentview, the previous frame as history, one of four instructions), `--calls`
each, as fast as the server answers. calls/s = all calls / wall time (after one warm-up call per
worker). Row `one at a time` serves the same policy with ``on_broken=continue``, which has no
`act_batch` (its safe chunk keeps per-episode state): one instance per connection, one call after
the other; row `batched` is the default (`act_batch`, one left-padded generation per batch).
Episode ends (`EndEpisode`, broken answers) count as answered calls.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
INSTRUCTIONS = ("open the middle drawer of the cabinet", "put the bowl on the stove",
                "push the plate to the front of the stove", "turn on the stove")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-policy exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("serve-policy did not come up")


def _observations(n: int, size: int = 64) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"agentview_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
             "agentview_history": rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8),
             "instruction": INSTRUCTIONS[i % len(INSTRUCTIONS)]} for i in range(n)]


def bench_served(workers: int, calls: int, batched: bool = True,
                 policy_args: tuple[str, ...] = ()) -> dict:
    """calls/s of `workers` clients against `serve-policy worldvla --max-batch workers`."""
    from worldvla_bench.policies.remote import RemotePolicy
    from worldvla_bench.policy import EndEpisode, EpisodeContext

    port = _free_port()
    args = [sys.executable, "-m", "worldvla_bench.serving.serve_cli", "worldvla",
            "--port", str(port), "--max-batch", str(workers), "--batch-timeout-ms", "20"]
    for item in (*policy_args, *(() if batched else ("on_broken=continue",))):
        args += ["--policy-arg", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        _wait_healthy(port, server)
        observations = _observations(workers)
        clients = [RemotePolicy(port=port, timeout_s=600) for _ in range(workers)]
        ends = [0] * workers
        barrier = threading.Barrier(workers + 1)

        def work(i: int) -> None:
            client = clients[i]
            client.reset(EpisodeContext("libero_goal", i % 4, "task", INSTRUCTIONS[i % 4], i,
                                        i, 300))
            for step in range(calls + 1):
                if step == 1:
                    barrier.wait()  # everyone warmed up (one call each): the clock starts
                try:
                    client.act(observations[i])
                except EndEpisode:
                    ends[i] += 1
            barrier.wait()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        barrier.wait()
        seconds = time.perf_counter() - start
        for thread in threads:
            thread.join()
        for client in clients:
            client.close()
    finally:
        server.terminate()
        server.wait(30)
    total = workers * calls
    return {"workers": workers, "max_batch": workers, "batched": batched, "calls": total,
            "seconds": round(seconds, 3), "calls_per_s": round(total / seconds, 3),
            "episode_ends": sum(ends)}


def bench_serving(batches: tuple[int, ...] = (1, 4, 16), calls: int = 12) -> list[dict]:
    rows = []
    for n in batches:
        for batched in (True, False):
            if n == 1 and not batched:
                continue  # one worker: both serve one call at a time
            print(f"  serving worldvla, {n} workers, {'batched' if batched else 'one at a time'}"
                  " ...", file=sys.stderr, flush=True)
            rows.append(bench_served(n, calls, batched))
    return rows


def table(rows: list[dict]) -> str:
    base = next((r["calls_per_s"] for r in rows if r["workers"] == 1), None)
    lines = ["| serve-policy worldvla (tiny, CPU, 1 thread) | workers = --max-batch | calls | "
             "seconds | calls/s | x 1 worker |", "|---|---|---|---|---|---|"]
    for r in rows:
        mode = "batched (act_batch)" if r["batched"] else "one at a time (on_broken=continue)"
        ratio = f"{r['calls_per_s'] / base:.2f}" if base else ""
        lines.append(f"| {mode} | {r['workers']} | {r['calls']} | {r['seconds']} | "
                     f"{r['calls_per_s']} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--calls", type=int, default=12, help="calls per worker (measured)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = bench_serving(tuple(args.batches), args.calls)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
