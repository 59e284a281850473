"""Where episodes run: local worker processes (the default) or the actors of a Ray cluster.

An executor takes the pending `EpisodeJob`s and the `WorkerConfig`, runs each job once in a worker
that holds one policy instance and one env at a time, and hands every finished episode's record to
`on_record` (which appends it to the run's records, `RunDir.append`). Both backends run the same
`worker.run_job`, so an episode's seed, actions and record are the same wherever it runs; the
engine's resume (skip every episode that has a record) is untouched.

Lost workers: a local worker process that dies breaks the pool; its in-flight episodes are retried
once on a fresh pool. A Ray actor that dies (process killed, node lost) loses only the episode it
was running: that one is retried once on a new actor. An episode is recorded only from a result
that came back, so a lost one is never recorded twice; after two losses it is recorded as a
`WorkerDied` error (re-run with `--retry-errors`).

Ray workers need no shared filesystem: each actor writes an episode's files (its arrays and
video, laid out as in `RunDir`) into its own temporary directory and returns them with the
record; the driver writes them into the run directory before it appends the record.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

from worldvla_bench.atomic import write_atomic
from worldvla_bench.errors import (
    BenchError,
    PolicyBuildError,
    RenderingUnavailableError,
    RunDirectoryError,
    ServerUnreachableError,
    UnknownChoiceError,
)
from worldvla_bench.job_failures import describe_exit, error_record, note_retries, retry_or_fail
from worldvla_bench.protocol import BACKENDS
from worldvla_bench.worker import (
    EpisodeJob,
    WorkerConfig,
    inflight,
    inflight_since,
    init_worker,
    run_job,
)

OnRecord = Callable[[dict[str, Any]], None]


class Executor(abc.ABC):
    """Runs episodes somewhere and reports each record once."""

    name: str = ""

    @abc.abstractmethod
    def run(
        self, jobs: list[EpisodeJob], config: WorkerConfig, workers: int | None, on_record: OnRecord
    ) -> None:
        """Run every job; `workers` None means as many as the backend has cores."""


def make_executor(backend: str = "local", ray_address: str | None = None,
                  episode_timeout: float | None = None) -> Executor:
    """The executor for a backend name: 'local' (processes on this machine) or 'ray'.
    `episode_timeout` (seconds; local only): an episode running longer has its worker stopped
    and is recorded as an `EpisodeTimeout` error."""
    if backend == "local":
        if ray_address is not None:
            raise BenchError("a Ray address needs the ray backend (--backend ray)")
        return LocalExecutor(episode_timeout)
    if episode_timeout is not None:
        raise BenchError("--episode-timeout needs the local backend")
    if backend == "ray":
        return RayExecutor(address=ray_address)
    raise UnknownChoiceError("backend", backend, list(BACKENDS))


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


LOST = "the worker process died"

#: errors a worker raises that every other episode would raise too: the run stops on the first
STOPS_THE_RUN = (RenderingUnavailableError, PolicyBuildError, ServerUnreachableError)

#: errno values of a full disk or quota
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_disk(error: BaseException, config: WorkerConfig) -> None:
    """Stop the run in one line when a worker could not write an episode's files for lack of
    space (every following episode would fail the same way)."""
    if (isinstance(error, OSError) and error.errno in _DISK_FULL) or \
            "No space left on device" in str(error):
        raise RunDirectoryError(
            f"cannot write to {config.run_dir}: No space left on device; the run stopped (free "
            f"space, then re-run the same command to resume)"
        ) from None


class LocalExecutor(Executor):
    """Spawned worker processes on this machine; a pool broken by a dying worker is rebuilt.

    A dying worker breaks the whole pool, so every episode in flight is lost with it; only the
    episode the dead worker was running (each worker names it in `inflight_dir`) is charged an
    attempt, with the worker's exit code or signal; the others are simply run again."""

    name = "local"

    def __init__(self, episode_timeout: float | None = None) -> None:
        self.episode_timeout = episode_timeout

    def run(
        self, jobs: list[EpisodeJob], config: WorkerConfig, workers: int | None, on_record: OnRecord
    ) -> None:
        workers = max(1, int(workers or default_workers()))
        inflight_dir = tempfile.mkdtemp(prefix="worldvla_bench_inflight_")
        try:
            self._run(jobs, replace(config, inflight_dir=inflight_dir), workers, on_record)
        finally:
            shutil.rmtree(inflight_dir, ignore_errors=True)

    def _run(self, jobs: list[EpisodeJob], config: WorkerConfig, workers: int,
             on_record: OnRecord) -> None:
        attempts: dict[EpisodeJob, int] = {}
        exits: dict[EpisodeJob, list[str]] = {}
        queue = list(jobs)

        def requeue(job: EpisodeJob) -> None:
            queue.insert(0, job)

        context = multiprocessing.get_context("spawn")
        while queue:
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(queue)),
                mp_context=context,
                initializer=init_worker,
                initargs=(config, os.getpid()),
            )
            running: dict[Future, EpisodeJob] = {}
            processes: dict[int, Any] = {}  # pid -> multiprocessing.Process, kept past a break
            lost: list[EpisodeJob] = []
            timed_out: set[tuple[int, int]] = set()  # (task_id, trial) whose worker was stopped
            try:
                while queue or running:
                    while queue and len(running) < 2 * workers:
                        job = queue.pop(0)
                        running[pool.submit(run_job, job)] = job
                    with contextlib.suppress(RuntimeError):  # changed size while copied
                        processes.update(getattr(pool, "_processes", None) or {})
                    finished, _ = wait(running, return_when=FIRST_COMPLETED,
                                       timeout=1.0 if self.episode_timeout else None)
                    if self.episode_timeout:
                        timed_out |= _stop_overdue(processes, Path(config.inflight_dir or "."),
                                                   self.episode_timeout)
                    for future in finished:
                        job = running.pop(future)
                        try:
                            record = future.result()
                        except STOPS_THE_RUN:
                            raise  # the same for every episode: stop, do not record each one
                        except BrokenProcessPool:
                            lost.append(job)
                            continue
                        except Exception as error:  # the episode raised outside the policy
                            check_disk(error, config)
                            record = error_record(job, config, f"{type(error).__name__}: {error}")
                        on_record(note_retries(record, job, attempts, exits) if job in attempts
                                  else record)
                    if lost:
                        lost += running.values()
                        running.clear()
                        break
            except BaseException:  # Ctrl-C included: stop the workers now, mid-episode
                with contextlib.suppress(RuntimeError):
                    processes.update(getattr(pool, "_processes", None) or {})
                pool.shutdown(wait=False, cancel_futures=True)  # forgets its processes
                for process in processes.values():
                    process.terminate()
                raise
            manager = getattr(pool, "_executor_manager_thread", None)
            pool.shutdown(wait=not lost, cancel_futures=True)
            if lost:
                # the broken pool's own thread reaps its processes (is_alive, join): a process
                # reaped by two threads at once shows no exit code to the one that loses (its
                # waitpid fails), which charged every lost episode; read them once it is done
                if manager is not None:
                    manager.join(timeout=60)
                culprits = _culprits(lost, processes, Path(config.inflight_dir or "."))
                for job in reversed(lost):  # requeue puts each first in line: keep their order
                    if (job.task_id, job.trial) in timed_out:
                        on_record(error_record(job, config, (
                            f"EpisodeTimeout: the episode ran longer than {self.episode_timeout:g} "
                            f"s (--episode-timeout); its worker was stopped")))
                    elif not culprits or job in culprits:  # no culprit known: charge every one
                        retry_or_fail(job, attempts, requeue, config, on_record, LOST, exits,
                                      culprits.get(job))
                    else:
                        requeue(job)  # its worker was healthy: the pool's break cost it nothing


