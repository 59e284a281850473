"""The world-model interface, its registry, and two baselines that frame the scores.

A world model predicts future frames from context frames and the actions taken:
`predict(context_frames, actions, instruction, context) -> frames`, with `context_frames`
(C, H, W, 3) uint8, `actions` (N, 7), returning N frames (N, H, W, 3) uint8: the frame after
each action. `context` carries the episode's metadata (suite, task, simulator state of the last
context frame) for models that can use it; learned models ignore it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldvla_bench.envs.seeding import SceneSeed, scene_of
from worldvla_bench.errors import BenchError
from worldvla_bench.registry import Registry, instantiate


@dataclass
class PredictionContext:
    """Metadata of the clip being predicted: episode fields and the last context frame's state."""

    meta: dict[str, Any] = field(default_factory=dict)
    state: np.ndarray | None = None
    control_state: np.ndarray | None = None


class WorldModel(abc.ABC):
    """Override `predict`; `close` releases resources."""

    @abc.abstractmethod
    def predict(self, context_frames: np.ndarray, actions: np.ndarray, instruction: str,
                context: PredictionContext | None = None) -> np.ndarray:
        """Predict one frame per action: (N, H, W, 3) uint8."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class CopyLast(WorldModel):
    """Repeats the last context frame: the floor every world model must beat."""

    def predict(self, context_frames, actions, instruction, context=None):
        return np.repeat(context_frames[-1:], len(actions), axis=0)


#: robosuite's episode length in LIBERO's env (libero/libero/envs/env_wrapper.py, ControlEnv:
#: horizon=1000, ignore_done=False): a step beyond it raises "executing action in terminated
#: episode".
ROBOSUITE_HORIZON = 1000


class SimOracle(WorldModel):
    """Restores the simulator state of the last context frame and replays the actions in LIBERO.

    The prediction is the simulator itself: a ceiling that should score ~0 FVD/LPIPS, which also
    validates the pipeline end to end. Needs episodes recorded with simulator states
    (`eval --save-frames`). The env is reset once per task and scene (the recorded episode's
    seeding, `envs/seeding.scene_of`: the fixtures stand where they stood); each clip then
    restores its state after clearing what a soft reset clears (the same frames: tests replay
    recorded episodes from mid-episode states and compare every pixel).
    """

    def __init__(self) -> None:
        self._env = None
        self._key: tuple | None = None
        self._scene: SceneSeed | None = None

    def _env_for(self, meta: dict[str, Any], size: int):
        from worldvla_bench.envs.libero_env import LiberoEnv

        key = (meta["suite"], int(meta["task_id"]), size)
        if self._key != key:
            self.close()
            self._env = LiberoEnv(meta["suite"], int(meta["task_id"]), image_size=size,
                                  cameras=("agentview",), wait_steps=0, max_steps=10**9)
            self._key = key
            self._scene = None
        return self._env

    def predict(self, context_frames, actions, instruction, context=None):
        if context is None or context.state is None or "suite" not in context.meta:
            raise BenchError("sim-oracle needs episodes with simulator states and suite/task "
                             "(record them with `worldvla-bench eval --save-frames`)")
        env = self._env_for(context.meta, int(context_frames.shape[1]))
        scene = scene_of(context.meta)
        # a reset per scene (the seed moves fixtures), not per clip; and before the horizon
        if self._scene != scene or env.steps_since_reset + len(actions) >= ROBOSUITE_HORIZON - 1:
            env.reset(options={"init_state": 0, "scene": scene})
            self._scene = scene
        else:
            env.clear_carried_state()  # as a soft reset does: gripper command, warm start
        env.restore_sim_state(context.state, context.control_state)
        frames = []
        for action in actions:
            obs, *_ = env.step(action)
            frames.append(obs["agentview_image"])
        return np.stack(frames)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._key = None
            self._scene = None


#: World models by name; installed packages add theirs through the entry-point group
#: `worldvla_bench.world_models` (WorldVLA's integration does, see pyproject.toml).
WORLD_MODELS: Registry[type[WorldModel]] = Registry("world model", base=WorldModel,
                                                    group="worldvla_bench.world_models")
WORLD_MODELS.register("copy-last", CopyLast)
WORLD_MODELS.register("sim-oracle", SimOracle)


def make_world_model(name: str, **kwargs: Any) -> WorldModel:
    """A registered world model by name, or a user's as 'package.module:Class'."""
    return instantiate(WORLD_MODELS.load(name), kwargs, f"world model {name!r}")
