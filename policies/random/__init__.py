"""`random`: uniform random actions in [-1, 1], seeded by the episode seed (reproducible)."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldvla_bench.policy import EpisodeContext, Policy


class RandomPolicy(Policy):
    """Uniform actions in [-1, 1]^7, `chunk_size` at a time; the RNG is reseeded every episode."""

    cameras = ()  # blind: reads no image, so none is rendered

    def __init__(self, chunk_size: int = 1, scale: float = 1.0,
                 observe: bool | str | tuple[str, ...] = False) -> None:
        """`observe=True` makes it read every camera, like a VLA would (for benchmarks); camera
        names (a tuple or a comma-separated string) make it read only those, e.g. `agentview`,
        the one camera WorldVLA and OpenVLA read."""
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if not 0.0 < float(scale) <= 1.0:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.chunk_size = int(chunk_size)
        self.scale = float(scale)
        if isinstance(observe, str):
            self.cameras = tuple(name.strip() for name in observe.split(",") if name.strip())
        elif isinstance(observe, (list, tuple)):
            self.cameras = tuple(observe)
        elif observe:  # True (or 1 from `--policy-arg observe=1`): every camera
            self.cameras = None
        self._rng = np.random.default_rng(0)

    def reset(self, context: EpisodeContext) -> None:
        self._rng = np.random.default_rng(context.seed)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return self._rng.uniform(-self.scale, self.scale, size=(self.chunk_size, 7))
