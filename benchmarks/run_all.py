"""`make bench`: throughput of the action track and the metrics, measured in one run.

Env steps per second for (a) the naive loop of the published LIBERO scripts (both cameras rendered
every step), (b) our engine with one worker, (c) our engine on all cores, each with K=1 and K=10
action chunks (a random policy that reads both cameras, no video; one more row reads only
agentview, as WorldVLA does), and (d) the physics-only limit.
Every figure includes resets and the 10 wait steps, as an evaluation pays them, and excludes the
one-off start-up (process spawn, imports, building the simulator: `run wall s` shows the whole).
Writes results/bench/throughput.{json,md}; ratios are taken within this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _libero_env(suite_name: str, task_id: int, size: int, cameras: bool, hard_reset: bool = True):
    from worldvla_bench.envs.libero_tasks import libero_task
    from worldvla_bench.envs.rendering import configure_gl
    from worldvla_bench.tasks import load_suite

    configure_gl()
    suite = load_suite(suite_name)
    task = libero_task(suite, task_id)
    with contextlib.redirect_stdout(io.StringIO()):
        from libero.libero.envs import OffScreenRenderEnv

        env = OffScreenRenderEnv(bddl_file_name=task.bddl_file, camera_heights=size,
                                 camera_widths=size, use_camera_obs=cameras,
                                 hard_reset=hard_reset)
    return suite, env


def naive_loop(trials: int, steps: int, size: int, cameras: bool = True,
               hard_reset: bool = True) -> dict:
    """The loop of LIBERO's / OpenVLA's / openpi's eval scripts: render every step (and rebuild
    the simulator on every reset). Without cameras and with `hard_reset=False`: physics only."""
    from worldvla_bench.envs.libero_tasks import init_states

    suite, env = _libero_env("libero_spatial", 0, size, cameras, hard_reset)
    states = init_states(suite, 0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    total = 0
    for trial in range(trials):
        env.seed(0)
        env.reset()
        obs = env.set_init_state(states[trial])
        for _ in range(suite.wait_steps):
            obs, *_ = env.step([0, 0, 0, 0, 0, 0, -1])
        for _ in range(steps):
            if cameras:
                _ = obs["agentview_image"][::-1, ::-1], obs["robot0_eye_in_hand_image"][::-1, ::-1]
            obs, *_ = env.step(rng.uniform(-1, 1, 7))
            total += 1
    elapsed = time.perf_counter() - start
    env.close()
    return {"steps": total, "seconds": elapsed, "steps_per_s": total / elapsed, "processes": 1}


def physics_on_all_cores(trials: int, steps: int, size: int, cores: int) -> dict:
    """Physics only (reset in place) in `cores` processes at once: the per-core limit when every
    core works, which is what an all-core engine row competes with (cores share caches and
    memory bandwidth, so each is slower than a lone process)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(cores, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(naive_loop, trials, steps, size, False, False)
                   for _ in range(cores)]
        results = [future.result() for future in futures]
    total, seconds = sum(r["steps"] for r in results), max(r["seconds"] for r in results)
    return {"steps": total, "seconds": seconds, "steps_per_s": total / seconds,
            "processes": cores}


def fast_render_difference(size: int, steps: int = 10) -> dict:
    """Mean absolute pixel difference (0-255) of the opt-in fast render mode vs the default."""
    from worldvla_bench.envs import LiberoEnv

    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 7))
    frames = {}
    for fast in (False, True):
        env = LiberoEnv("libero_spatial", 0, image_size=size, fast_render=fast)
        env.reset(seed=0, options={"init_state": 0})
        frames[fast] = np.stack([env.step(a)[0]["agentview_image"] for a in actions])
        env.close()
    diff = np.abs(frames[True].astype(float) - frames[False].astype(float))
    return {"mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
            "pixels_changed": float((diff.max(axis=-1) > 0).mean())}


