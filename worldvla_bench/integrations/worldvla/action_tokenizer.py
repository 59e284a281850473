"""Action tokens as in WorldVLA: fixed global bounds, 256 edges in [-1, 1], 255 bins.

A 7-d action (xyz delta, rotation delta, gripper; env units) is normalised with
``(a - min) / (max - min) * 2 - 1``, clipped to [-1, 1], binned against
``edges = linspace(-1, 1, 256)`` (bin b covers [edges[b], edges[b+1]); 1.0 falls in the last
bin), decoded to the bin centre and un-normalised. A decoded action re-encodes to the same tokens,
and the decoding error is at most half a bin width (1/255 in normalised units) after clipping.
One action is written as ``boa, v_0, ..., v_6, eoa`` with ``v_i = vocab.action_offset + bin``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worldvla_bench.integrations.worldvla.vocab import Vocab

ACTION_DIM = 7
ACTION_MIN = np.array([-0.9375, -0.9375, -0.9375, -0.3257, -0.375, -0.375, -1.0])
ACTION_MAX = np.array([0.9375, 0.9375, 0.9375, 0.375, 0.375, 0.375, 1.0])
N_EDGES = 256
BLOCK_LEN = ACTION_DIM + 2


class ActionTokenizer:
    """Encode (K, 7) action chunks to token blocks and decode them back to bin centres."""

    def __init__(
        self,
        vocab: Vocab,
        low: Sequence[float] | np.ndarray | None = None,
        high: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.vocab = vocab
        self.low = np.asarray(ACTION_MIN if low is None else low, dtype=np.float64)
        self.high = np.asarray(ACTION_MAX if high is None else high, dtype=np.float64)
        if self.low.shape != (ACTION_DIM,) or self.high.shape != (ACTION_DIM,):
            raise ValueError("action bounds must have 7 entries")
        if not np.all(self.high > self.low):
            raise ValueError("action bounds need max > min in every dimension")
        self.edges = np.linspace(-1.0, 1.0, N_EDGES)
        self.centres = (self.edges[:-1] + self.edges[1:]) / 2.0
        self.n_bins = N_EDGES - 1
        if vocab.n_action_bins != self.n_bins:
            raise ValueError(f"vocab has {vocab.n_action_bins} action tokens, need {self.n_bins}")
        #: bin width in normalised units ([-1, 1] scale)
        self.bin_width = 2.0 / self.n_bins

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Env units -> [-1, 1], clipped."""
        a = np.asarray(actions, dtype=np.float64)
        return np.clip((a - self.low) / (self.high - self.low) * 2.0 - 1.0, -1.0, 1.0)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        """[-1, 1] -> env units."""
        return (np.asarray(x, dtype=np.float64) + 1.0) / 2.0 * (self.high - self.low) + self.low

    def to_bins(self, actions: np.ndarray) -> np.ndarray:
        """Bin index in 0..254 of each entry of `actions` (..., 7)."""
        x = self.normalize(actions)
        return np.clip(np.digitize(x, self.edges) - 1, 0, self.n_bins - 1).astype(np.int64)

    def from_bins(self, bins: np.ndarray) -> np.ndarray:
        """Actions (env units) at the centres of `bins` (..., 7)."""
        return self.unnormalize(self.centres[np.asarray(bins, dtype=np.int64)])

    def encode(self, actions: np.ndarray) -> list[int]:
        """Token blocks of a (7,) action or a (K, 7) chunk: K * (boa, 7 values, eoa)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != ACTION_DIM:
            raise ValueError(f"expected actions of shape (K, 7), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions must be finite")
        tokens: list[int] = []
        for row in self.to_bins(a):
            tokens += [Vocab.BOA, *(self.vocab.action_offset + row).tolist(), Vocab.EOA]
        return tokens

    def block_bins(self, tokens: Sequence[int]) -> list[list[int]]:
        """Bins of every well-formed block (boa, 7 value tokens, eoa) in `tokens`, in order.

        Anything else (text, end of turn, truncated or malformed blocks) is skipped.
        """
        toks = [int(t) for t in tokens]
        off, n = self.vocab.action_offset, self.n_bins
        blocks: list[list[int]] = []
        i = 0
        while i < len(toks):
            if toks[i] == Vocab.BOA and i + BLOCK_LEN <= len(toks):
                body = toks[i + 1 : i + 1 + ACTION_DIM]
                if toks[i + BLOCK_LEN - 1] == Vocab.EOA and all(0 <= t - off < n for t in body):
                    blocks.append([t - off for t in body])
                    i += BLOCK_LEN
                    continue
            i += 1
        return blocks

    def decode(self, tokens: Sequence[int]) -> np.ndarray:
        """(K, 7) float64 actions of the well-formed blocks in `tokens` (K may be 0)."""
        bins = self.block_bins(tokens)
        if not bins:
            return np.zeros((0, ACTION_DIM))
        return self.from_bins(np.array(bins))
