"""A trained WorldVLA checkpoint as a `WorldModel` for `worldvla-bench wm-eval`.

Autoregressive rollout from one real frame, as WorldVLA's released evaluator does: the first
prediction is made from the last context frame and the first action; every later frame from the
previous *predicted* frame and the next action (decoded to pixels and encoded again, as a frame
fed back to the model would be). Predictions come out at the model's image size and are resized
(bilinear, antialiased) to the size of the context frames.
"""

from __future__ import annotations

import numpy as np
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.shipped import DEFAULT_CHECKPOINT
from worldvla_bench.integrations.worldvla.training import load_checkpoint
from worldvla_bench.observation_profiles import resize_image
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel


class WorldVLAWorldModel(WorldModel):
    """`checkpoint`: a checkpoint file, training directory or shipped name (default the shipped
    tiny libero_goal model; see `checkpoints.resolve_checkpoint`)."""

    def __init__(self, checkpoint: str = DEFAULT_CHECKPOINT, num_threads: int | None = 1) -> None:
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model, self.meta = load_checkpoint(checkpoint)
        self.image_size = self.model.config.vq.image_size

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, instruction: str,
                context: PredictionContext | None = None) -> np.ndarray:
        frames = np.asarray(context_frames)
        actions = np.asarray(actions, dtype=np.float64)
        if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
            raise BenchError(f"context frames must be (C, H, W, 3) with C >= 1, got {frames.shape}")
        if actions.ndim != 2 or actions.shape[1] != 7:
            raise BenchError(f"actions must be (N, 7), got {actions.shape}")
        height, width = frames.shape[1:3]
        current = resize_image(frames[-1].astype(np.uint8), self.image_size)
        predicted = []
        for action in actions:
            current = self.model.predict_next_images(current[None], action[None])[0]
            predicted.append(current)
        if not predicted:
            return np.zeros((0, height, width, 3), np.uint8)
        out = np.stack(predicted)
        if (height, width) != (self.image_size, self.image_size):
            if height != width:
                raise BenchError(f"context frames must be square, got {height}x{width}")
            out = resize_image(out, height)
        return out

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
