"""`record`: runs written as LIBERO/robomimic HDF5 demonstrations, read back by our reader."""

from __future__ import annotations

import h5py
import numpy as np

from worldvla_bench.cli import main
from worldvla_bench.demos import run_to_hdf5
from worldvla_bench.records import load_episode_arrays, read_episodes
from worldvla_bench.worldmodel.data import read_hdf5
from worldvla_bench.worldmodel.models import PredictionContext, SimOracle


def test_record_writes_hdf5_demos_that_read_back(tmp_path, capsys):
    out = tmp_path / "demos"
    argv = ["record", "--suite", "libero_object", "--policy", "random", "--tasks", "0",
            "--trials", "2", "--image-size", "32", "--max-steps", "6", "--workers", "1",
            "--out", str(out), "--all-episodes", "--no-progress"]
    assert main(argv) == 0
    files = sorted(out.glob("libero_object/*.hdf5"))
    assert len(files) == 1 and "written" in capsys.readouterr().out
    run_dir = next(out.glob("_run_*"))
    records = sorted(read_episodes(run_dir), key=lambda r: r["trial"])
    with h5py.File(files[0]) as handle:
        demo = handle["data/demo_1"]
        assert demo["actions"].shape == (6, 7) and demo["obs/agentview_rgb"].shape == (6, 32, 32, 3)
        assert demo["obs/eye_in_hand_rgb"].shape == (6, 32, 32, 3)
        assert demo["obs/ee_states"].shape == (6, 6) and demo["obs/gripper_states"].shape == (6, 2)
        assert demo["states"].shape[0] == 6 and demo.attrs["trial"] == 1
        assert not demo.attrs["success"] and demo["dones"][-1] == 1
    episodes = list(read_hdf5(files[0]))
    assert [e.name for e in episodes] == ["demo_0", "demo_1"]
    arrays = load_episode_arrays(run_dir / records[1]["episode_file"])
    # upright again after the reader's rotation, and aligned: obs[t] precedes actions[t]
    np.testing.assert_array_equal(episodes[1].frames, arrays["frames_agentview"][:6])
    np.testing.assert_array_equal(episodes[1].actions, arrays["actions"][:5])
    assert episodes[1].instruction == records[1]["instruction"]
    # the file carries suite, task, seed and states: sim-oracle replays it frame for frame
    assert episodes[1].meta["suite"] == "libero_object" and episodes[1].meta["task_id"] == 0
    oracle = SimOracle()
    try:
        context = PredictionContext(episodes[1].meta, episodes[1].states[0],
                                    episodes[1].control_states[0])
        predicted = oracle.predict(episodes[1].frames[:1], episodes[1].actions, "", context)
    finally:
        oracle.close()
    np.testing.assert_array_equal(predicted, episodes[1].frames[1:])
    assert run_to_hdf5(run_dir, tmp_path / "only_successes") == {}  # random never succeeds
    # re-running on a finished run records nothing and leaves the file as it is ...
    stamp = files[0].stat().st_mtime_ns
    assert main(argv) == 0
    assert files[0].stat().st_mtime_ns == stamp
    assert f"up to date: {files[0]}" in capsys.readouterr().out
    # ... and one more trial rewrites it with every demo
    assert main([*argv[:argv.index("--trials") + 1], "3", *argv[argv.index("--trials") + 2:]]) == 0
    assert files[0].stat().st_mtime_ns != stamp
    assert f"written: {files[0]}" in capsys.readouterr().out
    with h5py.File(files[0]) as handle:
        assert sorted(handle["data"]) == ["demo_0", "demo_1", "demo_2"]


def test_a_noisy_expert_records_the_actions_it_meant_beside_those_it_executed(tmp_path):
    """`record` of the expert with action noise: the run's arrays and the HDF5 demo keep
    `intended_actions` (the planned actions) beside `actions`, and the executed ones are the
    planned ones plus the documented noise draws of the episode's seed, clipped."""
    out = tmp_path / "demos"
    assert main(["record", "--suite", "libero_goal", "--policy", "expert", "--policy-arg",
                 "action_noise=0.1", "--tasks", "0", "--trials", "1", "--image-size", "32",
                 "--max-steps", "12", "--workers", "1", "--cameras", "agentview",
                 "--out", str(out), "--all-episodes", "--no-progress"]) == 0
    run_dir = next(out.glob("_run_*"))
    record = read_episodes(run_dir)[0]
    arrays = load_episode_arrays(run_dir / record["episode_file"])
    meant, executed = arrays["intended_actions"], arrays["actions"]
    assert meant.shape == executed.shape == (12, 7)
    rng = np.random.default_rng(record["seed"])
    noise = np.stack([rng.normal(0.0, 0.1, 6) for _ in meant])
    np.testing.assert_allclose(executed[:, :6], np.clip(meant[:, :6] + noise, -1, 1),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(executed[:, 6], meant[:, 6])
    (episode,) = read_hdf5(next(out.glob("libero_goal/*.hdf5")))
    np.testing.assert_array_equal(episode.intended_actions, meant[:11])
    np.testing.assert_array_equal(episode.actions, executed[:11])