def _stop_overdue(processes: dict[int, Any], inflight_dir: Path,
                  timeout: float) -> set[tuple[int, int]]:
    """SIGKILL every worker whose episode started more than `timeout` seconds ago; their
    (task_id, trial). The pool then breaks and is rebuilt, as for any dead worker."""
    stopped: set[tuple[int, int]] = set()
    now = time.time()
    for pid, process in processes.items():
        found = inflight_since(inflight_dir, pid)
        if found is not None and now - found[1] > timeout and process.is_alive():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                stopped.add(found[0])
    return stopped


def _culprits(lost: list[EpisodeJob], processes: dict[int, Any],
              inflight_dir: Path) -> dict[EpisodeJob, str]:
    """The lost episodes whose own worker died, each with how it ended ('exit code 1', 'killed
    by SIGKILL'); the pool terminates its other workers (SIGTERM) once one has died."""
    for process in processes.values():
        process.join(timeout=30)
    by_key = {(job.task_id, job.trial): job for job in lost}
    culprits: dict[EpisodeJob, str] = {}
    for pid, process in processes.items():
        if process.exitcode in (None, 0, -signal.SIGTERM):
            continue
        job = by_key.get(inflight(inflight_dir, pid))
        if job is not None:
            culprits[job] = describe_exit(process.exitcode)
    return culprits


class RolloutActor:
    """A Ray actor: one worker (policy + env) that returns records with the episode's files."""

    def __init__(self, config: WorkerConfig) -> None:
        self.staging = Path(tempfile.mkdtemp(prefix="worldvla_bench_ray_"))
        init_worker(replace(config, run_dir=str(self.staging)))

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: EpisodeJob) -> tuple[dict[str, Any], dict[str, bytes]]:
        record = run_job(job)
        files: dict[str, bytes] = {}
        for key in ("episode_file", "video"):
            relative = record.get(key)
            if relative:
                path = self.staging / relative
                files[relative] = path.read_bytes()
                path.unlink()
        return record, files

    def close(self) -> None:
        from worldvla_bench.worker import shutdown_worker

        try:
            shutdown_worker()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)


