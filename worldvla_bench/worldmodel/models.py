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


class Rollout:
    """A world model imagining one episode step by step: `step(actions (K, 7))` returns the K
    frames after them (uint8 (K, H, W, 3)). The default chains `predict` on its own last frame;
    `simulator_success` holds the simulator's verdict after each step for rollouts that run a
    simulator (sim-oracle), else stays empty."""

    def __init__(self, model: WorldModel, first_frame: np.ndarray, instruction: str,
                 context: PredictionContext | None = None) -> None:
        self.model = model
        self.last = np.asarray(first_frame, dtype=np.uint8)
        self.instruction = instruction
        self.context = context
        self.simulator_success: list[bool] = []

    def step(self, actions: np.ndarray) -> np.ndarray:
        frames = np.asarray(self.model.predict(self.last[None], np.asarray(actions, np.float64),
                                               self.instruction, self.context))
        self.leave_simulator_state()
        if len(frames):
            self.last = frames[-1]
        return frames

    def leave_simulator_state(self) -> None:
        """Called once a step has predicted from the context: later calls start from an
        imagined frame, which no simulator state describes, so they carry the episode's metadata
        alone."""
        self.context = None if self.context is None else PredictionContext(meta=self.context.meta)


class WorldModel(abc.ABC):
    """Override `predict`; `close` releases resources. `start_rollout` imagines an episode
    step by step (closed loop: the policy acts on the frames it returns)."""

    @abc.abstractmethod
    def predict(self, context_frames: np.ndarray, actions: np.ndarray, instruction: str,
                context: PredictionContext | None = None) -> np.ndarray:
        """Predict one frame per action: (N, H, W, 3) uint8."""

    def predict_many(self, items: list[tuple[np.ndarray, np.ndarray, str,
                                             PredictionContext | None]]) -> list[np.ndarray]:
        """`predict` for several clips at once: items of (context_frames, actions, instruction,
        context), one array of frames each. Models that batch (WorldVLA) override it."""
        return [self.predict(*item) for item in items]

    def start_rollout(self, first_frame: np.ndarray, instruction: str,
                      context: PredictionContext | None = None) -> Rollout:
        """An imagined episode from one real frame (H, W, 3) uint8; see `Rollout`."""
        return Rollout(self, first_frame, instruction, context)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


def _checked_size(image_size: int | None) -> int | None:
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    return None if image_size is None else int(image_size)


def through_size(frames: np.ndarray, image_size: int | None, model: str) -> np.ndarray:
    """Frames (..., H, H, 3) uint8 passed through `image_size` px: resized down to it and back to
    H with the resize every observation profile uses (`observation_profiles.resize_image`), so
    they lose the detail a model predicting at that size loses; as they are when None."""
    frames = np.asarray(frames, dtype=np.uint8)
    if image_size is None:
        return frames
    from worldvla_bench.observation_profiles import resize_image

    height, width = frames.shape[-3:-1]
    if height != width:
        raise BenchError(f"{model} image_size needs square frames, got {height}x{width}")
    flat = frames.reshape(-1, height, width, 3)
    out = np.stack([resize_image(resize_image(f, image_size), height) for f in flat])
    return out.reshape(frames.shape)


class CopyLast(WorldModel):
    """Repeats the last context frame: the floor every world model must beat.

    `image_size` (pixels, square) passes the copied frame through that resolution first
    (`through_size`). It is the floor of a model that predicts at that size and is scored on
    larger frames (`--model-arg image_size=64` beside a 64-px model): the two lose the same
    detail to resolution, so what remains between them is prediction."""

    def __init__(self, image_size: int | None = None) -> None:
        self.image_size = _checked_size(image_size)

    def predict(self, context_frames, actions, instruction, context=None):
        last = through_size(context_frames[-1], self.image_size, "copy-last")
        return np.repeat(last[None], len(actions), axis=0)


