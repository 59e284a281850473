"""`RunDir`: the one owner of the run directory's layout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import worldvla_bench
from worldvla_bench.errors import RunDirectoryError
from worldvla_bench.run_dir import RunDir, has_arrays

ROOT = Path(worldvla_bench.__file__).resolve().parent.parent


def _record(task_id: int, trial: int, **extra) -> dict:
    return {"suite": "libero_spatial", "task_id": task_id, "trial": trial, "success": True,
            **extra}


def test_layout_names_only_in_run_dir():
    """No Python module but run_dir.py names the run directory's files (`tokens.npz`, the
    ablation grid's token file, is not one)."""
    pattern = re.compile(r"manifest\.json|episodes\.jsonl|imagination\.json|(?<!tokens)\.npz")
    offenders = []
    files = [*(ROOT / "worldvla_bench").rglob("*.py"), *(ROOT / "policies").rglob("*.py")]
    for path in sorted(files):
        if path.name == "run_dir.py" and path.parent.name == "worldvla_bench":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_episode_files_are_laid_out_by_stem(tmp_path):
    run = RunDir(tmp_path)
    assert run.episode_file("libero_goal", 3, 7) == "episodes/libero_goal_task03_trial07.npz"
    assert run.video_path("libero_goal", 3, 7) == tmp_path / "videos/libero_goal_task03_trial07.mp4"
    assert not run.has_episode_arrays()
    name = run.save_arrays("libero_goal", 3, 7, actions=np.arange(14.0).reshape(2, 7))
    assert run.has_episode_arrays()
    assert (tmp_path / name) == run.episode_path("libero_goal", 3, 7)
    np.testing.assert_array_equal(run.arrays({"episode_file": name})["actions"],
                                  np.arange(14.0).reshape(2, 7))
    assert run.cache_path("judge_hold", "x_hold3") == tmp_path / "judge_hold" / "x_hold3.npz"


def test_pending_and_finished_with_arrays(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_run() and run.records() == []
    run.append(_record(0, 0, episode_file="episodes/a.npz"))
    run.append(_record(0, 1, episode_file="episodes/b.npz", error="boom"))
    run.append(_record(1, 0))
    assert run.is_run()
    assert [has_arrays(r) for r in run.records()] == [True, False, False]
    assert [(r["task_id"], r["trial"]) for r in run.finished_with_arrays()] == [(0, 0)]
    wanted = [("libero_spatial", 0, 0), ("libero_spatial", 0, 2), ("libero_spatial", 1, 0)]
    assert run.pending(wanted) == [("libero_spatial", 0, 2)]
    assert run.pending([_record(1, 0), _record(2, 0)]) == [_record(2, 0)]


def test_imagination_identity_is_checked(tmp_path):
    run = RunDir(tmp_path / "imagined")
    assert run.imagination() is None
    run.check_imagination({"world_model": "a", "threshold": 0.5})
    run.check_imagination({"world_model": "a", "threshold": 0.5})  # same settings: resumes
    assert run.imagination() == {"world_model": "a", "threshold": 0.5}
    with pytest.raises(RunDirectoryError, match=r"other settings \(\['threshold'\]\)"):
        run.check_imagination({"world_model": "a", "threshold": 0.6})


def test_config_without_manifest_is_empty(tmp_path):
    assert RunDir(tmp_path).config() == {}
    assert not RunDir(tmp_path).has_manifest()
