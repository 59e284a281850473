"""Worker-process side of the rollout engine: one policy and one env (per task) per process.

Workers build their env after they start (EGL contexts do not survive a fork), keep it while the
next episode uses the same task, and die with their parent, so a killed run leaves no orphans.
Each worker reads its render provenance once, from its first built env, and returns it with its
first record under `PROVENANCE_KEY`; the engine moves it into the manifest.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.rendering import configure_gl
from worldvla_bench.envs.seeding import SceneSeed
from worldvla_bench.episode import run_episode
from worldvla_bench.errors import BenchError, PolicyBuildError
from worldvla_bench.policy import EpisodeContext, Policy, make_policy
from worldvla_bench.protocol import Protocol
from worldvla_bench.render_provenance import render_provenance
from worldvla_bench.run_dir import RunDir
from worldvla_bench.tasks import SuiteSpec


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs: the run's protocol, unchanged, and the options that concern
    one episode's files and the simulator's reset."""

    protocol: Protocol  # resolved: image size and step limit written out
    suite: SuiteSpec
    run_dir: str
    save_episodes: bool = True
    video: bool = False
    video_every: int = 1
    save_frames: bool = False
    #: the cameras whose frames save_frames stores (None: every camera of the env)
    frame_cameras: tuple[str, ...] | None = None
    hard_reset: bool = False
    threads_per_worker: int = 1
    #: a directory where each worker names the episode it is running (`<pid>.json`), so that the
    #: engine charges a worker's death to that episode alone (local processes only)
    inflight_dir: str | None = None


@dataclass(frozen=True)
class EpisodeJob:
    """One (task, trial) to run: the policy's seed and the scene's seeding (any worker rebuilds
    the scene from it, whatever it ran before)."""

    task_id: int
    trial: int
    seed: int
    scene: SceneSeed | None = None


_STATE: dict[str, Any] = {}

#: the key of a record that carries its worker's render provenance (popped by the engine)
PROVENANCE_KEY = "render_provenance"