#: robosuite's episode length in LIBERO's env (libero/libero/envs/env_wrapper.py, ControlEnv:
#: horizon=1000, ignore_done=False): a step beyond it raises "executing action in terminated
#: episode".
ROBOSUITE_HORIZON = 1000
#: room a rollout keeps before robosuite's horizon: the longest LIBERO step limit (libero_10's
#: 520, tasks/libero_long.yaml) with a margin
LONGEST_ROLLOUT = 600


class SimOracle(WorldModel):
    """Restores the simulator state of the last context frame and replays the actions in LIBERO.

    The prediction is the simulator itself: a ceiling that should score ~0 FVD/LPIPS, which also
    validates the pipeline end to end. Needs episodes recorded with simulator states
    (`eval --save-frames`). The env is reset once per task and scene (the recorded episode's
    seeding, `envs/seeding.scene_of`: the fixtures stand where they stood); each clip then
    restores its state after clearing what a soft reset clears (the same frames: tests replay
    recorded episodes from mid-episode states and compare every pixel).

    `image_size` (pixels, square) passes every simulated frame through that resolution
    (`through_size`): the ceiling of a model that predicts at that size, as `copy-last
    image_size` is its floor (what a perfect 64-px model scores on 256-px frames).
    """

    def __init__(self, image_size: int | None = None) -> None:
        self.image_size = _checked_size(image_size)
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

    def _restored(self, context: PredictionContext | None, size: int, steps: int):
        """The env, at the state of `context` (the last context frame), with room for `steps`."""
        if context is None or context.state is None or "suite" not in context.meta:
            raise BenchError("sim-oracle needs episodes with simulator states and suite/task "
                             "(record them with `worldvla-bench eval --save-frames`)")
        env = self._env_for(context.meta, size)
        scene = scene_of(context.meta)
        # a reset per scene (the seed moves fixtures), not per clip; and before the horizon
        if self._scene != scene or env.steps_since_reset + steps >= ROBOSUITE_HORIZON - 1:
            env.reset(options={"init_state": 0, "scene": scene})
            self._scene = scene
        else:
            env.clear_carried_state()  # as a soft reset does: gripper command, warm start
        env.restore_sim_state(context.state, context.control_state)
        return env

    def predict(self, context_frames, actions, instruction, context=None):
        env = self._restored(context, int(context_frames.shape[1]), len(actions))
        return _SimRollout(env, self.image_size).step(actions)

    def start_rollout(self, first_frame, instruction, context=None):
        """The simulator itself, continuing from the state of the first frame; it records the
        simulator's success check after every step (`Rollout.simulator_success`)."""
        return _SimRollout(self._restored(context, int(np.shape(first_frame)[0]),
                                          LONGEST_ROLLOUT), self.image_size)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._key = None
            self._scene = None


class _SimRollout(Rollout):
    """Steps a LIBERO env (set up by `SimOracle`) and keeps its frames and success checks."""

    def __init__(self, env, image_size: int | None = None) -> None:
        self.env = env
        self.image_size = image_size
        self.simulator_success = []

    def step(self, actions: np.ndarray) -> np.ndarray:
        frames = []
        for action in np.asarray(actions, dtype=np.float64):
            obs, _, _, _, info = self.env.step(action)
            frames.append(obs["agentview_image"])
            self.simulator_success.append(bool(info["success"]))
        return through_size(np.stack(frames), self.image_size, "sim-oracle")


#: World models by name; installed packages add theirs through the entry-point group
#: `worldvla_bench.world_models` (WorldVLA's integration does, see pyproject.toml).
WORLD_MODELS: Registry[type[WorldModel]] = Registry("world model", base=WorldModel,
                                                    group="worldvla_bench.world_models")
WORLD_MODELS.register("copy-last", CopyLast)
WORLD_MODELS.register("sim-oracle", SimOracle)


def make_world_model(name: str, **kwargs: Any) -> WorldModel:
    """A registered world model by name, or a user's as 'package.module:Class'."""
    return instantiate(WORLD_MODELS.load(name), kwargs, f"world model {name!r}")
