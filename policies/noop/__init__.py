"""`noop`: holds still with the gripper open. A floor, and a check of the env's resting state."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldvla_bench.policy import Policy


class NoopPolicy(Policy):
    """Zero motion, gripper open (-1), as a chunk of `chunk_size` steps."""

    cameras = ()  # blind: reads no image, so none is rendered

    def __init__(self, chunk_size: int = 10) -> None:
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        chunk = np.zeros((self.chunk_size, 7))
        chunk[:, 6] = -1.0
        return chunk
