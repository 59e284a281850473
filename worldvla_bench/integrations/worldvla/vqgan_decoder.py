"""The decoder half of Chameleon's VQ-GAN (the released `chameleon/tokenizer/vqgan.ckpt`).

`transformers`' `ChameleonVQVAE` has the encoder only; WorldVLA decodes generated images with
the original (taming-transformers) decoder, model/chameleon_vae_ori/vqgan.py `Decoder`. This is
that network with the same parameter names (``decoder.*`` in the checkpoint), so the release's
weights load unchanged: conv_in, a middle of resnet + attention + resnet, one up level per
``ch_mult`` entry (``num_res_blocks + 1`` resnet blocks, attention at `attn_resolutions`,
nearest 2x upsampling and a conv except at the last level), GroupNorm(32, eps 1e-6), swish,
conv_out. Input: post-quant-conv latents (B, z_channels, h, w); output (B, 3, 16h, 16w) in
about [-1, 1] for Chameleon's five levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    # model/chameleon_vae_ori/vqgan.py Normalize: GroupNorm(32 groups, eps=1e-6, affine)
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """vqgan.py ResnetBlock without the time embedding (the decoder's temb_channels is 0)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, 1)
                             if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class AttnBlock(nn.Module):
    """vqgan.py AttnBlock: single-head self-attention over the h*w positions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q, k, v = (m(h).reshape(b, c, hh * ww).transpose(1, 2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, hh, ww))


class Upsample(nn.Module):
    """vqgan.py Upsample with_conv=True: nearest 2x, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VQGANDecoder(nn.Module):
    """vqgan.py Decoder (give_pre_end=False, tanh_out=False, vanilla attention)."""

    def __init__(self, *, ch: int, out_ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int,
                 dropout: float = 0.0, **_: Any) -> None:
        super().__init__()
        n_levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (n_levels - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        ups: list[nn.Module] = []
        for level in reversed(range(n_levels)):
            up = nn.Module()
            up.block = nn.ModuleList()
            up.attn = nn.ModuleList()
            block_out = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if res in attn_resolutions:
                    up.attn.append(AttnBlock(block_in))
            if level != 0:
                up.upsample = Upsample(block_in)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[i](h)
            if level != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def decoder_from_state(ddconfig: dict[str, Any], state: dict[str, torch.Tensor]) -> VQGANDecoder:
    """A decoder built from `vqgan.yaml`'s ``ddconfig`` with the ``decoder.*`` weights of a
    VQ-GAN state dict (missing or unexpected weights raise)."""
    decoder = VQGANDecoder(**ddconfig)
    prefix = "decoder."
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = sorted(set(decoder.state_dict()) - set(own))
    if missing:
        raise KeyError(f"the VQ-GAN checkpoint lacks decoder weights {missing[:5]} "
                       f"(of {len(missing)})")
    decoder.load_state_dict(own, strict=True)
    return decoder.eval()