def _write_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write an episode's files under the run directory (atomically, like the local workers)."""
    root = run_dir.resolve()
    for relative, data in files.items():
        path = (root / relative).resolve()
        if root not in path.parents:
            raise BenchError(f"a worker returned a file outside the run directory: {relative}")
        write_atomic(path, data)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError("the ray backend needs Ray: pip install 'ray>=2.9'") from None
    return ray


class RayExecutor(Executor):
    """One Ray actor per worker (1 CPU each), spread over the cluster by Ray.

    `address`: None joins a Ray instance this process already started (`ray.init(...)`), or else
    starts a private one on this machine bound to 127.0.0.1; 'auto' joins the cluster this machine
    is part of (`ray start`); 'HOST:PORT' (the head's GCS port, 6379 by default) or 'ray://HOST:10001'
    joins a remote head. With `workers` None, one actor per CPU of the cluster.
    """

    name = "ray"

    def __init__(self, address: str | None = None, actor_options: dict[str, Any] | None = None):
        self.address = address
        self.actor_options = {"num_cpus": 1, **(actor_options or {})}

    def run(
        self, jobs: list[EpisodeJob], config: WorkerConfig, workers: int | None, on_record: OnRecord
    ) -> None:
        if not jobs:
            return
        ray = _import_ray()
        started = self._connect(ray, workers)
        try:
            if workers is None:
                workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self._run(ray, jobs, config, max(1, int(workers)), on_record)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any, workers: int | None) -> bool:
        """Join or start Ray; True when this call started it (and must shut it down)."""
        if ray.is_initialized():
            return False
        if self.address is None:
            ray.init(num_cpus=int(workers or default_workers()), include_dashboard=False,
                     _node_ip_address="127.0.0.1")
        else:
            ray.init(address=self.address)
        return True

    def _run(self, ray: Any, jobs: list[EpisodeJob], config: WorkerConfig, workers: int,
             on_record: OnRecord) -> None:
        from ray.exceptions import RayError, RayTaskError

        actor_class = ray.remote(max_restarts=0, max_task_retries=0, **self.actor_options)(
            RolloutActor
        )
        run_dir = Path(config.run_dir)
        queue = deque(jobs)
        attempts: dict[EpisodeJob, int] = {}
        exits: dict[EpisodeJob, list[str]] = {}
        idle: deque = deque(actor_class.remote(config) for _ in range(min(workers, len(queue))))
        alive = set(idle)
        running: dict[Any, tuple[Any, EpisodeJob]] = {}
        losses_in_a_row = 0
        try:
            while queue or running:
                while queue and idle:
                    actor, job = idle.popleft(), queue.popleft()
                    running[actor.run.remote(job)] = (actor, job)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    actor, job = running.pop(ref)
                    try:
                        record, files = ray.get(ref)
                    except RayTaskError as error:  # the episode raised outside the policy
                        cause = error.cause if error.cause is not None else error
                        if isinstance(cause, STOPS_THE_RUN):
                            raise cause from None
                        check_disk(cause, config)
                        message = str(cause).strip().splitlines()
                        text = f"{type(cause).__name__}: {message[0] if message else ''}"
                        on_record(error_record(job, config, text))
                        idle.append(actor)
                        continue
                    except RayError as error:  # the actor (its process, or its node) was lost
                        losses_in_a_row += 1
                        alive.discard(actor)
                        with contextlib.suppress(Exception):
                            ray.kill(actor, no_restart=True)
                        if losses_in_a_row > 2 * workers + 2:
                            raise BenchError(
                                f"Ray workers keep dying ({losses_in_a_row} in a row); last: "
                                f"{type(error).__name__}: {str(error).strip()[:300]}"
                            ) from None
                        retry_or_fail(job, attempts, queue.appendleft, config, on_record,
                                      "the Ray worker running it was lost", exits,
                                      f"{type(error).__name__}")
                        if queue and len(alive) < workers:
                            replacement = actor_class.remote(config)
                            alive.add(replacement)
                            idle.append(replacement)
                        continue
                    losses_in_a_row = 0
                    _write_files(run_dir, files)
                    on_record(note_retries(record, job, attempts, exits) if job in attempts
                              else record)
                    idle.append(actor)
            closing = [actor.close.remote() for actor in alive]
            with contextlib.suppress(Exception):
                ray.wait(closing, num_returns=len(closing), timeout=30)
        finally:
            for actor in alive:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
