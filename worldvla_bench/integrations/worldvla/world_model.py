"""A trained WorldVLA checkpoint as a `WorldModel` for `worldvla-bench wm-eval`.

Autoregressive rollout from one real frame, as WorldVLA's released evaluator does: the first
prediction is made from the last context frame and the first action; every later frame from the
previous *predicted* frame and the next action (decoded to pixels and encoded again, as a frame
fed back to the model would be). Predictions come out at the model's image size and are resized
(bilinear, antialiased) to the size of the context frames.

A checkpoint trained with `world_frame_step` S > 1 predicts the frame after every S actions,
from the previous predicted frame and those S actions; the frames after the actions in between
hold the last predicted (or context) frame, and so do the frames of a trailing group of fewer
than S actions. An imagined episode (`start_rollout`) keeps such a partial group pending until
its chunk completes it, so chunks of any size imagine what one call over all actions would.

Options (constructor arguments, e.g. `wm-eval --model-arg temperature=0.7`):
- `feedback`: 'pixels' (default, as above) or 'codes': each step reads the previous step's
  predicted VQ codes directly, with no decode -> re-encode round trip (frames are still decoded
  for the output);
- `temperature` (None or 0: greedy, the default), `top_k`, `seed`: sampled decoding of the image
  codes; clip i's step t draws with a generator seeded from (`seed`, the clip's metadata, its
  instruction, the bytes of its last context frame, t), so a clip imagines the same frames in any
  batch and in any rerun.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.checkpoints import checkpoint_identity
from worldvla_bench.integrations.worldvla.devices import autocast, resolve_device, use_bf16
from worldvla_bench.integrations.worldvla.generation import Sampling, check_sampling, derive_seed
from worldvla_bench.integrations.worldvla.sequence import world_step_actions
from worldvla_bench.integrations.worldvla.shipped import DEFAULT_CHECKPOINT
from worldvla_bench.integrations.worldvla.training import load_checkpoint
from worldvla_bench.observation_profiles import resize_image
from worldvla_bench.worldmodel.models import PredictionContext, Rollout, WorldModel

#: How a predicted frame is fed back: decoded and re-encoded ('pixels'), or as its codes.
FEEDBACK = ("pixels", "codes")


def check_world_model_arguments(feedback: str = "pixels", temperature: float | None = None,
                                top_k: int | None = None, seed: int = 0) -> None:
    """Refuse a bad `feedback` or decoding option (one-line ValueError)."""
    if feedback not in FEEDBACK:
        raise ValueError(f"feedback must be one of {FEEDBACK}, got {feedback!r}")
    check_sampling(temperature, top_k, seed)


def clip_seed(seed: int, last_frame: np.ndarray, instruction: str | None,
              context: PredictionContext | None) -> int:
    """The sampling seed of one clip: from the model's `seed`, the clip's metadata, its
    instruction and the bytes of its last context frame (step t then draws with
    `derive_seed(clip_seed, t)`)."""
    meta = json.dumps(context.meta if context is not None else {}, sort_keys=True, default=str)
    return derive_seed(seed, meta, str(instruction or ""),
                       np.ascontiguousarray(last_frame, dtype=np.uint8).tobytes())


class WorldVLAWorldModel(WorldModel):
    """`checkpoint`: a checkpoint file, training directory or shipped name (default the shipped
    tiny libero_goal model; see `checkpoints.resolve_checkpoint`). `device` any torch device
    (default CPU); `bf16` None autocasts to bfloat16 on CUDA only. `feedback`, `temperature`,
    `top_k`, `seed`: see the module docstring."""

    def __init__(self, checkpoint: str = DEFAULT_CHECKPOINT, num_threads: int | None = 1,
                 batch_size: int = 32, device: str = "cpu", bf16: bool | None = None,
                 feedback: str = "pixels", temperature: float | None = None,
                 top_k: int | None = None, seed: int = 0) -> None:
        self.check_arguments(feedback=feedback, temperature=temperature, top_k=top_k, seed=seed)
        self.feedback = feedback
        self.sampling = Sampling(temperature, top_k, seed)
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.batch_size = max(1, int(batch_size))
        self.device = resolve_device(device)
        self.bf16 = use_bf16(self.device, bf16)
        self.model, self.meta = load_checkpoint(checkpoint)
        self.model.to(self.device)
        self.image_size = self.model.config.vq.image_size
        self.frame_step = self.model.config.world_frame_step
        self._served = checkpoint_identity(self.meta)

    def served_model(self) -> dict[str, Any]:
        """The checkpoint it runs (file name, sha256, step): `wm-rank` keeps it in each
        imagined run's settings, so a resume after the file changed is refused."""
        return dict(self._served)

    @classmethod
    def check_arguments(cls, feedback: str = "pixels", temperature: float | None = None,
                        top_k: int | None = None, seed: int = 0, **_: Any) -> None:
        """Refuse bad options before anything is loaded (one-line ValueError)."""
        check_world_model_arguments(feedback, temperature, top_k, seed)

    def clip_seed(self, last_frame: np.ndarray, instruction: str,
                  context: PredictionContext | None) -> int:
        """The sampling seed of one clip (its steps derive theirs from it)."""
        return clip_seed(self.sampling.seed, last_frame, instruction, context)

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, instruction: str,
                context: PredictionContext | None = None) -> np.ndarray:
        return self.predict_many([(context_frames, actions, instruction, context)])[0]

    def start_rollout(self, first_frame: np.ndarray, instruction: str,
                      context: PredictionContext | None = None) -> Rollout:
        if self.frame_step == 1:
            return Rollout(self, first_frame, instruction, context)
        return _GroupedRollout(self, first_frame, instruction, context)

    def predict_many(self, items):
        """All clips in lockstep, one batched model call per step (about 10x the frames per
        second of one clip at a time at batch 32 on 2 CPU cores); a step is `frame_step`
        actions (see the module docstring)."""
        sizes = []
        for frames, acts, _, _ in items:
            frames, acts = np.asarray(frames), np.asarray(acts)
            if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
                raise BenchError(f"context frames must be (C, H, W, 3) with C >= 1, got "
                                 f"{frames.shape}")
            if acts.ndim != 2 or acts.shape[1] != 7:
                raise BenchError(f"actions must be (N, 7), got {acts.shape}")
            if frames.shape[1] != frames.shape[2]:
                raise BenchError(f"context frames must be square, got "
                                 f"{frames.shape[1]}x{frames.shape[2]}")
            sizes.append(frames.shape[1])
        actions = [np.asarray(item[1], dtype=np.float64) for item in items]
        current = [resize_image(np.asarray(item[0])[-1].astype(np.uint8), self.image_size)
                   for item in items]
        clip_seeds = ([] if self.sampling.greedy else
                      [self.clip_seed(np.asarray(item[0])[-1], item[2], item[3]) for item in items])
        codes: list[torch.Tensor] = []
        if self.feedback == "codes":
            for start in range(0, len(current), self.batch_size):
                codes += list(self.model.encode_images(
                    np.stack(current[start:start + self.batch_size])))
        predicted: list[list[np.ndarray]] = [[] for _ in items]
        n = self.frame_step
        for step in range(max((len(a) // n for a in actions), default=0)):
            active = [i for i, a in enumerate(actions) if (step + 1) * n <= len(a)]
            for start in range(0, len(active), self.batch_size):
                batch = active[start:start + self.batch_size]
                sampled = {} if self.sampling.greedy else {
                    "sampling": self.sampling,
                    "seeds": [derive_seed(clip_seeds[i], step) for i in batch]}
                step_actions = np.stack([world_step_actions(actions[i], step * n, n)
                                         for i in batch])
                with autocast(self.device, self.bf16):
                    if self.feedback == "codes":
                        new = self.model.predict_next_codes(
                            torch.stack([codes[i] for i in batch]), step_actions, **sampled)
                        out = self.model.decode_codes(new)
                        for i, c in zip(batch, new, strict=True):
                            codes[i] = c
                    else:
                        out = self.model.predict_next_images(
                            np.stack([current[i] for i in batch]), step_actions, **sampled)
                for i, frame in zip(batch, out, strict=True):
                    predicted[i] += [current[i]] * (n - 1)  # frames between: held
                    current[i] = frame
                    predicted[i].append(frame)
        for i, a in enumerate(actions):  # a trailing partial group: held
            predicted[i] += [current[i]] * (len(a) - len(predicted[i]))
        results = []
        for frames, size in zip(predicted, sizes, strict=True):
            if not frames:
                results.append(np.zeros((0, size, size, 3), np.uint8))
                continue
            out = np.stack(frames)
            results.append(out if size == self.image_size else resize_image(out, size))
        return results

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


class _GroupedRollout(Rollout):
    """An imagined episode of a model that predicts a frame every `frame_step` actions: actions
    of an unfinished group wait in `pending` (their frames hold the last predicted frame) and
    are predicted with the next chunk, from the frame that ended the last complete group."""

    def __init__(self, model: WorldVLAWorldModel, first_frame: np.ndarray, instruction: str,
                 context: PredictionContext | None = None) -> None:
        super().__init__(model, first_frame, instruction, context)
        self.anchor = self.last  # the frame after the last complete group
        self.pending = np.zeros((0, 7), np.float64)

    def step(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, np.float64).reshape(-1, 7)
        todo = np.concatenate([self.pending, actions])
        frames = np.asarray(self.model.predict(self.anchor[None], todo, self.instruction,
                                               self.context))
        done = len(todo) // self.model.frame_step * self.model.frame_step
        if done:
            self.anchor = frames[done - 1]
            self.leave_simulator_state()
        new = frames[len(self.pending):]
        self.pending = todo[done:]
        if len(new):
            self.last = new[-1]
        return new
