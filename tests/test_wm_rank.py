"""wm-rank: a panel in LIBERO and in imagination. With sim-oracle as the world model and the
simulator's own success check as the judge, imagination is the simulator: every imagined
episode must repeat its simulated one (outcome, step of success, every action, also for a
policy that steers by the pixels it sees), so the ranking agrees perfectly (Spearman 1,
MMRV 0). Real LIBERO: libero_goal task 1 (the expert succeeds in about 100 steps), 64 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worldvla_bench.errors import BenchError
from worldvla_bench.panels import load_panel
from worldvla_bench.protocol import Protocol, RunOptions
from worldvla_bench.records import load_episode_arrays, read_episodes

PANEL = """description: test panel, spread from always to never
policies:
  expert: {policy: expert}
  noop: {policy: noop}
  pixels: {policy: "policies_for_tests:PixelSteeredPolicy"}
"""


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    from worldvla_bench.worldmodel.rank import RankSetup, wm_rank

    root = tmp_path_factory.mktemp("rank")
    (root / "panel.yaml").write_text(PANEL)
    panel = load_panel(root / "panel.yaml")
    setup = RankSetup(Protocol("libero_goal", image_size=64, max_steps=120),
                      RunOptions(tasks="1", trials=1, workers=2), video=True)
    result = wm_rank(panel, [("sim-oracle", {})], setup, root / "out", judge=None,
                     judge_id="simulator", judge_line="the simulator", progress=False, n_boot=200)
    return root / "out", result


def test_sim_oracle_imagines_every_episode_as_simulated(ranked):
    out, result = ranked
    for policy in ("expert", "noop", "pixels"):
        sim_dir, imag_dir = out / "sim" / policy, out / "imagined" / "sim-oracle" / policy
        sim = {(r["task_id"], r["trial"]): r for r in read_episodes(sim_dir)}
        imag = {(r["task_id"], r["trial"]): r for r in read_episodes(imag_dir)}
        assert sorted(sim) == sorted(imag) == [(1, 0)]
        for key, record in imag.items():
            assert record["extra"]["imagined"] is True
            assert record["extra"]["mode"] == ("closed" if policy == "pixels" else "open")
            assert record["success"] == sim[key]["success"], (policy, key)
            assert record["steps"] == sim[key]["steps"], (policy, key)
            imagined = load_episode_arrays(imag_dir / record["episode_file"])["actions"]
            simulated = load_episode_arrays(sim_dir / sim[key]["episode_file"])["actions"]
            np.testing.assert_array_equal(imagined, simulated)
    per_policy = result["per_policy"].set_index("policy")
    assert per_policy.loc["expert", "simulated"] == 100.0  # the panel has a spread
    assert per_policy.loc["noop", "simulated"] == 0.0
    agreement = result["agreement"].iloc[0]
    assert agreement["spearman"] == pytest.approx(1.0) and agreement["mmrv"] == 0.0
    # imagined outcomes are the simulated ones: no failure imagined a success, every success is
    assert agreement["optimism"] == 0.0 and agreement["recall"] == 100.0
    assert agreement["optimism_n"] >= 1 and agreement["optimism_n"] + agreement["recall_n"] == 3


def test_side_by_side_videos_show_the_simulated_and_the_imagined_episode(ranked):
    import imageio.v3 as iio

    out, _ = ranked
    for policy in ("expert", "pixels"):
        imag_dir = out / "imagined" / "sim-oracle" / policy
        record = read_episodes(imag_dir)[0]
        sim_record = read_episodes(out / "sim" / policy)[0]
        simulated = load_episode_arrays(out / "sim" / policy / sim_record["episode_file"])[
            "frames_agentview"]
        video = iio.imread(imag_dir / record["video"])
        assert video.shape == (len(simulated), 64, 128, 3)  # 1 real + `steps` imagined frames
        left, right = video[..., :64, :].astype(float), video[..., 64:, :].astype(float)
        # sim-oracle imagines the simulated frames: both halves match up to H.264's loss
        assert np.abs(left - right).mean() < 3.0
        assert np.abs(left - simulated).mean() < 3.0
        assert np.abs(left[0] - left[-1]).mean() > 3.0  # the scene moves: a real comparison


def test_side_by_side_pads_the_shorter_episode_and_blanks_a_missing_one(tmp_path):
    import imageio.v3 as iio

    from worldvla_bench.worldmodel.rank import write_side_by_side_episode

    imagined = np.full((5, 32, 32, 3), 200, np.uint8)
    simulated = np.full((3, 64, 64, 3), 100, np.uint8)
    write_side_by_side_episode(tmp_path / "a.mp4", simulated, imagined)
    video = iio.imread(tmp_path / "a.mp4")
    assert video.shape == (5, 32, 64, 3)
    assert abs(video[4, :, :32].mean() - 100) < 4 and abs(video[4, :, 32:].mean() - 200) < 4
    write_side_by_side_episode(tmp_path / "b.mp4", None, imagined)
    assert iio.imread(tmp_path / "b.mp4")[:, :, :32].mean() < 4


class NeverSucceeds:
    """A judge that sees no success."""

    def success_probability(self, frames, suite, task_id):
        return np.zeros(len(frames))


def test_a_slow_policy_call_in_imagination_is_warned_about_once(tmp_path, caplog):
    import logging
    import re

    from conftest import split_config

    from worldvla_bench.rollout import run_evaluation
    from worldvla_bench.worldmodel.models import CopyLast
    from worldvla_bench.worldmodel.rank import imagine_run

    policy, args = "policies_for_tests:SleepyCameraPolicy", {"sleep_s": 0.3}
    run_evaluation(*split_config(suite="libero_goal", policy=policy, policy_kwargs=args,
                                 tasks="1", trials=2, run_dir=tmp_path / "sim", workers=1,
                                 progress=False, image_size=64, max_steps=2, slow_call_s=None))
    with caplog.at_level(logging.WARNING):
        imagine_run(tmp_path / "sim", tmp_path / "imagined", policy, args, "copy-last",
                    CopyLast(), NeverSucceeds(), "never", progress=False, slow_call_s=0.2)
    records = read_episodes(tmp_path / "imagined")
    assert [r["trial"] for r in records] == [0, 1]
    assert all(r["extra"]["mode"] == "closed" and r["policy_calls"] == 2
               and 0.3 <= r["slowest_call_s"] < 5 for r in records)
    slow = [r.getMessage() for r in caplog.records if "slow policy call" in r.getMessage()]
    assert len(slow) == 1, slow  # 4 slow calls, one line
    assert re.fullmatch(r"slow policy call: 0\.\d s \(task 1 trial 0\), over 0\.2 s \(warned "
                        r"once per run\)", slow[0]), slow[0]


def test_outputs_written_and_resume_adds_nothing(ranked):
    from worldvla_bench.worldmodel.rank import RankSetup, wm_rank

    out, result = ranked
    for name in ("ranking.md", "ranking.csv", "agreement.csv", "per_episode.csv", "ranking.png"):
        assert (out / name).stat().st_size > 0, name
    assert "MMRV" in result["text"] and "sim-oracle" in result["text"]
    panel = load_panel(out.parent / "panel.yaml")
    setup = RankSetup(Protocol("libero_goal", image_size=64, max_steps=120),
                      RunOptions(tasks="1", trials=1))
    wm_rank(panel, [("sim-oracle", {})], setup, out, judge=None, judge_id="simulator",
            judge_line="the simulator", progress=False, n_boot=50)
    assert len(read_episodes(out / "imagined" / "sim-oracle" / "expert")) == 1


def test_bad_panels_and_cameras_are_refused(tmp_path):
    from worldvla_bench.policies.random import RandomPolicy
    from worldvla_bench.worldmodel.imagination import imagination_mode

    (tmp_path / "one.yaml").write_text("policies:\n  a: {policy: noop}\n")
    with pytest.raises(BenchError, match="at least two"):
        load_panel(tmp_path / "one.yaml")
    (tmp_path / "bad.yaml").write_text("policies:\n  a: {policy: noop, arg: 1}\n  b: {policy: x}\n")
    with pytest.raises(BenchError, match="unknown keys"):
        load_panel(tmp_path / "bad.yaml")
    with pytest.raises(BenchError, match="no panel"):
        load_panel("no_such_panel")
    shipped = load_panel("libero_goal")
    assert [e.name for e in shipped.select(["noop", "expert"]).entries] == ["expert", "noop"]
    with pytest.raises(BenchError, match="no policies \\['nope'\\]; valid: expert"):
        shipped.select(["expert", "nope"])
    with pytest.raises(BenchError, match="at least two"):
        shipped.select(["expert"])
    assert imagination_mode(RandomPolicy()) == "open"
    assert imagination_mode(RandomPolicy(observe="agentview")) == "closed"
    with pytest.raises(BenchError, match="imagine only"):
        imagination_mode(RandomPolicy(observe=True))


def test_a_judge_is_required_for_learned_world_models(tmp_path):
    from worldvla_bench.cli import main

    (tmp_path / "p.yaml").write_text(PANEL)
    assert main(["wm-rank", "--panel", str(tmp_path / "p.yaml"), "--world-model", "copy-last",
                 "--suite", "libero_goal", "--out", str(tmp_path / "o")]) == 2
    assert not Path(tmp_path / "o").exists()


def test_simulate_only_runs_the_simulator_half_of_a_panel_subset(tmp_path, capsys):
    from worldvla_bench.cli import main

    (tmp_path / "p.yaml").write_text(PANEL)
    common = ["wm-rank", "--panel", str(tmp_path / "p.yaml"), "--suite", "libero_goal",
              "--tasks", "1", "--trials", "1", "--image-size", "64", "--max-steps", "4",
              "--workers", "1", "--no-progress", "--out", str(tmp_path / "o")]
    assert main(common) == 2  # no world model, not --simulate-only
    assert "at least one --world-model" in capsys.readouterr().err
    assert main([*common, "--policies", "noop,pixels", "--simulate-only"]) == 0
    assert sorted(p.name for p in (tmp_path / "o" / "sim").iterdir()) == ["noop", "pixels"]
    assert [r["steps"] for r in read_episodes(tmp_path / "o" / "sim" / "noop")] == [4]
    assert not (tmp_path / "o" / "imagined").exists()


def test_notebook_plots_the_ranking(ranked, tmp_path, monkeypatch):
    import nbformat
    from conftest import REPO
    from nbclient import NotebookClient

    out, _ = ranked
    plot = tmp_path / "rank.png"
    monkeypatch.setenv("WORLDVLA_RANK", str(out))
    monkeypatch.setenv("WORLDVLA_RANK_PLOT", str(plot))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = REPO / "notebooks" / "success_rates.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert plot.exists() and plot.stat().st_size > 5000


def test_shipped_panels_load_and_name_known_policies():
    from worldvla_bench.panels import available_panels
    from worldvla_bench.policy import resolve_policy_class

    assert "libero_goal" in available_panels()
    for name in available_panels():
        panel = load_panel(name)
        for entry in panel.entries:
            resolve_policy_class(entry.policy)  # raises for an unknown policy


def test_report_html_of_a_rank_output(ranked, tmp_path, capsys):
    """`report OUT --html DIR` on a wm-rank output: the ranking table, the scatter plot, and per
    world model and policy a grid whose cells play the simulated | imagined video."""
    from test_html_report import facts

    from worldvla_bench.cli import main

    out, result = ranked
    assert main(["report", str(out), "--html", str(tmp_path / "page")]) == 0
    html = (tmp_path / "page" / "index.html").read_text()
    page = facts(html)
    for policy in ("expert", "noop", "pixels"):
        assert f"<td>{policy}</td>" in html
        assert f'data-run="sim-oracle_{policy}"' in html
    assert html.count("data:image/png;base64,") >= 1 + 3  # the scatter, a poster per player
    assert len(page.videos) == 3 and len(page.cells) == 3
    for cell in page.cells:
        video = tmp_path / "page" / cell["href"]
        assert video.is_file() and video.stat().st_size > 0
    imagined = {p: read_episodes(out / "imagined" / "sim-oracle" / p)[0]["success"]
                for p in ("expert", "noop", "pixels")}
    outcomes = {c["run"].removeprefix("sim-oracle_"): c["outcome"] == "success"
                for c in page.cells}
    assert outcomes == imagined
    assert main(["report", str(out)]) == 2  # a rank output without --html: one clear line
    assert "--html" in capsys.readouterr().err


def test_export_lerobot_of_an_imagined_run(ranked, tmp_path, capsys):
    """An imagined run of wm-rank --video as a LeRobot dataset: LeRobot reads back the imagined
    frames (up to video compression), the actions and the imagined outcome; the protocol is the
    simulated run's and the world model is named."""
    import json
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset",
                                          reason="LeRobot is not installed (make setup)")
    pytest.importorskip("torchcodec", reason="torchcodec (LeRobot's decoder) not installed")
    from worldvla_bench.cli import main

    out, _ = ranked
    imagined = out / "imagined" / "sim-oracle" / "expert"
    assert main(["export-lerobot", str(imagined), str(tmp_path / "ds"), "--no-progress"]) == 0
    dataset = lerobot_dataset.LeRobotDataset("local/imagined", root=tmp_path / "ds")
    ours = dataset.meta.info["worldvla_bench"]
    sim_manifest = json.loads((out / "sim" / "expert" / "manifest.json").read_text())
    assert ours["protocol"]["suite"] == sim_manifest["config"]["suite"] == "libero_goal"
    assert ours["imagination"]["world_model"] == "sim-oracle"
    (record,) = read_episodes(imagined)
    arrays = load_episode_arrays(imagined / record["episode_file"])
    steps = len(arrays["actions"])
    assert len(dataset) == steps and "observation.state" not in dataset.meta.features
    items = [dataset[i] for i in range(steps)]
    np.testing.assert_array_equal(np.stack([x["action"].numpy() for x in items]),
                                  arrays["actions"].astype(np.float32))
    assert bool(items[-1]["next.success"]) == record["success"]
    decoded = np.stack([(x["observation.images.agentview"].numpy() * 255).round()
                        .transpose(1, 2, 0) for x in items])
    assert np.abs(decoded - arrays["frames_agentview"][:steps]).mean() < 4.0  # AV1, 64 px
