"""Counterfactual probes on real recorded LIBERO episodes: the branches, the simulator's ground
truth, and the anchors (sim-oracle: sensitivity 1 and no error; copy-last: sensitivity 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import split_config

from worldvla_bench.worldmodel.counterfactual import (
    BRANCH_KINDS,
    NOISE_SCALES,
    build_contexts,
    make_branches,
    pairwise_distances,
    probe_counterfactuals,
    sensitivity,
    simulate_truth,
)
from worldvla_bench.worldmodel.data import read_run
from worldvla_bench.worldmodel.models import CopyLast, SimOracle

HORIZON = 4


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    """Two random-policy episodes of libero_spatial 0, every frame and state recorded."""
    from worldvla_bench.rollout import run_evaluation

    run_dir = tmp_path_factory.mktemp("cf") / "random_frames"
    run_evaluation(*split_config(suite="libero_spatial", policy="random", tasks="0", trials=2,
                                 run_dir=run_dir, workers=1, save_frames=True, progress=False,
                                 image_size=64, max_steps=8))
    return list(read_run(run_dir))


@pytest.fixture(scope="module")
def contexts(episodes):
    """Episode 0's two context frames (0 and 4), every branch replayed in the simulator."""
    chosen = [c for c in build_contexts(episodes, HORIZON, per_episode=2) if c.index == 0]
    simulate_truth(chosen, progress=False)
    return chosen


def test_branches_are_the_documented_action_sequences(episodes):
    branches = make_branches(episodes, 0, 3, HORIZON, seed=1)
    kinds = [b.kind for b in branches]
    assert kinds == list(BRANCH_KINDS)  # another episode is long enough: every kind is there
    by_kind = {b.kind: b.actions for b in branches}
    logged = episodes[0].actions[3 : 3 + HORIZON]
    np.testing.assert_array_equal(by_kind["logged"], logged)
    np.testing.assert_array_equal(by_kind["other_episode"], episodes[1].actions[3 : 3 + HORIZON])
    held = episodes[0].actions[2, 6]  # the gripper command in force at frame 3
    assert np.all(by_kind["zero"][:, :6] == 0) and np.all(by_kind["zero"][:, 6] == held)
    np.testing.assert_array_equal(by_kind["gripper_toggle"][:, 6], -logged[:, 6])
    np.testing.assert_array_equal(by_kind["gripper_toggle"][:, :6], logged[:, :6])
    sweep = by_kind["sweep_y-"]
    assert np.all(sweep[:, 1] == -0.5) and np.all(sweep[:, [0, 2, 3, 4, 5]] == 0)
    for scale in NOISE_SCALES:
        noisy = by_kind[f"noise_{scale}"]
        np.testing.assert_array_equal(noisy[:, 6], logged[:, 6])
        assert np.all(np.abs(noisy) <= 1.0) and not np.array_equal(noisy, logged)
    again = make_branches(episodes, 0, 3, HORIZON, seed=1)
    assert all(np.array_equal(a.actions, b.actions) for a, b in zip(branches, again, strict=True))
    # the first frame's gripper: open, as LIBERO's wait steps leave it
    assert np.all(make_branches(episodes, 0, 0, HORIZON)[4].actions[:, 6] == -1.0)


def test_the_logged_branch_replays_the_recorded_frames(episodes, contexts):
    assert [c.start for c in contexts] == [0, len(episodes[0].actions) - HORIZON]
    for context in contexts:
        logged = context.branches[0]
        recorded = context.episode.frames[context.start + 1 : context.start + 1 + HORIZON]
        np.testing.assert_array_equal(logged.truth, recorded)
        truths = [b.truth for b in context.branches]
        assert pairwise_distances(truths).max() > 0  # the branches do lead to different frames


def test_sim_oracle_scores_sensitivity_one_and_no_error(episodes, contexts):
    result = probe_counterfactuals(SimOracle(), episodes, HORIZON, fvd=False, progress=False,
                                   contexts=contexts)
    fidelity = result["fidelity"]
    assert list(fidelity["branch"]) == list(BRANCH_KINDS)
    assert np.all(fidelity["lpips"] < 1e-6) and np.all(fidelity["psnr"] == 100.0)
    assert np.allclose(result["per_context"]["spearman"], 1.0)
    assert np.allclose(result["per_context"]["spread_ratio"], 1.0)
    summary = result["sensitivity"].iloc[0]
    assert summary["contexts"] == 2 and summary["spearman_lo"] == pytest.approx(1.0)


def test_copy_last_scores_sensitivity_zero(episodes, contexts):
    result = probe_counterfactuals(CopyLast(), episodes, HORIZON, fvd=False, progress=False,
                                   contexts=contexts)
    assert np.all(result["per_context"]["spearman"] == 0.0)
    assert np.all(result["per_context"]["spread_ratio"] == 0.0)
    assert np.all(result["fidelity"]["lpips"] > 0)  # and it is wrong wherever the arm moves


def test_sensitivity_on_known_distances():
    base = np.zeros((2, 4, 4, 3), np.uint8)
    truth = [base, base + 10, base + 40]  # distances 10, 40, 30 (/255)
    assert sensitivity(truth, truth)["spearman"] == pytest.approx(1.0)
    scaled = [base, base + 5, base + 20]  # same order, half the spread
    out = sensitivity(scaled, truth)
    assert out["spearman"] == pytest.approx(1.0) and out["spread_ratio"] == pytest.approx(0.5)
    reversed_order = [base, base + 40, base + 10]  # distances 40, 10, 30: ranks 3,1,2 vs 1,3,2
    assert sensitivity(reversed_order, truth)["spearman"] == pytest.approx(-1.0)
    assert np.isnan(sensitivity(truth, [base, base, base])["spearman"])  # no true spread


def test_cli_writes_the_tables(episodes, tmp_path):
    from worldvla_bench.cli import main

    out = tmp_path / "cf_copy"
    assert main(["wm-eval", "--model", "copy-last", "--data", episodes[0].meta["source"],
                 "--probe", "counterfactual", "--horizons", str(HORIZON),
                 "--contexts-per-episode", "1", "--max-episodes", "1", "--no-fvd", "--no-progress",
                 "--out", str(out)]) == 0
    text = (out / "counterfactual.md").read_text()
    assert "Action sensitivity" in text and "sweep_z+" in text
    assert "World model `copy-last`" in text and "World model `sim-oracle`" in text
    # both models against one simulated ground truth: the baseline sim-oracle is exact
    sensitivity = pd.read_csv(out / "counterfactual_sensitivity.csv").set_index("world_model")
    assert sensitivity.loc["sim-oracle", "spearman"] == pytest.approx(1.0)
    assert sensitivity.loc["copy-last", "spread_ratio"] == pytest.approx(0.0)
    fidelity = pd.read_csv(out / "counterfactual_fidelity.csv")
    assert set(fidelity["world_model"]) == {"copy-last", "sim-oracle"}
    oracle = fidelity[fidelity["world_model"] == "sim-oracle"]
    assert (oracle["psnr"] == 100.0).all() and (oracle["lpips"] < 1e-6).all()
