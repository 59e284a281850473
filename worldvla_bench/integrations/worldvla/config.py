"""Sizes of the WorldVLA model: transformer, VQ image tokenizer, token layout; named presets.

One code path serves every preset. `tiny` trains and runs on 2 CPU cores (64x64 images, 8x8
codes: with 4x4 codes the lifted and the grasping arm gave the same tokens); `small` and `base`
are our own larger sizes (not the sizes of a published checkpoint). `base` uses the
WorldVLA/Chameleon image layout: 256x256 images, 16x downsampling, 16x16 codes, codebook 8192.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TransformerConfig:
    """Chameleon-style decoder-only transformer (pre-norm RMSNorm, RoPE, SwiGLU, optional qk-norm).

    `max_seq_len` is the longest prompt + answer the generation code accepts (tokens); rotary
    embeddings themselves have no length limit.
    """

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ffn_dim: int = 352
    qk_norm: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 1024
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class VQConfig:
    """VQ-VAE image tokenizer: square RGB images of `image_size` pixels, `downsample`x smaller grid.

    `channels` holds the output channels of each stride-2 stage (one per factor 2 of
    `downsample`, so 4 stages for 16x). `beta` weighs the commitment loss.
    """

    image_size: int = 64
    downsample: int = 16
    codebook_size: int = 512
    embed_dim: int = 32
    channels: tuple[int, ...] = (16, 32, 32, 64)
    beta: float = 0.25

    def __post_init__(self) -> None:
        n = self.downsample.bit_length() - 1
        if self.downsample < 2 or 1 << n != self.downsample:
            raise ValueError(f"downsample must be a power of 2 >= 2, got {self.downsample}")
        if len(self.channels) != n:
            raise ValueError(
                f"channels needs {n} entries for {self.downsample}x, got {self.channels}"
            )
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not a multiple of {self.downsample}")

    @property
    def grid(self) -> int:
        """Codes per image side (image_size / downsample)."""
        return self.image_size // self.downsample


@dataclass(frozen=True)
class WorldVLAConfig:
    """Everything needed to build the model and its token vocabulary.

    `max_grid` is the largest grid side that has its own grid token; `image_loss_weight` is the
    per-class cross-entropy weight of image-code targets (0.04 as in WorldVLA);
    `max_new_action_tokens` caps action generation (300 as in WorldVLA's eval).
    `world_frame_step` S: a world-model sample reads frame t and the S actions t..t+S-1 and
    predicts frame t+S. WorldVLA's is 1 (the next frame: `world_model_conv_generation.py`,
    `main()`, `img_c_f = img_list[j + 1 : j + 2]` in alibaba-damo-academy/WorldVLA); a larger S
    suits a tokenizer too coarse to resolve one step's change (see docs/worldvla.md).
    """

    name: str = "tiny"
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    max_grid: int = 64
    image_loss_weight: float = 0.04
    max_new_action_tokens: int = 300
    world_frame_step: int = 1

    def __post_init__(self) -> None:
        if self.world_frame_step < 1:
            raise ValueError(f"world_frame_step must be >= 1, got {self.world_frame_step}")
        if self.vq.grid > self.max_grid:
            raise ValueError(f"image grid {self.vq.grid} exceeds max_grid {self.max_grid}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldVLAConfig:
        data = dict(data)
        vq = dict(data.pop("vq", {}))
        if "channels" in vq:
            vq["channels"] = tuple(vq["channels"])
        return cls(
            transformer=TransformerConfig(**data.pop("transformer", {})), vq=VQConfig(**vq), **data
        )


PRESETS: dict[str, WorldVLAConfig] = {
    "tiny": WorldVLAConfig(
        name="tiny",
        transformer=TransformerConfig(
            d_model=128, n_layers=4, n_heads=4, ffn_dim=352, max_seq_len=1024
        ),
        vq=VQConfig(image_size=64, downsample=8, codebook_size=512, embed_dim=32,
                    channels=(32, 64, 64)),
    ),
    "small": WorldVLAConfig(
        name="small",
        transformer=TransformerConfig(
            d_model=512, n_layers=8, n_heads=8, ffn_dim=1408, max_seq_len=2048
        ),
        vq=VQConfig(image_size=128, downsample=16, codebook_size=8192, embed_dim=64,
                    channels=(64, 128, 128, 256)),
    ),
    "base": WorldVLAConfig(
        name="base",
        transformer=TransformerConfig(
            d_model=1024, n_layers=16, n_heads=16, ffn_dim=2816, max_seq_len=4096
        ),
        vq=VQConfig(image_size=256, downsample=16, codebook_size=8192, embed_dim=256,
                    channels=(128, 128, 256, 256)),
    ),
}


def preset(name: str, **overrides: Any) -> WorldVLAConfig:
    """The named preset, with top-level fields replaced and `transformer`/`vq` dicts merged.

    Example: ``preset("tiny", vq={"codebook_size": 256}, image_loss_weight=1.0)``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    config = PRESETS[name]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in ("transformer", "vq") and isinstance(value, dict):
            changes[key] = dataclasses.replace(getattr(config, key), **value)
        else:
            changes[key] = value
    return dataclasses.replace(config, **changes)
