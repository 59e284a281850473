"""`expert`: a scripted planner over the privileged channel (BDDL goal + simulator poses).

It reads `obs['privileged']` (see `worldvla_bench.envs.privileged`), plans the goal into skills
(`planner`) and runs them closed loop (`skills`), one (1, 7) action per call, the same actions
a learned policy emits. It never calls the success check.

Two arguments make it a worse policy on purpose, so that failures happen near the goal (the
success judge of `worldvla_bench.worldmodel.judge` trains on them):
- `action_noise` (std, in action units): Gaussian noise added to the six arm dimensions of every
  action it emits, then clipped to [-1, 1]. The noise generator is
  `numpy.random.default_rng(context.seed)`, reseeded at every `reset`, one
  `normal(0, action_noise, 6)` draw per call: an episode's noise is a pure function of its seed.
  The planner does not see the noise it adds (it tracks its own commands), only its effect.
- `gripper_delay` (steps): the gripper command it emits lags the one it means by that many
  steps; the first `gripper_delay` steps of an episode emit "open" (-1), as the hand starts.
  With either, `intended_actions()` gives the action it planned before degrading it (recorded
  beside the executed one, for training on what it meant: DART).
- `stop_after` (steps): a truncated expert: from that step on it holds still with the gripper
  open (the scripted plan cut short; None: never).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.policies.expert import skills
from worldvla_bench.policies.expert.planner import PlanningError, Step, plan
from worldvla_bench.policy import EpisodeContext, Policy

__all__ = ["ExpertPolicy", "plan", "Step"]


class ExpertPolicy(Policy):
    """Scripted expert for LIBERO; needs the privileged state, returns (1, 7) chunks."""

    requires_privileged_state = True
    cameras = ()  # reads no image: nothing is rendered for it

    def __init__(self, verbose: bool = False, action_noise: float = 0.0,
                 gripper_delay: int = 0, stop_after: int | None = None) -> None:
        self.verbose = bool(verbose)
        self.action_noise = float(action_noise)
        self.gripper_delay = int(gripper_delay)
        if not np.isfinite(self.action_noise) or self.action_noise < 0:
            raise BenchError(f"action_noise must be a finite std >= 0, got {action_noise!r}")
        if self.gripper_delay < 0:
            raise BenchError(f"gripper_delay must be >= 0 steps, got {gripper_delay!r}")
        self.stop_after = None if stop_after is None else int(stop_after)
        if self.stop_after is not None and self.stop_after < 0:
            raise BenchError(f"stop_after must be >= 0 steps, got {stop_after!r}")
        self._calls = 0
        self._intended: np.ndarray | None = None
        self._rng = np.random.default_rng(0)
        self._gripper_queue: deque[float] = deque()
        self._reset_plan()

    def _reset_plan(self) -> None:
        self.ctx = skills.Context()
        self.steps: list[Step] | None = None
        self._index = 0
        self._current = None
        self.results: list[tuple[str, bool]] = []

    def reset(self, context: EpisodeContext | None = None) -> None:
        self._reset_plan()
        self._rng = np.random.default_rng(context.seed if context is not None else 0)
        self._gripper_queue = deque([skills.OPEN] * self.gripper_delay)
        self._calls = 0
        self._intended = None

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        self._calls += 1
        self._intended = None
        if self.stop_after is not None and self._calls > self.stop_after:
            return np.array([[0.0] * 6 + [skills.OPEN]])
        planned = self._plan_action(observation)
        executed = self._degrade(planned)
        if executed is not planned:
            self._intended = planned
        return executed

    def intended_actions(self) -> np.ndarray | None:
        """The planned (1, 7) action of the last call, when `action_noise` or `gripper_delay`
        made the one returned differ; None otherwise."""
        return self._intended

    def _degrade(self, action: np.ndarray) -> np.ndarray:
        """The planned (1, 7) action with `action_noise` and `gripper_delay` applied."""
        if self.action_noise == 0.0 and self.gripper_delay == 0:
            return action
        out = action.copy()
        if self.action_noise > 0.0:
            noise = self._rng.normal(0.0, self.action_noise, size=6)
            out[0, :6] = np.clip(out[0, :6] + noise, -1.0, 1.0)
        if self.gripper_delay > 0:
            self._gripper_queue.append(float(action[0, 6]))
            out[0, 6] = self._gripper_queue.popleft()
        return out

    def _plan_action(self, observation: dict[str, Any]) -> np.ndarray:
        state = observation.get("privileged")
        if state is None:
            raise BenchError("the expert needs obs['privileged'] (requires_privileged_state)")
        self.ctx.state = state
        if self.ctx.base_xy is None:  # the hand starts at its home pose, ahead of the base
            home = np.asarray(state["robot"]["eef_pos"][:2], dtype=np.float64)
            self.ctx.base_xy = home - np.array([skills.BASE_BEHIND_HOME, 0.0])
        if self.steps is None:
            try:
                self.steps = plan(state)
            except PlanningError as error:
                raise BenchError(f"expert cannot plan this goal: {error}") from None
            if self.verbose:
                print("plan:", [str(s) for s in self.steps])
        while self._index < len(self.steps):
            if self._current is None:
                self._current = skills.run_step(self.ctx, self.steps[self._index])
            try:
                return self._emit(next(self._current))
            except StopIteration as stop:
                step = self.steps[self._index]
                self.results.append((str(step), bool(stop.value)))
                if self.verbose:
                    print(f"{step}: {'ok' if stop.value else 'FAILED'}", self.ctx.log[-3:])
                self._current = None
                self._index += 1
        # plan done (the env ends the episode on success): hold still, gripper open
        self.ctx.grip = skills.OPEN
        return self._emit(skills.action_towards(self.ctx, self.ctx.eef.copy(), 0.2))

    def _emit(self, action: np.ndarray) -> np.ndarray:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.ctx.grip_target = float(
            np.clip(self.ctx.grip_target + skills.GRIP_RATE * np.sign(action[6]), -1.0, 1.0)
        )
        return action[None, :]
