"""Shared fixtures. Real LIBERO rollouts here stay short (few steps, 64 px images)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
# spawned worker processes import test policies (tests/policies_for_tests.py) by module path
_extra = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(REPO), *_extra])
sys.path.insert(0, str(TESTS_DIR))

SMALL = {"image_size": 64, "max_steps": 12}


def split_config(**kwargs):
    """(Protocol, RunOptions) from their fields given together, for short test calls:
    `run_evaluation(*split_config(suite=..., policy=..., run_dir=..., workers=2))`."""
    from dataclasses import fields

    from worldvla_bench.protocol import Protocol, RunOptions

    names = {f.name for f in fields(Protocol)}
    return (Protocol(**{k: v for k, v in kwargs.items() if k in names}),
            RunOptions(**{k: v for k, v in kwargs.items() if k not in names}))


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> Path:
    """A real run: libero_spatial tasks 0 and 1, 2 trials each, 2 workers, random policy, videos."""
    from worldvla_bench.rollout import run_evaluation

    run_dir = tmp_path_factory.mktemp("runs") / "random_small"
    run_evaluation(
        *split_config(
            suite="libero_spatial",
            policy="random",
            tasks="0,1",
            trials=2,
            run_dir=run_dir,
            workers=2,
            video=True,
            progress=False,
            **SMALL,
        )
    )
    return run_dir
