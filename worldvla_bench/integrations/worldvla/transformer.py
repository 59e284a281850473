"""Chameleon-style decoder-only transformer over the shared token vocabulary, with a KV cache.

Pre-norm blocks: ``x + attn(rmsnorm(x))``, ``x + swiglu(rmsnorm(x))``; rotary position
embeddings (rotate-half convention, positions from the caller so padding can be skipped);
optional qk-norm (LayerNorm over the head dimension with per-head affine weights, as Chameleon).
Attention takes an explicit boolean mask (B, Tq, Tk), True = attend (see `masks`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worldvla_bench.integrations.worldvla.config import TransformerConfig
from worldvla_bench.integrations.worldvla.vocab import Vocab

IGNORE_INDEX = -100


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).type_as(x)


class HeadNorm(nn.Module):
    """LayerNorm over the head dimension of (B, T, H, Dh) with (H, Dh) affine weights."""

    def __init__(self, n_heads: int, head_dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(n_heads, head_dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (B, 1, T, head_dim) for integer positions (B, T)."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class KVCache:
    """Preallocated keys/values (B, H, capacity, Dh) per layer; `length` tokens are filled."""

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (batch, n_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.capacity = capacity
        self.length = 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys/values after the filled part; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache full: {end} tokens > capacity {self.capacity}")
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n


class Attention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d, h = config.d_model, config.n_heads
        self.n_heads, self.head_dim = h, config.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.q_norm: nn.Module = nn.Identity()
        self.k_norm: nn.Module = nn.Identity()
        if config.qk_norm:
            self.q_norm = HeadNorm(h, self.head_dim, config.norm_eps)
            self.k_norm = HeadNorm(h, self.head_dim, config.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        shape = (b, t, self.n_heads, self.head_dim)
        q = self.q_norm(self.q_proj(x).view(shape)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(shape)).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if mask.shape != (b, t, k.shape[2]):
            raise ValueError(f"mask shape {tuple(mask.shape)} != {(b, t, k.shape[2])}")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.ffn_dim, bias=False)
        self.up_proj = nn.Linear(config.d_model, config.ffn_dim, bias=False)
        self.down_proj = nn.Linear(config.ffn_dim, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.input_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config)
        self.post_attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        x = x + self.attn(self.input_norm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attn_norm(x))


class WorldVLATransformer(nn.Module):
    """Token ids -> next-token logits over the shared vocabulary (`vocab_size` classes)."""

    def __init__(self, config: TransformerConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.init_std)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        p = self.embed.weight
        c = self.config
        return KVCache(c.n_layers, batch, c.n_heads, c.head_dim, capacity, p.dtype, p.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        attn_mask: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, Tq, V) for tokens (B, Tq) at rotary `positions` (B, Tq).

        `attn_mask` (B, Tq, Tk) is boolean; Tk = Tq without a cache, else cache.length + Tq
        (the new tokens' keys are appended to the cache).
        """
        x = self.embed(input_ids)
        cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, attn_mask, cache, i)
        if cache is not None:
            cache.advance(input_ids.shape[1])
        return self.lm_head(self.norm(x))


def class_weights(vocab: Vocab, image_weight: float = 0.04) -> torch.Tensor:
    """Per-class cross-entropy weights (V,): `image_weight` for image-code targets, 1 elsewhere.

    Layout tokens of an image (begin, grid, newline, end) keep weight 1.
    """
    w = torch.ones(vocab.size)
    w[vocab.image_offset : vocab.image_offset + vocab.codebook_size] = image_weight
    return w


def lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy: logits[:, t] predicts labels[:, t + 1]; -100 labels are ignored.

    With per-class `weight` this is the weighted mean ``sum(w_y * nll) / sum(w_y)`` over the
    counted targets (``F.cross_entropy(weight=...)``), not a scaled sum.
    """
    v = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, v).float(),
        labels[:, 1:].reshape(-1),
        weight=None if weight is None else weight.to(logits.device, torch.float32),
        ignore_index=IGNORE_INDEX,
    )


def lm_loss_sums(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`lm_loss` as (sum of w_y * nll, sum of w_y) over the counted targets, so shards of one
    batch (DDP ranks) add up to the whole batch's weighted mean."""
    v = logits.shape[-1]
    targets = labels[:, 1:].reshape(-1)
    w = None if weight is None else weight.to(logits.device, torch.float32)
    total = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), targets, weight=w,
                            ignore_index=IGNORE_INDEX, reduction="sum")
    counted = targets[targets != IGNORE_INDEX]
    denominator = (w[counted].sum() if w is not None
                   else torch.tensor(float(len(counted)), device=logits.device))
    return total, denominator
