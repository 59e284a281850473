"""A small VQ-VAE image tokenizer trained by the project (stands in for Chameleon's VQ-GAN).

Images are float tensors (B, 3, H, W) in [-1, 1], RGB, H = W = `VQConfig.image_size`; codes are
int64 (B, H/d, W/d) with d = `VQConfig.downsample`. Quantisation uses a nearest-neighbour codebook
with the straight-through estimator; the loss is
``mse(recon, x) + mse(sg(z_e), e) + beta * mse(z_e, sg(e))`` (codebook + commitment terms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldvla_bench.integrations.worldvla.config import VQConfig


def images_to_tensor(images: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 RGB images (H, W, 3) or (B, H, W, 3) -> float (B, 3, size, size) in [-1, 1].

    Images of another size are resized (bilinear, antialiased). Any numpy strides are accepted.
    """
    if isinstance(images, torch.Tensor):
        x = images
    else:  # flipped env frames have negative strides, which torch cannot wrap
        x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (B, H, W, 3) images, got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.clamp(-1.0, 1.0)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup with the straight-through estimator."""

    def __init__(self, codebook_size: int, dim: int, beta: float) -> None:
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.beta = beta

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each vector of z (B, D, h, w) -> (B, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.codebook.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, h, w) of codes (B, h, w)."""
        return self.codebook(codes).permute(0, 3, 1, 2)

    def forward(
        self, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantised z, codes, codebook loss, commitment loss)."""
        codes = self.codes(z)
        zq = self.lookup(codes)
        codebook_loss = F.mse_loss(zq, z.detach())
        commitment_loss = self.beta * F.mse_loss(z, zq.detach())
        return z + (zq - z).detach(), codes, codebook_loss, commitment_loss


@dataclass
class VQOutput:
    """Result of `VQVAE.forward`; `loss` = reconstruction + codebook + commitment."""

    recon: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    recon_loss: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class VQVAE(nn.Module):
    """Conv encoder (stride-2 stages) -> codebook -> mirrored transposed-conv decoder."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        enc: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        prev = ch[0]
        for c in ch:
            enc += [nn.Conv2d(prev, c, 4, stride=2, padding=1), ResBlock(c)]
            prev = c
        enc += [nn.SiLU(), nn.Conv2d(prev, config.embed_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(config.codebook_size, config.embed_dim, config.beta)
        dec: list[nn.Module] = [nn.Conv2d(config.embed_dim, ch[-1], 3, padding=1)]
        outs = [*ch[-2::-1], ch[0]]
        for c_in, c_out in zip(ch[::-1], outs, strict=True):
            up = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
            dec += [ResBlock(c_in), nn.SiLU(), up]
        dec += [nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def grid(self) -> int:
        return self.config.grid

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> codes (B, H/d, W/d) int64."""
        return self.quantizer.codes(self.encoder(images))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> images (B, 3, h*d, w*d), nominally in [-1, 1] (not clamped)."""
        return self.decoder(self.quantizer.lookup(codes))

    def forward(self, images: torch.Tensor) -> VQOutput:
        zq, codes, codebook_loss, commitment_loss = self.quantizer(self.encoder(images))
        recon = self.decoder(zq)
        recon_loss = F.mse_loss(recon, images)
        loss = recon_loss + codebook_loss + commitment_loss
        return VQOutput(recon, codes, loss, recon_loss, codebook_loss, commitment_loss)