def engine(trials: int, steps: int, size: int, workers: int, chunk: int,
           fast_render: bool = False, hard_reset: bool = False,
           observe: bool | str = True) -> dict:
    """Our engine with the random policy; `observe` = the cameras it reads (True = both)."""
    from worldvla_bench.protocol import Protocol, RunOptions
    from worldvla_bench.records import read_episodes
    from worldvla_bench.rollout import run_evaluation

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_dir = run_evaluation(
            Protocol(suite="libero_spatial", policy="random",
                     policy_kwargs={"chunk_size": chunk, "observe": observe}, image_size=size,
                     max_steps=steps, fast_render=fast_render),
            RunOptions(run_dir=Path(tmp) / "bench", tasks="0", trials=trials, workers=workers,
                       hard_reset=hard_reset, progress=False))
        elapsed = time.perf_counter() - start
        records = read_episodes(run_dir)
    total = sum(r["steps"] for r in records)
    busy: dict[int, float] = {}
    for r in records:  # episode walls exclude building the simulator, as the naive loop does
        busy[r["worker_pid"]] = busy.get(r["worker_pid"], 0.0) + r["wall_time_s"]
    seconds = max(busy.values())
    return {"steps": total, "seconds": seconds, "steps_per_s": total / seconds,
            "run_wall_s": elapsed, "processes": workers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2, help="episodes per measurement (x cores)")
    parser.add_argument("--steps", type=int, default=100, help="policy steps per episode")
    parser.add_argument("--size", type=int, default=256, help="camera size in px")
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows: dict[str, dict] = {}

    def measure(name, fn, *fn_args):
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows[name] = fn(*fn_args)
        print(f"  {rows[name]['steps_per_s']:.2f} steps/s", file=sys.stderr, flush=True)
        return rows[name]

    measure("naive loop (render every step)", naive_loop, args.trials, args.steps, args.size)
    physics_trials = 5 * args.trials  # physics is cheap: more episodes, a steadier denominator
    rebuilt = measure("physics only (no cameras, rebuild per episode)", naive_loop,
                      physics_trials, args.steps, args.size, False)
    in_place = measure("physics only (no cameras, reset in place)", naive_loop, physics_trials,
                       args.steps, args.size, False, False)
    all_cores = measure(f"physics only on {cores} cores (no cameras, reset in place)",
                        physics_on_all_cores, physics_trials, args.steps, args.size, cores)
    for chunk in (1, 10):
        measure(f"engine 1 worker, K={chunk}", engine, args.trials, args.steps, args.size, 1,
                chunk)
        measure(f"engine {cores} workers, K={chunk}", engine, args.trials * cores, args.steps,
                args.size, cores, chunk)
    measure(f"engine {cores} workers, K=10, hard reset (--hard-reset)", engine,
            args.trials * cores, args.steps, args.size, cores, 10, hard_reset=True)
    measure(f"engine {cores} workers, K=10, fast render (opt-in)", engine, args.trials * cores,
            args.steps, args.size, cores, 10, True)
    measure(f"engine {cores} workers, K=10, agentview only (the one camera WorldVLA reads)",
            engine, args.trials * cores, args.steps, args.size, cores, 10, observe="agentview")
    naive = rows["naive loop (render every step)"]["steps_per_s"]
    physics = max(rebuilt["steps_per_s"], in_place["steps_per_s"])
    physics_per_core = all_cores["steps_per_s"] / cores
    lines = [f"# Throughput (libero_spatial task 0, {args.size} px, {args.steps} steps/episode, "
             f"{cores} cores; resets and wait steps included)", "",
             "| configuration | steps | seconds | steps/s | x naive | per core / physics |"
             " run wall s |",
             "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        workers = row["processes"]
        limit = physics_per_core if workers > 1 else physics
        lines.append(f"| {name} | {row['steps']} | {row['seconds']:.1f} | "
                     f"{row['steps_per_s']:.2f} | {row['steps_per_s'] / naive:.2f} | "
                     f"{row['steps_per_s'] / workers / limit:.2f} | "
                     f"{row.get('run_wall_s', row['seconds']):.1f} |")
    difference = fast_render_difference(args.size)
    lines += ["", f"Fast render (opt-in, never the default): mean |pixel difference| "
              f"{difference['mean_abs_diff']:.2f}/255, max {difference['max_abs_diff']:.0f}, "
              f"{100 * difference['pixels_changed']:.0f}% of pixels changed.",
              f"'per core / physics' divides a one-process row by the faster one-process "
              f"physics-only row ({physics:.2f} steps/s) and an all-core row, per core, by "
              f"physics only on all cores, per core ({physics_per_core:.2f} steps/s). The "
              "engine resets in place by default (same states and pixels as a rebuild, "
              "tests/test_env.py); the naive loop rebuilds, as LIBERO's scripts do."]
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text(table)
    (out / "throughput.json").write_text(json.dumps(
        {"args": vars(args), "cores": cores, "rows": rows, "fast_render": difference},
        indent=2))
    bench_metrics(out)
    bench_remote(out)
    bench_worldvla(out)
    bench_worldvla_serving(out)
    bench_wm_feedback_decoding(out)
    return 0


def _publish(out: Path, stem: str, text: str, data: object) -> None:
    """Print a benchmark's table; write it as OUT/STEM.md and its numbers as OUT/STEM.json."""
    print(text)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2))


