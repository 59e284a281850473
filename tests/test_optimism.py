"""The optimism probe on real LIBERO episodes (libero_goal task 1, 48 px): an expert success and
a noop failure, recorded with frames. Invariants that hold for any judge: sim-oracle imagines
the real frames, so the judge scores its imagined episodes exactly as the real ones (the row
equals the judge's floor); copy-last imagines the first frame forever, so the judge reads that
frame. The judge here is a fixed random net: its quality is not what is tested."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import split_config

from worldvla_bench.worldmodel.judge import JudgeNet, SuccessJudge


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    from worldvla_bench.rollout import run_evaluation

    root = tmp_path_factory.mktemp("optimism")
    for policy, steps in (("expert", 300), ("noop", 12)):
        run_evaluation(*split_config(suite="libero_goal", policy=policy, tasks="1", trials=1,
                                     run_dir=root / policy, workers=1, image_size=48,
                                     max_steps=steps, save_frames=True, progress=False))
    return [root / "expert", root / "noop"]


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = JudgeNet(1, 32).eval()
    judge = SuccessJudge(net, ["libero_goal/1"], 32, metrics={}, provenance={})
    path = tmp_path_factory.mktemp("judge") / "judge.pt"
    judge.save(path)
    return path


def test_sim_oracle_is_the_judges_floor_and_copy_last_reads_the_first_frame(runs, judge):
    from worldvla_bench.worldmodel.data import read_run
    from worldvla_bench.worldmodel.judge import load_judge
    from worldvla_bench.worldmodel.models import make_world_model
    from worldvla_bench.worldmodel.optimism import imagine_outcomes, summarise

    episodes = [e for run in runs for e in read_run(run)]
    assert [e.meta["success"] for e in episodes] == [True, False]
    loaded = load_judge(judge)
    oracle = make_world_model("sim-oracle")
    try:
        outcomes = imagine_outcomes(oracle, episodes, loaded, progress=False)
    finally:
        oracle.close()
    np.testing.assert_array_equal(outcomes["p_imagined"], outcomes["p_real"])
    row = summarise(outcomes, "sim-oracle")
    assert row["failures"] == 1 and row["successes"] == 1
    assert row["optimism"] == row["judge_real_optimism"]
    assert row["recall"] == row["judge_real_recall"]
    copy = imagine_outcomes(make_world_model("copy-last"), episodes, loaded, start=2,
                            progress=False)
    for episode, p in zip(episodes, copy["p_imagined"], strict=True):
        first = loaded.success_probability(episode.frames[2:3], "libero_goal", 1)[0]
        assert p == pytest.approx(first, abs=1e-12)
    assert list(copy["frames_imagined"]) == [len(e.actions) - 2 for e in episodes]


def test_optimism_command_writes_the_table_with_baselines(runs, judge, tmp_path):
    from worldvla_bench.cli import main

    out = tmp_path / "opt"
    assert main(["wm-eval", "--probe", "optimism", "--model", "copy-last", "--judge", str(judge),
                 "--data", *map(str, runs), "--baselines", "sim-oracle", "--out", str(out),
                 "--no-progress"]) == 0
    text = (out / "optimism.md").read_text()
    assert "copy-last" in text and "sim-oracle" in text and "Judge:" in text
    assert (out / "optimism_per_episode.csv").read_text().count("\n") == 1 + 2 * 2
    assert main(["wm-eval", "--probe", "optimism", "--model", "copy-last", "--data",
                 str(runs[0]), "--out", str(tmp_path / "x")]) == 2  # no --judge
