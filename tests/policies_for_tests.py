"""Deliberately broken policies, loaded by `module:Class` path in the tests."""

from __future__ import annotations

import numpy as np

from worldvla_bench.policy import EpisodeContext, Policy


class NanOnTrialOnePolicy(Policy):
    """Returns NaN actions in trial 1, zeros otherwise."""

    def reset(self, context: EpisodeContext) -> None:
        self.trial = context.trial

    def act(self, observation):
        return np.full((3, 7), np.nan) if self.trial == 1 else np.zeros((3, 7))


class WrongShapePolicy(Policy):
    """Returns (2, 6) chunks."""

    def act(self, observation):
        return np.zeros((2, 6))


class NotAPolicy:
    """Not a subclass of Policy."""
