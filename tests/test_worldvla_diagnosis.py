"""The collapse diagnosis of a WorldVLA world model: a tiny random checkpoint on synthetic
episodes (invariants, and cases whose answer is known), then the shipped checkpoint on a run
recorded here with the frames of one camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worldvla_bench.integrations.worldvla.diagnosis import (
    MAX_DB,
    METRICS,
    action_metrics,
    diagnose,
    encode,
    greedy_codes,
    main,
    teacher_forced_codes,
)
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.training import load_checkpoint, make_synthetic_demos
from worldvla_bench.libero_hdf5 import Demo, write_demos

torch.set_num_threads(1)

FRACTIONS = ("reencode_agreement", "reencode_agreement_predicted", "tf_accuracy",
             "copy_accuracy", "tf_predicts_previous", "tf_accuracy_changed", "changed_fraction",
             "greedy_accuracy", "same_codes_zero_action", "same_codes_negated_action",
             "changed_fraction_gap5", "changed_fraction_gap10", "action_token_accuracy",
             "gripper_accuracy")


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    WorldVLA.from_preset("tiny").save(path)
    return path


def check_ranges(metrics: dict) -> None:
    assert set(metrics) == set(METRICS)
    for name in FRACTIONS:
        assert metrics[name] is None or 0.0 <= metrics[name] <= 1.0, name
    for name in ("vq_psnr_db", "copy_prev_psnr_db", "rollout_psnr_db", "copy_first_psnr_db",
                 "copy_psnr_db_gap5", "copy_psnr_db_gap10"):
        assert metrics[name] is None or 0.0 < metrics[name] <= MAX_DB, name
    for name in ("rollout_spread_ratio", "rollout_spread_ratio_codes", "action_loss",
                 "action_l1_arm", "action_l1_arm_zero"):
        assert metrics[name] is None or metrics[name] >= 0.0, name


def test_random_model_on_synthetic_demos_through_the_command(random_checkpoint, tmp_path,
                                                              capsys):
    demos = make_synthetic_demos(tmp_path / "demos" / "task_demo.hdf5", n_demos=3, length=14,
                                 seed=3)
    out = tmp_path / "diag.json"
    assert main([str(random_checkpoint), str(demos.parent), "--episodes", "3", "--horizon", "6",
                 "--sensitivity-samples", "8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in METRICS:
        assert f"\n{name}: " in printed
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    check_ranges(metrics)
    assert len(result["episodes"]) == 3 and result["horizon"] == 6
    assert result["samples"] == 3 * 13  # 14 stored frames per demo: 13 actions each
    assert metrics["vq_lpips"] is not None and metrics["vq_lpips"] >= 0
    # identities between the measures
    assert metrics["changed_fraction"] == pytest.approx(1 - metrics["copy_accuracy"])
    for name in ("rollout_spread_ratio", "rollout_spread_ratio_codes", "rollout_psnr_db"):
        assert metrics[name] is not None, name

    # the copy baseline, recomputed from the codes
    model = WorldVLA.load(random_checkpoint).eval()
    from worldvla_bench.worldmodel.data import read_hdf5

    codes = [encode(model, e.frames) for e in read_hdf5(demos)]
    same = np.concatenate([c[1:] == c[:-1] for c in codes])
    assert metrics["copy_accuracy"] == pytest.approx(float(same.mean()))


def test_held_out_action_loss_is_the_trainings_action_loss(random_checkpoint, tmp_path):
    """The diagnosis's `action_loss` on demo files equals the loss training computes on the
    same episodes' action samples (its own sample builder and loss), in one batch."""
    from worldvla_bench.integrations.worldvla.demo_data import SampleBuilder, load_demos
    from worldvla_bench.integrations.worldvla.sequence import collate

    demos_dir = tmp_path / "demos"
    for seed in (3, 4):
        make_synthetic_demos(demos_dir / f"task{seed}_demo.hdf5", n_demos=2, length=12,
                             seed=seed, instruction=f"task {seed}")
    result = diagnose(random_checkpoint, [demos_dir], episodes=4, horizon=4,
                      sensitivity_samples=4, use_lpips=False)
    check_ranges(result.metrics)
    model = WorldVLA.load(random_checkpoint).eval()
    demos = load_demos([demos_dir], model.config.vq.image_size)
    builder = SampleBuilder(model, demos, [encode(model, f) for f in demos.frames], 5)
    samples = [builder.action_sample(e, t) for e, t in builder.action_index]
    with torch.no_grad():
        expected = float(model.loss(collate(samples), action_mask=True))
    assert result.metrics["action_loss"] == pytest.approx(expected, rel=1e-5)
    assert len(result.action_episodes) == 4


