"""The engine's side of an observation profile: what to render, what the policy sees, what the
env executes.

A policy names its profile (`Policy.observation_profile`, see `observation_profiles`); the
episode loop builds one `ObservationPipeline` per episode from it and
- renders the policy's cameras on the steps the profile needs (`render_steps`): the last step
  of every action chunk, and for a history of consecutive env steps (`history_step='env_step'`,
  WorldVLA) also the steps just before it, so the previous frame is the previous env step's;
- hands the policy prepared observations (`observe`): each camera's image cropped and resized
  as the profile says (`prepare_image`, at the profile's size or else `Policy.image_size`), and
  `{camera}_history`, uint8 (n, H, W, 3): the n = history - 1 frames before the current one,
  oldest first. Where an episode has fewer frames so far, `first_history='repeat_current'` pads
  with the current frame; `'current_only'` gives the frames there are (none at the first call);
- maps the chunk the policy returns to the env's gripper convention (`to_env`, `gripper_to_env`).

Policies thus receive observations ready for their model and never split a chunk to get a frame
rendered. The rendered pixels are the env's: rendering a camera on more steps does not change
them (tests/test_env.py).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from worldvla_bench.observation_profiles import (
    GRIPPER_AS_DECODED,
    ObservationProfile,
    get_profile,
    gripper_to_env,
    prepare_image,
)

#: observation key suffix of the history frames a profile asks for
HISTORY_SUFFIX = "_history"


class ObservationPipeline:
    """One episode's application of a profile for one policy; see the module docstring.

    `cameras` are the cameras the policy reads (the profile's when it names them); `image_size`
    is the model's input size (px) when the profile leaves it open (None: the env's size).
    """

    def __init__(self, profile: str | ObservationProfile, cameras: tuple[str, ...],
                 image_size: int | None = None) -> None:
        self.profile = get_profile(profile)
        self.cameras = tuple(cameras)
        self.image_size = None if image_size is None else int(image_size)
        self.previous = max(0, self.profile.history - 1)
        #: whether the profile changes the gripper value the policy emits
        self.maps_gripper = (self.profile.gripper != GRIPPER_AS_DECODED
                             or self.profile.binarize_gripper)
        # the latest prepared frames per camera, the current one last
        self._frames: dict[str, deque[np.ndarray]] = {
            camera: deque(maxlen=self.previous + 1) for camera in self.cameras}
        self._current: dict[str, np.ndarray] = {}

    @property
    def is_identity(self) -> bool:
        """True when the profile changes nothing (no crop, resize, history or gripper mapping)."""
        p = self.profile
        return (p.image_size is None and self.image_size is None and p.center_crop_scale is None
                and self.previous == 0 and not self.maps_gripper)

    def render_steps(self, chunk_len: int) -> frozenset[int]:
        """Indices in a chunk of `chunk_len` actions after which the policy's cameras render."""
        trailing = self.previous + 1 if self._env_step_history else 1
        return frozenset(range(max(0, chunk_len - trailing), chunk_len))

    @property
    def _env_step_history(self) -> bool:
        return self.previous > 0 and self.profile.history_step == "env_step"

    def log_frame(self, observation: dict[str, Any]) -> None:
        """An observation whose policy cameras were rendered (after reset or a step), in order.

        With env-step history every such frame moves the history on; with policy-call history
        only the frames the policy was shown do (`observe` pushes those)."""
        if self._env_step_history:
            self._push(observation)

    def observe(self, observation: dict[str, Any]) -> dict[str, Any]:
        """The observation the policy gets: prepared images and their history."""
        if self.is_identity:
            return observation
        if not self._env_step_history or not self._current:
            self._push(observation)
        out = dict(observation)
        for camera in self.cameras:
            key = f"{camera}_image"
            if key not in observation:
                continue
            current = self._current[camera]
            out[key] = current
            if self.previous:
                history = list(self._frames[camera])[:-1]  # the last one is the current one
                if self.profile.first_history == "repeat_current":
                    history = [current] * (self.previous - len(history)) + history
                shape = (len(history), *current.shape)
                out[camera + HISTORY_SUFFIX] = (np.stack(history) if history
                                                else np.zeros(shape, dtype=np.uint8))
        return out

    def to_env(self, chunk: np.ndarray) -> np.ndarray:
        """The policy's chunk (K, 7) in the env's gripper convention."""
        return gripper_to_env(chunk, self.profile) if self.maps_gripper else chunk

    def _push(self, observation: dict[str, Any]) -> None:
        for camera in self.cameras:
            key = f"{camera}_image"
            if key not in observation:
                continue
            frame = prepare_image(observation[key], self.profile, self.image_size)
            self._current[camera] = frame
            self._frames[camera].append(frame)
