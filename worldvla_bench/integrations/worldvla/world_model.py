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
from worldvla_bench.integrations.worldvla.devices import autocast, resolve_device, use_bf16
from worldvla_bench.integrations.worldvla.shipped import DEFAULT_CHECKPOINT
from worldvla_bench.integrations.worldvla.training import load_checkpoint
from worldvla_bench.observation_profiles import resize_image
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel


class WorldVLAWorldModel(WorldModel):
    """`checkpoint`: a checkpoint file, training directory or shipped name (default the shipped
    tiny libero_goal model; see `checkpoints.resolve_checkpoint`). `device` any torch device
    (default CPU); `bf16` None autocasts to bfloat16 on CUDA only."""

    def __init__(self, checkpoint: str = DEFAULT_CHECKPOINT, num_threads: int | None = 1,
                 batch_size: int = 32, device: str = "cpu", bf16: bool | None = None) -> None:
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.batch_size = max(1, int(batch_size))
        self.device = resolve_device(device)
        self.bf16 = use_bf16(self.device, bf16)
        self.model, self.meta = load_checkpoint(checkpoint)
        self.model.to(self.device)
        self.image_size = self.model.config.vq.image_size

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, instruction: str,
                context: PredictionContext | None = None) -> np.ndarray:
        return self.predict_many([(context_frames, actions, instruction, context)])[0]

    def predict_many(self, items):
        """All clips in lockstep, one batched model call per step (about 10x the frames per
        second of one clip at a time at batch 32 on 2 CPU cores)."""
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
        predicted: list[list[np.ndarray]] = [[] for _ in items]
        for step in range(max((len(a) for a in actions), default=0)):
            active = [i for i, a in enumerate(actions) if step < len(a)]
            for start in range(0, len(active), self.batch_size):
                batch = active[start:start + self.batch_size]
                with autocast(self.device, self.bf16):
                    out = self.model.predict_next_images(
                        np.stack([current[i] for i in batch]),
                        np.stack([actions[i][step] for i in batch]))
                for i, frame in zip(batch, out, strict=True):
                    current[i] = frame
                    predicted[i].append(frame)
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
