"""World-model track: episode readers, baselines and wm-eval on a real recorded run."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import split_config

from worldvla_bench.cli import main
from worldvla_bench.errors import BenchError
from worldvla_bench.rollout import run_evaluation
from worldvla_bench.worldmodel.data import read_hdf5, read_run
from worldvla_bench.worldmodel.evaluate import evaluate_world_model, get_scoring_convention
from worldvla_bench.worldmodel.models import CopyLast, PredictionContext, SimOracle


@pytest.fixture(scope="module")
def frames_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("wm") / "frames"
    run_evaluation(*split_config(suite="libero_spatial", policy="random",
                                 policy_kwargs={"scale": 0.5}, tasks="0", trials=4,
                                 run_dir=run_dir, workers=2, image_size=48, max_steps=11,
                                 save_frames=True, progress=False))
    return run_dir


def write_demo_file(path: Path, lengths=(6, 4)) -> list[np.ndarray]:
    """A LIBERO/robomimic-layout HDF5 file; images stored upside down as LIBERO renders them."""
    upright = []
    with h5py.File(path, "w") as handle:
        data = handle.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": "stack the cups"})
        for i, length in enumerate(lengths):
            rng = np.random.default_rng(i)
            frames = rng.integers(0, 255, size=(length, 8, 8, 3), dtype=np.uint8)
            upright.append(frames)
            demo = data.create_group(f"demo_{i}")
            demo.create_dataset("obs/agentview_rgb", data=frames[:, ::-1, ::-1])
            demo.create_dataset("actions", data=rng.uniform(-1, 1, size=(length, 7)))
            demo.create_dataset("states", data=rng.normal(size=(length, 5)))
    return upright


def test_hdf5_reader_aligns_frames_and_actions_and_turns_images_upright(tmp_path):
    upright = write_demo_file(tmp_path / "demo.hdf5")
    episodes = list(read_hdf5(tmp_path / "demo.hdf5"))
    assert [e.name for e in episodes] == ["demo_0", "demo_1"]
    for episode, frames in zip(episodes, upright, strict=True):
        np.testing.assert_array_equal(episode.frames, frames)
        assert len(episode.actions) == len(frames) - 1 and episode.instruction == "stack the cups"
        assert episode.states.shape == (len(frames), 5)


def test_hdf5_reader_errors_are_clear(tmp_path):
    with pytest.raises(BenchError, match="no such HDF5"):
        list(read_hdf5(tmp_path / "missing.hdf5"))
    write_demo_file(tmp_path / "demo.hdf5")
    with pytest.raises(BenchError, match="no frames of view 'side'"):
        list(read_hdf5(tmp_path / "demo.hdf5", view="side"))


def test_saved_frames_are_the_episode_with_states(frames_run: Path):
    episodes = list(read_run(frames_run))
    assert len(episodes) == 4
    for episode in episodes:
        assert episode.frames.shape == (12, 48, 48, 3) and episode.actions.shape == (11, 7)
        assert episode.states.shape[0] == 12 and episode.control_states.shape == (12, 14)
        assert all(frame.std() > 5 for frame in episode.frames)  # every frame rendered
    wrist = next(iter(read_run(frames_run, view="wrist")))
    assert not np.array_equal(wrist.frames, episodes[0].frames)


def test_a_run_is_read_by_task_and_trial_whatever_order_its_workers_finished(
        frames_run: Path, tmp_path):
    """Two workers append episodes as they finish; `wm-eval --max-episodes N` and the
    diagnosis's `--episodes N` take the first N episodes read, which must not depend on it."""
    import shutil

    copy = tmp_path / "shuffled"
    shutil.copytree(frames_run, copy)
    lines = (copy / "episodes.jsonl").read_text().splitlines()
    (copy / "episodes.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    read = [(e.meta["trial"], e.name) for e in read_run(copy)]
    assert [trial for trial, _ in read] == [0, 1, 2, 3]
    assert read == [(e.meta["trial"], e.name) for e in read_run(frames_run)]


def test_sim_oracle_reproduces_the_recorded_frames_exactly(frames_run: Path):
    episode = next(iter(read_run(frames_run)))
    oracle = SimOracle()
    try:
        context = PredictionContext(episode.meta, episode.states[0], episode.control_states[0])
        predicted = oracle.predict(episode.frames[:1], episode.actions, "", context)
    finally:
        oracle.close()
    np.testing.assert_array_equal(predicted, episode.frames[1:])


def test_sim_oracle_at_a_model_size_is_the_simulator_through_that_size(frames_run: Path):
    """image_size=24 on 48-px frames: the recorded frames, each resized to 24 px and back (the
    same as copy-last image_size does to its frame); the rollout's frames too."""
    episode = next(iter(read_run(frames_run)))
    oracle = SimOracle(image_size=24)
    try:
        context = PredictionContext(episode.meta, episode.states[0], episode.control_states[0])
        predicted = oracle.predict(episode.frames[:1], episode.actions, "", context)
        rolled = oracle.start_rollout(episode.frames[0], "", context).step(episode.actions[:3])
    finally:
        oracle.close()
    expected = np.stack([CopyLast(image_size=24).predict(frame[None], np.zeros((1, 7)), "")[0]
                         for frame in episode.frames[1:]])
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_array_equal(rolled, expected[:3])
    assert np.abs(predicted.astype(int) - episode.frames[1:]).mean() > 1  # detail was lost


def test_copy_last_repeats_the_context_frame():
    frames = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    predicted = CopyLast().predict(frames, np.zeros((5, 7)), "")
    assert predicted.shape == (5, 8, 8, 3) and (predicted == frames[-1]).all()


def test_copy_last_at_a_model_size_loses_what_that_size_loses():
    """image_size=4 on 8-px frames: a one-pixel checkerboard (detail finer than 4 px) comes back
    nearly flat at its mean; a flat frame, or a frame already at that size, comes back as is."""
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    frames[0, ::2, ::2] = frames[0, 1::2, 1::2] = 200  # mean 100, std 100
    predicted = CopyLast(image_size=4).predict(frames, np.zeros((2, 7)), "")
    assert predicted.shape == (2, 8, 8, 3) and (predicted[0] == predicted[1]).all()
    assert abs(predicted.mean() - 100) < 5 and predicted.std() < 10
    flat = np.full((1, 8, 8, 3), 77, np.uint8)
    assert (CopyLast(image_size=4).predict(flat, np.zeros((1, 7)), "") == 77).all()
    assert (CopyLast(image_size=8).predict(frames, np.zeros((1, 7)), "") == frames).all()
    with pytest.raises(ValueError, match="image_size"):
        CopyLast(image_size=0)


def test_wm_eval_sim_oracle_beats_copy_last_on_every_metric(frames_run: Path, tmp_path, capsys):
    summaries, printed = {}, ""
    for model in ("copy-last", "sim-oracle"):
        out = tmp_path / model
        assert main(["wm-eval", "--model", model, "--data", str(frames_run), "--horizons", "10",
                     "--out", str(out), "--no-progress", "--save-video"]) == 0
        summaries[model] = pd.read_csv(out / "summary.csv").iloc[0]
        assert len(pd.read_csv(out / "per_clip.csv")) == 4
        assert len(list((out / "videos").glob("*.mp4"))) == 4
        printed += capsys.readouterr().out
        assert (out / "summary.md").read_text().strip() in printed  # written last, when done
    assert "fvd_n" in printed and "standard" in printed
    # the WorldVLA paper's figures were measured under the `worldvla` protocol only
    assert "718.6" not in printed and "718.6" in get_scoring_convention("worldvla").reference
    assert "-0.0" not in printed  # the oracle's rounding residue prints as 0.0
    copy, oracle = summaries["copy-last"], summaries["sim-oracle"]
    assert copy["clips"] == oracle["clips"] == 4 and oracle["fvd_n"] == 4
    assert oracle["fvd"] < 1e-6 < copy["fvd"]
    assert oracle["psnr"] > copy["psnr"] and oracle["ssim"] > copy["ssim"]
    assert oracle["lpips"] < copy["lpips"]
    assert oracle["ssim"] == pytest.approx(1.0) and oracle["lpips"] == pytest.approx(0.0)


def test_horizons_shorter_than_fvd_minimum_are_refused(frames_run: Path):
    with pytest.raises(BenchError, match="at least 9 frames"):
        evaluate_world_model(CopyLast(), list(read_run(frames_run)), [5], progress=False)


def test_long_horizons_skip_short_episodes_and_count_them(frames_run: Path):
    result = evaluate_world_model(CopyLast(), list(read_run(frames_run)), [10, 50],
                                  progress=False)
    rows = result["summary"].set_index("horizon")
    assert rows.loc[50, "clips"] == 0 and rows.loc[50, "skipped"] == 4
    assert rows.loc[10, "clips"] == 4


def test_wm_eval_refuses_a_flag_its_probe_does_not_read(tmp_path, capsys):
    """Before, `--probe fidelity --contexts-per-episode 1 --baselines copy-last` ran with both
    flags silently ignored, and a flag given at its default value (`--seed 0`) went unnoticed;
    the data is never read: the check comes first."""
    for flags, message in ((["--contexts-per-episode", "1"], "--contexts-per-episode is read by "
                            "the counterfactual probe only, not by fidelity"),
                           (["--baselines", "copy-last"], "--baselines is read by the optimism "
                            "and counterfactual probes only, not by fidelity"),
                           (["--probe", "counterfactual", "--judge", "j.pt"], "--judge is read "
                            "by the optimism probe only, not by counterfactual"),
                           # given at their default values: still not read by fidelity
                           (["--seed", "0"], "--seed is read by the counterfactual probe only"),
                           (["--start", "0"], "--start is read by the optimism probe only"),
                           (["--baselines", ""], "--baselines is read by the optimism and "
                            "counterfactual probes only")):
        assert main(["wm-eval", "--model", "copy-last", "--data", str(tmp_path / "none"),
                     *flags]) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
