"""Token layout of one image (Chameleon/WorldVLA style) for an h x w grid of VQ codes.

``image_begin ("break"), grid(h), grid(w), [c(0,0) .. c(0,w-1), newline], ...,
[c(h-1,0) .. c(h-1,w-1), newline], image_end`` -- 3 + h * (w + 1) + 1 tokens, codes row-major,
every row (the last included) ended by a newline token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.vocab import Vocab


def image_token_count(h: int, w: int) -> int:
    """Number of tokens of an h x w code grid in the layout above."""
    return 3 + h * (w + 1) + 1


def image_template(vocab: Vocab, h: int, w: int) -> list[int | None]:
    """The layout with a None in each code slot (what image generation forces)."""
    rows: list[int | None] = []
    for _ in range(h):
        rows += [None] * w + [Vocab.NEWLINE]
    return [Vocab.IMAGE_BEGIN, vocab.grid_token(h), vocab.grid_token(w), *rows, Vocab.IMAGE_END]


def codes_to_tokens(codes: np.ndarray | torch.Tensor, vocab: Vocab) -> list[int]:
    """Tokens of an (h, w) int array of VQ codes."""
    c = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
    if c.ndim != 2:
        raise ValueError(f"expected an (h, w) code grid, got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= vocab.codebook_size):
        raise ValueError(f"codes outside 0..{vocab.codebook_size - 1}")
    h, w = c.shape
    tokens = [Vocab.IMAGE_BEGIN, vocab.grid_token(h), vocab.grid_token(w)]
    for row in c + vocab.image_offset:
        tokens += [*row.tolist(), Vocab.NEWLINE]
    tokens.append(Vocab.IMAGE_END)
    return tokens


def tokens_to_codes(tokens: Sequence[int], vocab: Vocab) -> np.ndarray:
    """(h, w) codes of one image's tokens (exactly the layout above); ValueError if malformed."""
    t = [int(x) for x in tokens]
    if len(t) < 4 or t[0] != Vocab.IMAGE_BEGIN:
        raise ValueError("image tokens must start with image_begin, grid(h), grid(w)")
    h, w = vocab.grid_value(t[1]), vocab.grid_value(t[2])
    if len(t) != image_token_count(h, w) or t[-1] != Vocab.IMAGE_END:
        raise ValueError(f"expected {image_token_count(h, w)} tokens ending with image_end")
    body = np.array(t[3:-1], dtype=np.int64).reshape(h, w + 1)
    if not np.all(body[:, -1] == Vocab.NEWLINE):
        raise ValueError("every image row must end with a newline token")
    codes = body[:, :-1] - vocab.image_offset
    if codes.min() < 0 or codes.max() >= vocab.codebook_size:
        raise ValueError("image rows hold non-code tokens")
    return codes
