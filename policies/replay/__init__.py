"""`replay`: plays back the actions recorded for the same (suite, task, trial) in an earlier run.

Re-running recorded actions from the same init state and seed must reproduce the recorded
outcome and final simulator state: the check that the harness is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.policy import EpisodeContext, Policy
from worldvla_bench.run_dir import RunDir, load_episode_arrays


class ReplayPolicy(Policy):
    """Replays `actions` of the run's arrays of the same episode (`RunDir.episode_path`),
    `chunk_size` at a time."""

    cameras = ()  # blind: reads no image, so none is rendered

    def __init__(self, run: str, chunk_size: int = 50) -> None:
        self.run_dir = Path(run)
        if not RunDir(self.run_dir).has_episode_arrays():
            raise BenchError(f"replay run {run!r} has no episodes/ directory with recorded actions")
        self.chunk_size = int(chunk_size)
        self._actions = np.zeros((0, 7))
        self._cursor = 0

    def reset(self, context: EpisodeContext) -> None:
        path = RunDir(self.run_dir).episode_path(context.suite, context.task_id, context.trial)
        if not path.exists():
            raise BenchError(f"no recorded episode {path}")
        self._actions = load_episode_arrays(path)["actions"]
        self._cursor = 0

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if self._cursor >= len(self._actions):
            raise BenchError("replay ran out of recorded actions: the episode diverged")
        chunk = self._actions[self._cursor : self._cursor + self.chunk_size]
        self._cursor += len(chunk)
        return chunk