def bench_wm_feedback_decoding(out: Path) -> None:
    """World-model rollout speed, feedback pixels vs codes, greedy vs sampled (shipped tiny)."""
    from benchmarks.wm_feedback_decoding import bench_wm_feedback, table

    print("measuring world-model feedback and decoding ...", file=sys.stderr, flush=True)
    rows = bench_wm_feedback()
    text = table(rows)
    _publish(out, "wm_feedback_decoding", text, rows)


def bench_worldvla_serving(out: Path) -> None:
    """calls/s of `serve-policy worldvla --max-batch N` with N client workers (tiny, CPU)."""
    from benchmarks.bench_serving import bench_serving, table

    print("measuring batched serving of worldvla ...", file=sys.stderr, flush=True)
    rows = bench_serving()
    text = table(rows)
    _publish(out, "serving", text, rows)


def bench_worldvla(out: Path) -> None:
    """WorldVLA inference cost per action chunk (tiny preset, CPU, 1 thread)."""
    from benchmarks.bench_worldvla import bench_worldvla_chunk

    print("measuring WorldVLA chunk inference ...", file=sys.stderr, flush=True)
    rows = [bench_worldvla_chunk(chunk=k, batch=b) for k, b in ((5, 1), (10, 1), (5, 4))]
    lines = ["| WorldVLA tiny, CPU 1 thread | K | batch | ms per chunk (median) |",
             "|---|---|---|---|"]
    lines += [f"| constrained greedy, KV cache | {r['chunk']} | {r['batch']} | "
              f"{r['ms_per_chunk_median']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    _publish(out, "worldvla", text, rows)


def bench_remote(out: Path) -> None:
    """Remote-policy overhead per call on loopback, per protocol (openpi, vla-eval)."""
    from benchmarks.bench_remote import available_wire_formats, bench_remote_policy

    print("measuring remote policy overhead ...", file=sys.stderr, flush=True)
    result = bench_remote_policy()
    lines = ["| remote policy, loopback | protocol | payload | direct ms | remote ms (median) |"
             " overhead ms (median) |",
             "|---|---|---|---|---|---|"]
    for label in ("blind", "images"):
        for protocol in available_wire_formats():
            row = result[protocol][label]
            lines.append(f"| {label} | {protocol} | {row['payload_bytes'] / 1e3:.0f} kB | "
                         f"{row['direct_ms_mean']} | {row['remote_ms_median']} | "
                         f"{row['overhead_ms_median']} |")
    text = "\n".join(lines) + "\n"
    _publish(out, "remote", text, result)


def bench_metrics(out: Path) -> None:
    """Frames per second of each world-model metric on CPU, with the batch sizes used."""
    from benchmarks.bench_fvd import bench_fvd
    from benchmarks.bench_image_metrics import bench_image_metrics

    print("measuring metrics ...", file=sys.stderr, flush=True)
    image = bench_image_metrics()
    video = bench_fvd()
    lines = ["| metric | frames/s | batch |", "|---|---|---|"]
    for name in ("lpips_alex", "lpips_vgg", "ssim", "psnr"):
        lines.append(f"| {name} | {image[f'{name}_fps']:.1f} | {image.get('batch_size')} |")
    fps, batch = video["frames_per_s"], video.get("batch_size")
    lines.append(f"| fvd (I3D features, 16-frame clips) | {fps:.1f} | {batch} clips |")
    text = "\n".join(lines) + "\n"
    _publish(out, "metrics", text, {"image": image, "fvd": video})


if __name__ == "__main__":
    sys.exit(main())
