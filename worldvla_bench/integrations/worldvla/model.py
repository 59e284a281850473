"""`WorldVLA`: transformer + VQ-VAE + tokenizer behind one object (training loss, inference).

Images in and out are uint8 RGB (B, H, W, 3) as the env renders them (already flipped upright);
they are resized to the VQ image size. Actions are float (K, 7) in env units.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.config import WorldVLAConfig, preset
from worldvla_bench.integrations.worldvla.generation import (
    Sampling,
    forward_sequence,
    generate_actions,
    generate_image,
)
from worldvla_bench.integrations.worldvla.sequence import Batch, WorldVLATokenizer, pad_sequences
from worldvla_bench.integrations.worldvla.transformer import (
    WorldVLATransformer,
    class_weights,
    lm_loss,
)
from worldvla_bench.integrations.worldvla.vocab import Vocab
from worldvla_bench.integrations.worldvla.vq import VQVAE, images_to_tensor, tensor_to_images


class WorldVLA(nn.Module):
    """The whole model. `transformer` and `vq` are trained separately (VQ first)."""

    def __init__(self, config: WorldVLAConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab = Vocab(config.vq.codebook_size, config.max_grid)
        self.tokenizer = WorldVLATokenizer(self.vocab)
        self.transformer = WorldVLATransformer(config.transformer, self.vocab.size)
        self.vq = VQVAE(config.vq)
        self.register_buffer(
            "class_weight", class_weights(self.vocab, config.image_loss_weight), persistent=False
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> WorldVLA:
        return cls(preset(name, **overrides))

    @property
    def device(self) -> torch.device:
        return self.transformer.embed.weight.device

    def loss(self, batch: Batch, *, action_mask: bool = True) -> torch.Tensor:
        """Weighted cross-entropy on the answer tokens of a (right- or left-padded) batch."""
        batch = batch.to(self.device)
        logits = forward_sequence(
            self.transformer, batch.input_ids, batch.valid, action_mask=action_mask
        )
        return lm_loss(logits, batch.labels, self.class_weight)

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> VQ codes (B, h, w); the VQ-VAE runs float32, also inside a
        bf16 autocast (which is for the transformer)."""
        x = images_to_tensor(images, self.config.vq.image_size).to(self.device)
        with torch.autocast(self.device.type, enabled=False):
            return self.vq.encode(x)

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """VQ codes (B, h, w) -> uint8 (B, H, W, 3) (float32, as `encode_images`)."""
        with torch.autocast(self.device.type, enabled=False):
            return tensor_to_images(self.vq.decode(codes.to(self.device)))

    @torch.no_grad()
    def predict_actions(
        self,
        instructions: Sequence[str],
        prev_images: np.ndarray,
        cur_images: np.ndarray,
        *,
        num_blocks: int | None = None,
        max_new_tokens: int | None = None,
        constrained: bool = False,
    ) -> list[np.ndarray]:
        """One (K_i, 7) action chunk per sample; images uint8 (B, H, W, 3)."""
        prev_codes, cur_codes = self.encode_images(prev_images), self.encode_images(cur_images)
        prompts = [
            self.tokenizer.action_prompt(text, p, c)
            for text, p, c in zip(instructions, prev_codes, cur_codes, strict=True)
        ]
        ids, valid = pad_sequences(prompts)
        gen = generate_actions(
            self.transformer,
            self.tokenizer,
            ids,
            valid,
            num_blocks=num_blocks,
            max_new_tokens=max_new_tokens or self.config.max_new_action_tokens,
            constrained=constrained,
        )
        return gen.actions

    @torch.no_grad()
    def predict_next_codes(self, codes: torch.Tensor, actions: np.ndarray, *,
                           sampling: Sampling | None = None,
                           seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Next-frame VQ codes (B, h, w) from codes (B, h, w) and actions (B, 7) (for a model
        whose `world_frame_step` S > 1: (B, S, 7), the frame after all S); greedy unless
        `sampling` (one seed per sample in `seeds`, see `generation.generate`)."""
        step = self.config.world_frame_step
        expected = (len(codes), 7) if step == 1 else (len(codes), step, 7)
        if np.shape(actions) != expected:
            raise BenchError(f"this model's world-model step reads {step} action(s): actions "
                             f"must be {expected}, got {np.shape(actions)}")
        prompts = [
            self.tokenizer.world_prompt(c, a) for c, a in zip(codes, actions, strict=True)
        ]
        ids, valid = pad_sequences(prompts)
        grid = self.config.vq.grid
        gen = generate_image(self.transformer, self.tokenizer, ids, valid, grid=(grid, grid),
                             sampling=sampling, seeds=seeds)
        return gen.codes

    @torch.no_grad()
    def predict_next_images(self, images: np.ndarray, actions: np.ndarray, *,
                            sampling: Sampling | None = None,
                            seeds: Sequence[int] | None = None) -> np.ndarray:
        """Next frames uint8 (B, H', W', 3) from frames (B, H, W, 3) and actions (B, 7), or
        (B, S, 7) (see `predict_next_codes`)."""
        codes = self.predict_next_codes(self.encode_images(images), actions, sampling=sampling,
                                        seeds=seeds)
        return self.decode_codes(codes)

    def save(self, path: str | Path) -> None:
        torch.save({"config": self.config.to_dict(), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> WorldVLA:
        data = torch.load(path, map_location=map_location, weights_only=True)
        model = cls(WorldVLAConfig.from_dict(data["config"]))
        model.load_state_dict(data["state_dict"])
        return model