def test_actions_the_model_itself_decodes_score_exactly(random_checkpoint):
    """An episode whose actions are the model's own greedy chunk (value tokens constrained, as
    teacher forcing ranks them): every token ranked first is the expert's, the arm error is 0
    and every gripper sign agrees; the same chunk negated scores worse."""
    from worldvla_bench.worldmodel.data import WMEpisode

    model = WorldVLA.load(random_checkpoint).eval()
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    (chunk,) = model.predict_actions(["stack it"], frames[:1], frames[:1], num_blocks=5,
                                     constrained=True)
    assert chunk.shape == (5, 7)
    episode = WMEpisode(name="own", frames=frames, actions=chunk, instruction="stack it")
    exact = action_metrics(model, [episode], chunk_size=5, action_mask=True)
    assert exact["action_token_accuracy"] == 1.0 and exact["gripper_accuracy"] == 1.0
    assert exact["action_l1_arm"] == pytest.approx(0.0, abs=1e-9)
    assert exact["action_l1_arm_zero"] == pytest.approx(float(np.mean(np.abs(chunk[:, :6]))))
    shifted = WMEpisode(name="other", frames=frames, actions=np.clip(-chunk, -1, 1),
                        instruction="stack it")
    worse = action_metrics(model, [shifted], chunk_size=5, action_mask=True)
    assert worse["action_token_accuracy"] < 1.0 and worse["action_l1_arm"] > 0.0
    assert worse["action_loss"] > exact["action_loss"]


def test_teacher_forcing_on_the_greedy_answer_ranks_that_answer_first(random_checkpoint):
    """Greedy generation picks each code as the argmax given the codes before it: teacher
    forcing those very codes must rank them first at every slot (slots aligned right)."""
    model = WorldVLA.load(random_checkpoint).eval()
    rng = np.random.default_rng(0)
    grid = model.config.vq.grid
    codes = rng.integers(0, model.config.vq.codebook_size, (5, grid, grid))
    actions = rng.uniform(-1, 1, (5, 7))
    generated = greedy_codes(model, codes, actions, batch_size=3)
    assert generated.shape == (5, grid, grid)
    assert np.array_equal(teacher_forced_codes(model, codes, actions, generated, batch_size=2),
                          generated)
    # with other answers, the ranking at the first slot (no answer token before it) is the same
    other = rng.integers(0, model.config.vq.codebook_size, (5, grid, grid))
    forced = teacher_forced_codes(model, codes, actions, other)
    assert np.array_equal(forced[:, 0, 0], generated[:, 0, 0])


def test_still_frames_give_copy_accuracy_one(random_checkpoint, tmp_path):
    """Episodes whose frames never change: the copy baseline is exact, nothing changes, the
    teacher-forced accuracy is the share of predictions equal to the previous code, and the
    real spread (two different still scenes) is known."""
    rng = np.random.default_rng(1)
    demos = []
    for colour in ((200, 30, 30), (30, 30, 200)):
        frames = np.empty((10, 64, 64, 3), np.uint8)
        frames[:] = colour
        demos.append(Demo(actions=rng.uniform(-1, 1, (10, 7)), frames={"agentview": frames}))
    path = write_demos(tmp_path / "still_demo.hdf5", demos, instruction="stay",
                       problem_name="still", env_args={})
    result = diagnose(random_checkpoint, [path], episodes=2, horizon=4, sensitivity_samples=4,
                      use_lpips=False)
    metrics = result.metrics
    check_ranges(metrics)
    assert metrics["copy_accuracy"] == 1.0 and metrics["changed_fraction"] == 0.0
    assert metrics["tf_accuracy_changed"] is None  # no code changes
    assert metrics["tf_accuracy"] == metrics["tf_predicts_previous"]
    assert metrics["copy_prev_psnr_db"] == MAX_DB  # identical frames, capped
    assert metrics["copy_psnr_db_gap5"] == MAX_DB and metrics["changed_fraction_gap5"] == 0.0
    assert metrics["copy_psnr_db_gap10"] is None  # 10 frames: no pair 10 steps apart
    assert metrics["copy_first_psnr_db"] == MAX_DB
    assert metrics["vq_lpips"] is None
    model = WorldVLA.load(random_checkpoint).eval()
    first = encode(model, np.stack([d.frames["agentview"][0] for d in demos]))
    assert metrics["reencode_agreement"] == pytest.approx(
        float(np.mean(encode(model, model.decode_codes(torch.as_tensor(first))) == first)))


def test_shipped_checkpoint_on_a_recorded_run(tmp_path):
    """`tiny-libero-goal` on libero_goal episodes recorded here (agentview frames only, 64 px;
    tasks 1 and 2, two trials each): every measure in range, the VQ-VAE reconstructs real
    frames; the world-model figures read the run's first two episodes, the action figures
    take theirs task by task."""
    from conftest import split_config

    from worldvla_bench.rollout import run_evaluation

    run_dir = tmp_path / "run"
    run_evaluation(*split_config(suite="libero_goal", policy="expert", tasks="1,2", trials=2,
                                 first_trial=40, run_dir=run_dir, workers=1, save_frames=True,
                                 frame_cameras=("agentview",), progress=False, image_size=64,
                                 max_steps=8))
    result = diagnose("tiny-libero-goal", [run_dir], episodes=2, horizon=6,
                      sensitivity_samples=8, use_lpips=False, action_episodes=2)
    check_ranges(result.metrics)
    assert result.episodes == ["libero_goal_task01_trial40", "libero_goal_task01_trial41"]
    assert result.action_episodes == ["libero_goal_task01_trial40", "libero_goal_task02_trial40"]
    step = load_checkpoint("tiny-libero-goal")[0].config.world_frame_step
    assert result.samples == 2 * (8 - step + 1)  # pairs (t, t + S) within 8 steps, 2 episodes
    assert result.metrics["vq_psnr_db"] > 18  # the shipped VQ-VAE: about 24 dB
    assert result.metrics["rollout_spread_ratio"] is not None