def _die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; also poll as a fallback.

    `parent` is the pid the parent had when it started this process: a parent that died while
    this one was still importing (before this runs) has already been replaced by a reaper, and
    then this process exits at once instead of living on as an orphan.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if parent is None:
        parent = os.getppid()
    elif os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def init_worker(config: WorkerConfig, parent_pid: int | None = None) -> None:
    """Process initializer: renderer set-up, thread limits, the policy instance.

    `parent_pid`: the pid of the process that started this worker (see `_die_with_parent`).
    """
    _die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent alone handles it (it stops the workers
    # and prints the resume hint), so a worker neither prints a traceback nor sends one back
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_gl()
    threads = str(max(1, config.threads_per_worker))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LP_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    try:
        import torch

        torch.set_num_threads(max(1, config.threads_per_worker))
    except ImportError:
        pass
    _STATE.clear()
    _STATE["config"] = config
    _STATE["policy"] = None
    _STATE["env"] = None
    register_shutdown()


def _policy(config: WorkerConfig) -> Policy:
    if _STATE.get("policy") is None:
        try:
            _STATE["policy"] = make_policy(config.protocol.policy,
                                           **config.protocol.policy_kwargs)
        except Exception as error:
            message = str(error).strip().splitlines()
            raise PolicyBuildError(
                f"policy {config.protocol.policy!r} could not be built with "
                f"{config.protocol.policy_kwargs}: {type(error).__name__}: "
                f"{message[0] if message else ''}"
            ) from None
    return _STATE["policy"]


def _env(config: WorkerConfig, task_id: int) -> LiberoEnv:
    env: LiberoEnv | None = _STATE.get("env")
    if env is not None and env.task.task_id == task_id:
        return env
    if env is not None:
        env.close()
        _STATE["env"] = None
    env = LiberoEnv(
        config.suite, task_id, image_size=config.protocol.image_size,
        max_steps=config.protocol.max_steps, fast_render=config.protocol.fast_render,
        hard_reset=config.hard_reset,
    )
    _STATE["env"] = env
    return env


def _drop_env(env: LiberoEnv) -> None:
    """The simulator may be in a bad state: close it, so that the next episode rebuilds it."""
    with contextlib.suppress(Exception):
        env.close()
    _STATE["env"] = None


def run_job(job: EpisodeJob) -> dict[str, Any]:
    """Run one episode in this worker and return its record as a dict."""
    config: WorkerConfig = _STATE["config"]
    if config.inflight_dir:
        mark_inflight(Path(config.inflight_dir), os.getpid(), job)
    try:
        return _run_job(config, job)
    finally:
        if config.inflight_dir:
            (Path(config.inflight_dir) / f"{os.getpid()}.json").unlink(missing_ok=True)


def _run_job(config: WorkerConfig, job: EpisodeJob) -> dict[str, Any]:
    env = _env(config, job.task_id)
    policy = _policy(config)
    context = EpisodeContext(
        suite=config.suite.name,
        task_id=job.task_id,
        task_name=env.task.name,
        instruction=env.instruction,
        trial=job.trial,
        seed=job.seed,
        max_steps=env.max_steps,
    )
    run_dir = RunDir(config.run_dir)
    where = (config.suite.name, job.task_id, job.trial)
    try:
        record = run_episode(
            env,
            policy,
            context,
            policy_name=config.protocol.policy,
            episode_path=run_dir.episode_path(*where) if config.save_episodes else None,
            video_path=run_dir.video_path(*where) if config.video else None,
            video_fps=config.suite.control_freq,
            video_every=config.video_every,
            save_frames=config.save_frames,
            frame_cameras=config.frame_cameras,
            scene=job.scene,
        )
    except Exception:
        _drop_env(env)
        raise
    served = getattr(policy, "served_model", None)
    if callable(served):
        with contextlib.suppress(Exception):  # a server that never answered names nothing
            record.served_model = served()
    result = record.to_dict()
    if not _STATE.get("provenance_sent"):
        provenance = _provenance(env)
        if provenance is not None:
            result[PROVENANCE_KEY] = provenance
            _STATE["provenance_sent"] = True
    if record.extra.get("simulator_failed"):
        _drop_env(env)
    result["worker_pid"] = os.getpid()
    return result


def mark_inflight(directory: Path, pid: int, job: EpisodeJob) -> None:
    """Write (atomically) which episode the worker `pid` is running."""
    tmp = directory / f".{pid}.json"
    tmp.write_text(json.dumps([job.task_id, job.trial]))
    os.replace(tmp, directory / f"{pid}.json")


def inflight(directory: Path, pid: int) -> tuple[int, int] | None:
    """(task_id, trial) the worker `pid` is running, None if it runs none."""
    found = inflight_since(directory, pid)
    return None if found is None else found[0]


def inflight_since(directory: Path, pid: int) -> tuple[tuple[int, int], float] | None:
    """((task_id, trial), start time in seconds since the epoch) of the episode the worker `pid`
    is running, None if it runs none."""
    path = directory / f"{pid}.json"
    try:
        started = path.stat().st_mtime
        task_id, trial = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return (int(task_id), int(trial)), started


def _provenance(env: LiberoEnv) -> dict[str, Any] | None:
    """This worker's render provenance (None while its simulator is not built); a failure to
    read it is recorded, never raised."""
    try:
        _ = env.robosuite_env
    except BenchError:
        return None
    try:
        return render_provenance(env)
    except Exception as error:
        return {"mujoco_gl": os.environ.get("MUJOCO_GL"),
                "error": f"{type(error).__name__}: {error}"[:300]}


def shutdown_worker() -> None:
    """Close the env and policy (avoids EGL teardown noise at exit)."""
    env = _STATE.get("env")
    if env is not None:
        env.close()
    policy = _STATE.get("policy")
    if policy is not None:
        policy.close()
    _STATE.clear()


def register_shutdown() -> None:
    """Run `shutdown_worker` when the worker process exits normally."""
    from multiprocessing import util

    util.Finalize(None, shutdown_worker, exitpriority=10)
