"""The rollout engine: (task, trial) episodes spread over worker processes, records as they end.

Re-running into the same run directory resumes: episodes with a record are skipped, so a run
killed at any point and started again ends with exactly one record per episode.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from worldvla_bench.envs.libero_tasks import libero_task, n_tasks
from worldvla_bench.envs.rendering import check_renderer
from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.executors import BACKENDS, default_workers, make_executor
from worldvla_bench.manifest import write_or_check_manifest
from worldvla_bench.policy import resolve_policy_class
from worldvla_bench.records import (
    append_episode,
    episode_key,
    prepare_run_dir,
    read_episodes,
    rewrite_episodes,
)
from worldvla_bench.tasks import load_suite, parse_index_list
from worldvla_bench.worker import EpisodeJob, WorkerConfig


def episode_seed(run_seed: int, suite: str, task_id: int, trial: int) -> int:
    """The episode's seed: a pure function of (run seed, suite, task, trial), in [0, 2**31)."""
    digest = hashlib.sha256(f"{run_seed}/{suite}/{task_id}/{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class RunConfig:
    """What to evaluate and how. `tasks` and `trials` are selections like '0,3' or '0-4'."""

    suite: str
    policy: str = "random"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    tasks: str | None = None
    trials: int | None = None
    run_dir: Path = Path("results/run")
    workers: int | None = None
    seed: int = 7
    image_size: int | None = None
    max_steps: int | None = None
    video: bool = False
    video_every: int = 1
    save_frames: bool = False
    fast_render: bool = False
    fast_reset: bool = True
    save_episodes: bool = True
    retry_errors: bool = False
    progress: bool = True
    #: where workers run: 'local' (processes on this machine) or 'ray' (see executors.py)
    backend: str = "local"
    #: Ray cluster to join: None (start or reuse one in this process), 'auto', or 'HOST:PORT'
    ray_address: str | None = None

    def __post_init__(self) -> None:

        if self.backend not in BACKENDS:
            raise UnknownChoiceError("backend", self.backend, list(BACKENDS))
        if self.ray_address is not None and self.backend != "ray":
            raise BenchError("a Ray address needs the ray backend (--backend ray)")


def plan_episodes(config: RunConfig) -> tuple[Any, list[EpisodeJob]]:
    """The suite spec and the ordered list of episodes (grouped by task) the config asks for."""
    suite = load_suite(config.suite)
    task_ids = parse_index_list(config.tasks, n_tasks(suite), f"task id for suite {suite.name}")
    trials = suite.trials_per_task if config.trials is None else int(config.trials)
    jobs: list[EpisodeJob] = []
    for task_id in task_ids:
        available = libero_task(suite, task_id).n_init_states
        if not 1 <= trials <= available:
            raise BenchError(
                f"trials must be in 1..{available} for {suite.name} task {task_id} "
                f"(one init state per trial), got {trials}"
            )
        jobs.extend(
            EpisodeJob(task_id, trial, episode_seed(config.seed, suite.name, task_id, trial))
            for trial in range(trials)
        )
    return suite, jobs


def _check_policy(config: RunConfig) -> None:
    cls = resolve_policy_class(config.policy)
    try:
        inspect.signature(cls).bind(**config.policy_kwargs)
    except TypeError as error:
        raise BenchError(f"bad arguments for policy {config.policy!r}: {error}") from None


def run_evaluation(config: RunConfig) -> Path:
    """Run (or resume) an evaluation; returns the run directory."""
    suite, jobs = plan_episodes(config)
    _check_policy(config)
    if config.image_size is not None and int(config.image_size) <= 0:
        raise BenchError(f"image size must be positive, got {config.image_size}")
    if config.max_steps is not None and int(config.max_steps) <= 0:
        raise BenchError(f"max steps must be positive, got {config.max_steps}")
    check_renderer()
    run_dir = prepare_run_dir(config.run_dir)
    workers = max(1, int(config.workers or default_workers()))
    protocol = {
        "suite": suite.name,
        "policy": config.policy,
        "policy_kwargs": config.policy_kwargs,
        "seed": config.seed,
        "image_size": config.image_size or suite.image_size,
        "max_steps": config.max_steps or suite.max_steps,
        "workers": workers,
        "video": config.video,
        "save_frames": config.save_frames,
        "fast_render": config.fast_render,
        "fast_reset": config.fast_reset,
    }
    selection = {"tasks": sorted({j.task_id for j in jobs}), "trials": config.trials}
    write_or_check_manifest(run_dir, protocol, suite.to_dict(), selection)

    records = read_episodes(run_dir, repair=True)
    if config.retry_errors and any(r.get("error") for r in records):
        records = [r for r in records if not r.get("error")]
        rewrite_episodes(run_dir, records)
    done = {episode_key(r) for r in records}
    wanted = {(suite.name, j.task_id, j.trial) for j in jobs}
    pending = [j for j in jobs if (suite.name, j.task_id, j.trial) not in done]
    finished = [r for r in records if episode_key(r) in wanted]

    worker_config = WorkerConfig(
        policy=config.policy,
        policy_kwargs=config.policy_kwargs,
        suite=suite,
        run_dir=str(run_dir),
        image_size=config.image_size,
        max_steps=config.max_steps,
        save_episodes=config.save_episodes,
        video=config.video,
        video_every=max(1, int(config.video_every)),
        save_frames=config.save_frames,
        fast_render=config.fast_render,
        fast_reset=config.fast_reset,
        threads_per_worker=max(1, default_workers() // workers),
    )
    bar = tqdm(
        total=len(jobs),
        initial=len(finished),
        desc=f"{suite.name} {config.policy}",
        unit="ep",
        disable=not config.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    successes = sum(bool(r.get("success")) for r in finished)
    completed = len(finished)

    def on_record(record: dict[str, Any]) -> None:
        nonlocal successes, completed
        append_episode(run_dir, record)
        successes += bool(record.get("success"))
        completed += 1
        bar.update(1)
        bar.set_postfix(success=f"{100.0 * successes / completed:.1f}%", refresh=False)
        if record.get("error"):
            bar.write(
                f"task {record['task_id']} trial {record['trial']}: error: {record['error']}"
            )

    try:
        _execute(pending, worker_config, workers, on_record, backend=config.backend,
                 ray_address=config.ray_address, auto_workers=config.workers is None)
    finally:
        bar.close()
    return run_dir


def _execute(
    jobs: list[EpisodeJob],
    config: WorkerConfig,
    workers: int,
    on_record,
    backend: str = "local",
    ray_address: str | None = None,
    auto_workers: bool = False,
) -> None:
    """Run jobs on the backend's executor (`worldvla_bench.executors`): local processes, whose
    pool is rebuilt when a worker dies, or Ray actors, replaced when lost; lost jobs are retried.
    `auto_workers`: the user gave no worker count (Ray then uses one per cluster CPU)."""
    executor = make_executor(backend, ray_address=ray_address)
    count = None if (auto_workers and executor.name == "ray") else workers
    executor.run(jobs, config, count, on_record)
