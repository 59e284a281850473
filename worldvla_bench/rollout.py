"""The rollout engine: (task, trial) episodes spread over worker processes, records as they end.

Re-running into the same run directory resumes: episodes with a record are skipped, so a run
killed at any point and started again ends with exactly one record per episode.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from worldvla_bench.envs.libero_tasks import libero_task, n_tasks
from worldvla_bench.envs.rendering import check_renderer
from worldvla_bench.envs.seeding import episode_seed, scene_seed
from worldvla_bench.errors import BenchError, RunDirectoryError, ServerUnreachableError
from worldvla_bench.executors import default_workers, make_executor
from worldvla_bench.manifest import (
    describe_served_model,
    read_manifest,
    record_render_provenance,
    record_served_model,
    same_served_model,
    write_or_check_manifest,
)
from worldvla_bench.policy import resolve_policy_class
from worldvla_bench.protocol import Protocol, RunOptions
from worldvla_bench.registry import instantiate_check
from worldvla_bench.run_dir import (
    append_episode,
    episode_key,
    prepare_run_dir,
    read_episodes,
    rewrite_episodes,
)
from worldvla_bench.run_lock import run_dir_lock
from worldvla_bench.tasks import SuiteSpec, load_suite, parse_index_list
from worldvla_bench.worker import PROVENANCE_KEY, EpisodeJob, WorkerConfig

logger = logging.getLogger("worldvla_bench.rollout")


def plan_episodes(protocol: Protocol, options: RunOptions) -> tuple[SuiteSpec, list[EpisodeJob]]:
    """The suite spec and the ordered list of episodes (grouped by task) the options select."""
    suite = load_suite(protocol.suite)
    task_ids = parse_index_list(options.tasks, n_tasks(suite), f"task id for suite {suite.name}")
    trials = suite.trials_per_task if options.trials is None else int(options.trials)
    first = int(options.first_trial)
    jobs: list[EpisodeJob] = []
    if trials < 1:
        raise BenchError(f"--trials must be at least 1 (got {trials})")
    if first < 0:
        raise BenchError(f"--first-trial must be at least 0 (got {first})")
    for task_id in task_ids:
        available = libero_task(suite, task_id).n_init_states
        if first < 0 or not 1 <= trials <= available - first:
            raise BenchError(
                f"trials {first}..{first + trials - 1} are not all among the {available} init "
                f"states of {suite.name} task {task_id} (one init state per trial)"
            )
        jobs.extend(
            EpisodeJob(task_id, trial, episode_seed(protocol.seed, suite.name, task_id, trial),
                       scene_seed(protocol.seeding, protocol.seed, suite.name, task_id, trial))
            for trial in range(first, first + trials)
        )
    return suite, jobs


def run_evaluation(protocol: Protocol, options: RunOptions) -> Path:
    """Run (or resume) an evaluation of `protocol`, carried out as `options` say; returns the run
    directory."""
    suite, jobs = plan_episodes(protocol, options)
    options.stored_cameras(suite)  # a bad camera name stops here, before any episode
    instantiate_check(resolve_policy_class(protocol.policy), protocol.policy_kwargs,
                      f"policy {protocol.policy!r}")
    protocol = protocol.resolved(suite)
    check_renderer()
    run_dir = prepare_run_dir(options.run_dir)
    with run_dir_lock(run_dir):
        _run_locked(protocol, options, suite, jobs, run_dir)
    return run_dir


def _run_locked(protocol: Protocol, options: RunOptions, suite: SuiteSpec,
                jobs: list[EpisodeJob], run_dir: Path) -> None:
    """`run_evaluation` once it holds the run directory's lock."""
    workers = max(1, int(options.workers or default_workers()))
    stored = options.stored_cameras(suite)
    run = {"workers": workers, "video": options.video, "save_frames": options.save_frames,
           "hard_reset": options.hard_reset}
    if options.save_frames:
        run["frame_cameras"] = list(stored)
    selection = {"tasks": sorted({j.task_id for j in jobs}), "trials": options.trials,
                 "first_trial": options.first_trial}
    records = read_episodes(run_dir, repair=True)  # an unreadable line stops before any change
    wanted = {(suite.name, j.task_id, j.trial) for j in jobs}
    kept = records
    if options.retry_errors:  # only the selected episodes' errors: others are left as they are
        kept = [r for r in records if not (r.get("error") and episode_key(r) in wanted)]
    done = {episode_key(r) for r in kept}
    pending = [j for j in jobs if (suite.name, j.task_id, j.trial) not in done]
    # how the run stores frames is checked before anything is written, the manifest included
    _check_frames(run_dir, read_manifest(run_dir), options.save_frames, stored,
                  len(kept) if pending else 0)
    write_or_check_manifest(run_dir, {**protocol.to_dict(), **run}, suite.to_dict(), selection,
                            log_call=bool(pending))
    if len(kept) < len(records):
        records = kept
        rewrite_episodes(run_dir, records)
    finished = [r for r in records if episode_key(r) in wanted]

    worker_config = WorkerConfig(
        protocol=protocol,
        suite=suite,
        run_dir=str(run_dir),
        save_episodes=options.save_episodes,
        video=options.video,
        video_every=int(options.video_every),
        save_frames=options.save_frames,
        frame_cameras=stored,
        hard_reset=options.hard_reset,
        threads_per_worker=max(1, default_workers() // workers),
    )
    bar = tqdm(
        total=len(jobs),
        initial=len(finished),
        desc=f"{suite.name} {protocol.policy}",
        unit="ep",
        disable=not options.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    successes = sum(bool(r.get("success")) for r in finished)
    completed = len(finished)
    slow_calls = SlowCalls(options.slow_call_s)

    def on_record(record: dict[str, Any]) -> None:
        nonlocal successes, completed
        provenance = record.pop(PROVENANCE_KEY, None)
        with _disk_errors_stop(run_dir):
            if provenance is not None:
                for warning in record_render_provenance(run_dir, provenance):
                    bar.write(f"warning: {warning}")
            if record.get("served_model") is not None:
                _check_served_model(run_dir, record)
            append_episode(run_dir, record)
        successes += bool(record.get("success"))
        completed += 1
        bar.update(1)
        bar.set_postfix(success=f"{100.0 * successes / completed:.1f}%", refresh=False)
        if record.get("error"):
            bar.write(
                f"task {record['task_id']} trial {record['trial']}: error: {record['error']}"
            )
        slow_calls.check(record.get("slowest_call_s"), record["task_id"], record["trial"])

    try:
        _execute(pending, worker_config, workers, on_record, backend=options.backend,
                 ray_address=options.ray_address, auto_workers=options.workers is None,
                 episode_timeout=options.episode_timeout)
    except ServerUnreachableError as error:  # the episodes recorded so far stay
        raise ServerUnreachableError(
            f"{error}; resume with the same command when it is back") from None
    finally:
        bar.close()


def _check_frames(run_dir: Path, manifest: dict[str, Any] | None, save_frames: bool,
                  stored: tuple[str, ...], adding_to: int) -> None:
    """Refuse (one line) what would leave a run's episodes holding different frames: resuming
    with frames of other cameras than the run stored (runs recorded before the choice existed
    stored every camera), or adding episodes to a run whose `adding_to` episodes were recorded
    with frames when these would not be, or the reverse (`wm-eval` reads every episode's). A
    finished run (`adding_to` 0) resumes under either setting."""
    config = (manifest or {}).get("config", {})
    had_frames = bool(config.get("save_frames"))
    if had_frames and save_frames:
        recorded = config.get("frame_cameras", (manifest.get("suite") or {}).get("cameras"))
        if recorded is not None and tuple(recorded) != stored:
            raise RunDirectoryError(
                f"run directory {run_dir} stores frames of {', '.join(recorded)}, not "
                f"{', '.join(stored)}; store the same cameras to resume, or choose another RUN "
                f"name")
    if adding_to and had_frames != bool(save_frames):
        setting = "with" if had_frames else "without"
        raise RunDirectoryError(
            f"run directory {run_dir} holds {adding_to} episode(s) recorded {setting} frames; "
            f"resume {setting} --save-frames to add episodes to it, or choose another RUN name")


class SlowCalls:
    """Warns (`logger.warning`) about the first episode of a run whose longest policy call
    took more than `threshold` seconds (None: never), once per run (simulated or imagined)."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.warned = False

    def check(self, slowest_s: float | None, task_id: int, trial: int) -> None:
        """One episode's longest policy call (s; None: not recorded)."""
        if (self.warned or self.threshold is None or slowest_s is None
                or not slowest_s > self.threshold):
            return
        self.warned = True
        logger.warning(
            "slow policy call: %.1f s (task %s trial %s), over %g s (warned once per run)",
            slowest_s, task_id, trial, self.threshold)


def _check_served_model(run_dir: Path, record: dict[str, Any]) -> None:
    """Stop the run (one line naming both) when a policy (a server, a checkpoint file) serves
    another model than the one this run's records came from; the episode that saw the switch is
    kept as an error."""
    recorded = record_served_model(run_dir, record["served_model"])
    if same_served_model(recorded, record["served_model"]):
        return
    if record.get("error"):
        append_episode(run_dir, record)

    served = record["served_model"]
    raise RunDirectoryError(
        f"the policy serves {describe_served_model(served, recorded)} but run directory "
        f"{run_dir} holds episodes of {describe_served_model(recorded, served)}: use that "
        f"model again, or choose another RUN name"
    )


@contextlib.contextmanager
def _disk_errors_stop(run_dir: Path) -> Iterator[None]:
    """A write into the run directory that fails (a full disk) stops the run in one line; what
    was written is kept, and the same command resumes."""
    try:
        yield
    except RunDirectoryError:
        raise
    except OSError as error:
        raise RunDirectoryError(
            f"cannot write to {run_dir}: {error.strerror or error}; the run stopped (free "
            f"space, then re-run the same command to resume)"
        ) from None


def _execute(
    jobs: list[EpisodeJob],
    config: WorkerConfig,
    workers: int,
    on_record,
    backend: str = "local",
    ray_address: str | None = None,
    auto_workers: bool = False,
    episode_timeout: float | None = None,
) -> None:
    """Run jobs on the backend's executor (`worldvla_bench.executors`): local processes, whose
    pool is rebuilt when a worker dies, or Ray actors, replaced when lost; lost jobs are retried.
    `auto_workers`: the user gave no worker count (Ray then uses one per cluster CPU)."""
    executor = make_executor(backend, ray_address=ray_address, episode_timeout=episode_timeout)
    count = None if (auto_workers and executor.name == "ray") else workers
    executor.run(jobs, config, count, on_record)
