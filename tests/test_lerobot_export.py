"""export-lerobot: a real run recorded with --save-frames, written as a LeRobot v3 dataset and
read back by LeRobot's own `LeRobotDataset` (offline, local root): the same actions, states,
tasks and episode boundaries, and the same frames up to video compression (measured)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, split_config

from worldvla_bench.cli import main
from worldvla_bench.errors import BenchError
from worldvla_bench.manifest import read_manifest
from worldvla_bench.records import load_episode_arrays, read_episodes
from worldvla_bench.results_json import protocol_hash, protocol_of

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is ever fetched from a hub in these tests
lerobot_dataset = pytest.importorskip(
    "lerobot.datasets.lerobot_dataset",
    reason="LeRobot is not installed (make setup: pip install --no-deps lerobot==0.4.4)")
pytest.importorskip("torchcodec", reason="torchcodec (LeRobot's video decoder) not installed")

CAMERAS = ("agentview", "robot0_eye_in_hand")
#: largest mean |error| (of 255) and smallest mean PSNR (dB) accepted: LeRobot's encoder settings
#: (crf 30, yuv420p) on 64 px frames measured 3.19 / 34.6 (AV1) and 5.63 / 29.2 (H.264)
COMPRESSION_BOUNDS = {"libsvtav1": (4.0, 32.0), "h264": (7.0, 27.0)}


@pytest.fixture(scope="module")
def frames_run(tmp_path_factory) -> Path:
    """A real run with every frame saved: the expert on libero_spatial tasks 0 and 1, 2 trials."""
    from worldvla_bench.rollout import run_evaluation

    run_dir = tmp_path_factory.mktemp("runs") / "expert_frames"
    run_evaluation(*split_config(suite="libero_spatial", policy="expert", tasks="0,1", trials=2,
                                 run_dir=run_dir, workers=2, save_frames=True, progress=False,
                                 **SMALL))
    return run_dir


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse else float("inf")


@pytest.mark.parametrize("vcodec", ["libsvtav1", "h264"])
def test_lerobot_reads_back_the_exported_run(frames_run: Path, tmp_path, vcodec, capsys):
    out = tmp_path / "dataset"
    assert main(["export-lerobot", str(frames_run), str(out), "--vcodec", vcodec,
                 "--no-progress"]) == 0
    assert "LeRobot v3.0" in capsys.readouterr().out
    for path in ("meta/info.json", "meta/tasks.parquet", "meta/stats.json",
                 "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet",
                 *(f"videos/observation.images.{c}/chunk-000/file-000.mp4" for c in CAMERAS)):
        assert (out / path).is_file(), path

    dataset = lerobot_dataset.LeRobotDataset("local/expert_frames", root=out)
    info = dataset.meta.info
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    records = sorted(read_episodes(frames_run),
                     key=lambda r: (r["suite"], r["task_id"], r["trial"]))
    assert dataset.meta.total_episodes == len(records) == 4
    manifest = read_manifest(frames_run)
    ours = info["worldvla_bench"]
    assert ours["protocol"] == protocol_of(manifest)
    assert ours["protocol_hash"] == protocol_hash(protocol_of(manifest))

    start, errors, psnrs, shifted = 0, [], [], []
    for index, record in enumerate(records):
        arrays = load_episode_arrays(frames_run / record["episode_file"])
        steps = len(arrays["actions"])
        episode = dataset.meta.episodes[index]
        assert (episode["dataset_from_index"], episode["dataset_to_index"]) == (
            start, start + steps)
        assert episode["tasks"] == [record["instruction"]]
        assert ours["episodes"][index]["trial"] == record["trial"]
        items = [dataset[i] for i in range(start, start + steps)]
        assert [int(x["episode_index"]) for x in items] == [index] * steps
        assert [int(x["frame_index"]) for x in items] == list(range(steps))
        assert all(x["task"] == record["instruction"] for x in items)
        np.testing.assert_array_equal(np.stack([x["action"].numpy() for x in items]),
                                      arrays["actions"].astype(np.float32))
        np.testing.assert_array_equal(np.stack([x["observation.state"].numpy() for x in items]),
                                      arrays["proprio"][:steps].astype(np.float32))
        done = [bool(x["next.done"]) for x in items]
        assert done == [False] * (steps - 1) + [True]
        assert [bool(x["next.success"]) for x in items][-1] == bool(record["success"])
        for camera in CAMERAS:
            decoded = np.stack([(x[f"observation.images.{camera}"].numpy() * 255)
                                .round().astype(np.uint8).transpose(1, 2, 0) for x in items])
            truth = arrays[f"frames_{camera}"][:steps]
            errors.append(np.abs(decoded.astype(np.int16) - truth).mean())
            psnrs += [psnr(d, t) for d, t in zip(decoded, truth, strict=True)]
            shifted += [psnr(d, t) for d, t in zip(decoded[1:], truth[:-1], strict=True)]
        start += steps
    assert len(dataset) == start
    mean_abs, mean_psnr, off_by_one = float(np.mean(errors)), float(np.mean(psnrs)), float(
        np.mean(shifted))
    print(f"{vcodec}: mean |decoded - recorded| {mean_abs:.2f}/255, PSNR {mean_psnr:.1f} dB "
          f"(frame t against t-1: {off_by_one:.1f} dB)")
    largest_error, smallest_psnr = COMPRESSION_BOUNDS[vcodec]
    assert mean_abs < largest_error and mean_psnr > smallest_psnr
    assert mean_psnr > off_by_one + 3.0  # the frames line up with their steps


def test_export_refuses_a_run_without_frames(recorded_run: Path, tmp_path):
    with pytest.raises(BenchError, match="--save-frames"):
        from worldvla_bench.lerobot_export import export_lerobot

        export_lerobot(recorded_run, tmp_path / "d", progress=False)


def test_export_refuses_an_existing_directory(frames_run: Path, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["export-lerobot", str(frames_run), str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert json.loads((frames_run / "manifest.json").read_text())  # the run is untouched
