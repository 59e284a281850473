"""Action tokens as in WorldVLA: fixed global bounds, 256 edges in [-1, 1], 255 bins.

One `ActionTokenizer` serves both vocabularies; what differs is an `ActionLayout`:

- `tiny_layout(vocab)`: our tiny model's own ids (``Vocab.BOA``, 7 x ``vocab.action_offset +
  bin``, ``Vocab.EOA``), bins clipped to 0..254 at encoding, only well-formed 9-token blocks
  decoded, normalisation without WorldVLA's ``+ 1e-8`` (the convention the tiny checkpoints
  were trained with).
- `RELEASED_LAYOUT`: the released checkpoints' ids, exactly as the official code writes and
  reads them (``<reserved10000>`` = 10004 opens a block, ``<reserved15000>`` = 15004 closes
  it, value id = 10004 + 1 + digitize, read back as bin ``clamp(id - 10004 - 2, 0, 254)``;
  every begin..end pair is a block, whatever its length; see `decode_blocks`).

A 7-d action (xyz delta, rotation delta, gripper; env units) is normalised with
``2 * (a - min) / (max - min + eps) - 1``, clipped to [-1, 1], binned against
``edges = linspace(-1, 1, 256)`` (bin b covers [edges[b], edges[b+1])), decoded to the bin
centre and un-normalised with ``(x + 1) / 2 * (max - min + eps) + min``. A decoded action
re-encodes to the same tokens; the decoding error is at most half a bin (1/255 in normalised
units) after clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worldvla_bench.integrations.worldvla.vocab import Vocab

ACTION_DIM = 7
# worldvla/data/item_processor.py FlexARItemProcessor_Action.norm_action (min_values) and
# worldvla/eval_solver_libero_256.py Solver.unnorm_min_max (the same constants)
ACTION_MIN = np.array([-0.9375, -0.9375, -0.9375, -0.32571429, -0.375, -0.375, -1.0])
# same two functions (max_values)
ACTION_MAX = np.array([0.9375, 0.9375, 0.9375, 0.375, 0.375, 0.375, 1.0])
# item_processor.py FlexARItemProcessor_Action.__init__: n_bins = 256, bins = linspace(-1, 1, 256)
N_EDGES = 256
N_BINS = N_EDGES - 1
BLOCK_LEN = ACTION_DIM + 2
# item_processor.py norm_action and eval_solver_libero_256.py unnorm_min_max: max - min + 1e-8
RELEASED_NORM_EPS = 1e-8
# item_processor.py FlexARItemProcessor_Action.action_start_token "<reserved10000>"; the id is
# hard-coded in model/modeling_xllmx_chameleon_ck.py generate_dis_ma and
# decode_token_ids_to_actions (10004)
RELEASED_ACTION_BEGIN = 10004
# item_processor.py action_end_token "<reserved15000>"; generate_dis_ma (15004)
RELEASED_ACTION_END = 15004
# modeling_xllmx_chameleon_ck.py decode_token_ids_to_actions: bin = id - 1 - 10004 - 1, i.e. the
# id of bin 0 is 10004 + 2; item_processor.py process_action writes digitize + 10004 + 1
# (digitize = bin + 1), the same offset
RELEASED_FIRST_VALUE = RELEASED_ACTION_BEGIN + 2

BLOCK_RULES = ("strict", "official")


@dataclass(frozen=True)
class ActionLayout:
    """How action values are written as token ids and read back.

    `first_value` is the id of bin 0 (bin b <-> ``first_value + b``). `clip_bins`: bins are
    clipped to 0..254 at encoding (else a value normalised to exactly 1.0, which only an
    out-of-range action reaches, gets bin 255, as the official ``digitize`` gives).
    `blocks` is the decoding rule: 'strict' keeps only (begin, 7 value ids, end) blocks;
    'official' is `decode_blocks`'s. `norm_eps` is added to ``max - min`` in both directions.
    """

    name: str
    begin: int
    end: int
    first_value: int
    clip_bins: bool
    blocks: str
    norm_eps: float

    def __post_init__(self) -> None:
        if self.blocks not in BLOCK_RULES:
            raise ValueError(f"blocks must be one of {BLOCK_RULES}, got {self.blocks!r}")

    def is_value(self, token: int) -> bool:
        return 0 <= int(token) - self.first_value < N_BINS


#: The released checkpoints' ids and rules (module docstring; each constant cites its source).
RELEASED_LAYOUT = ActionLayout(
    name="released",
    begin=RELEASED_ACTION_BEGIN,
    end=RELEASED_ACTION_END,
    first_value=RELEASED_FIRST_VALUE,
    clip_bins=False,  # item_processor.py process_action: digitize(norm) with no clipping
    blocks="official",  # modeling_xllmx_chameleon_ck.py generate_dis_ma
    norm_eps=RELEASED_NORM_EPS,
)


def tiny_layout(vocab: Vocab) -> ActionLayout:
    """Our tiny model's own layout over `vocab` (module docstring)."""
    if vocab.n_action_bins != N_BINS:
        raise ValueError(f"vocab has {vocab.n_action_bins} action tokens, need {N_BINS}")
    return ActionLayout(name="tiny", begin=Vocab.BOA, end=Vocab.EOA,
                        first_value=vocab.action_offset, clip_bins=True, blocks="strict",
                        norm_eps=0.0)


class ActionTokenizer:
    """Encode (K, 7) action chunks to token blocks and decode them back to bin centres.

    `layout` is a `Vocab` (our tiny model: `tiny_layout(vocab)`) or an `ActionLayout`.
    """

    def __init__(
        self,
        layout: Vocab | ActionLayout,
        low: Sequence[float] | np.ndarray | None = None,
        high: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.vocab = layout if isinstance(layout, Vocab) else None
        self.layout = tiny_layout(layout) if isinstance(layout, Vocab) else layout
        self.low = np.asarray(ACTION_MIN if low is None else low, dtype=np.float64)
        self.high = np.asarray(ACTION_MAX if high is None else high, dtype=np.float64)
        if self.low.shape != (ACTION_DIM,) or self.high.shape != (ACTION_DIM,):
            raise ValueError("action bounds must have 7 entries")
        if not np.all(self.high > self.low):
            raise ValueError("action bounds need max > min in every dimension")
        # item_processor.py FlexARItemProcessor_Action.__init__: bins, bin_centers
        self.edges = np.linspace(-1.0, 1.0, N_EDGES)
        self.centres = (self.edges[:-1] + self.edges[1:]) / 2.0
        self.n_bins = N_BINS
        #: bin width in normalised units ([-1, 1] scale)
        self.bin_width = 2.0 / self.n_bins
        self.span = self.high - self.low + self.layout.norm_eps

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Env units -> [-1, 1], clipped (item_processor.py norm_action)."""
        a = np.asarray(actions, dtype=np.float64)
        return np.clip(2.0 * (a - self.low) / self.span - 1.0, -1.0, 1.0)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        """[-1, 1] -> env units (eval_solver_libero_256.py unnorm_min_max)."""
        return (np.asarray(x, dtype=np.float64) + 1.0) / 2.0 * self.span + self.low

    def _digitize_bins(self, actions: np.ndarray) -> np.ndarray:
        bins = np.digitize(self.normalize(actions), self.edges) - 1
        return np.clip(bins, 0, self.n_bins - 1) if self.layout.clip_bins else bins

    def to_bins(self, actions: np.ndarray) -> np.ndarray:
        """Bin index in 0..254 of each entry of `actions` (..., 7)."""
        return np.clip(self._digitize_bins(actions), 0, self.n_bins - 1).astype(np.int64)

    def from_bins(self, bins: np.ndarray) -> np.ndarray:
        """Actions (env units) at the centres of `bins` (..., 7)."""
        return self.unnormalize(self.centres[np.asarray(bins, dtype=np.int64)])

    def value_ids(self, actions: np.ndarray) -> np.ndarray:
        """Value token ids (..., 7) of `actions` (process_action for the released layout)."""
        return (self.layout.first_value + self._digitize_bins(actions)).astype(np.int64)

    def id_bins(self, ids: np.ndarray) -> np.ndarray:
        """Bins of value ids, out-of-range ids clamped to 0..254 (decode_token_ids_to_actions)."""
        return np.clip(np.asarray(ids, dtype=np.int64) - self.layout.first_value, 0,
                       self.n_bins - 1)

    def encode(self, actions: np.ndarray) -> list[int]:
        """Token blocks of a (7,) action or a (K, 7) chunk: K * (begin, 7 values, end)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != ACTION_DIM:
            raise ValueError(f"expected actions of shape (K, 7), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions must be finite")
        tokens: list[int] = []
        for row in self.value_ids(a):
            tokens += [self.layout.begin, *row.tolist(), self.layout.end]
        return tokens

    def block_bins(self, tokens: Sequence[int]) -> list[list[int]]:
        """Bins of every well-formed block (begin, 7 value tokens, end) in `tokens`, in order.

        Anything else (text, end of turn, truncated or malformed blocks) is skipped.
        """
        toks = [int(t) for t in tokens]
        begin, end, first = self.layout.begin, self.layout.end, self.layout.first_value
        blocks: list[list[int]] = []
        i = 0
        while i < len(toks):
            if toks[i] == begin and i + BLOCK_LEN <= len(toks):
                body = toks[i + 1 : i + 1 + ACTION_DIM]
                if toks[i + BLOCK_LEN - 1] == end and all(self.layout.is_value(t) for t in body):
                    blocks.append([t - first for t in body])
                    i += BLOCK_LEN
                    continue
            i += 1
        return blocks

    def decode_blocks(self, tokens: Sequence[int]) -> list[np.ndarray]:
        """Normalised values of every block, as the official decoder cuts them.

        modeling_xllmx_chameleon_ck.py generate_dis_ma: a begin id opens a block (a second
        begin restarts it), an end id closes the open block and emits every token in between
        (any id, its bin clamped to 0..254, the bin centre taken; so a block may hold 0, 1, 7
        or any number of values); an end id without an open block is skipped (the official loop
        raises if that comes before any begin: `decode_chunk` reports it) and a block still
        open when the tokens end is dropped. The 'strict' rule emits only well-formed 7-value
        blocks.
        """
        if self.layout.blocks == "strict":
            return [self.centres[np.array(b, dtype=np.int64)] for b in self.block_bins(tokens)]
        return [self.centres[self.id_bins(np.array(span, dtype=np.int64))]
                for span in self._spans([int(t) for t in tokens])]

    def block_action(self, values: np.ndarray) -> np.ndarray | None:
        """One block's normalised values -> a (7,) action in env units, or None if the
        official eval could not execute it.

        eval_solver_libero_256.py unnorm_min_max: more than 7 values are cut to the first 7;
        1 value broadcasts to all 7 dimensions (numpy); 0 or 2..6 values raise a broadcasting
        error, which val_libero catches and ends the episode with.
        """
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(v) > ACTION_DIM:
            v = v[:ACTION_DIM]
        if len(v) not in (1, ACTION_DIM):
            return None
        return self.unnormalize(np.broadcast_to(v, (ACTION_DIM,)))

    def decode_chunk(self, tokens: Sequence[int]) -> tuple[np.ndarray, str | None]:
        """(K, 7) actions of the executable blocks before the first one that is not, and the
        reason the official eval would end the episode after them (None: it goes on).

        The official eval executes its queue of blocks in order and ends the episode (a caught
        exception in eval_solver_libero_256.py val_libero, recorded as a failure) at a block it
        cannot execute (`block_action`), or at once when there is no block (it pops an empty
        list) or an end id comes before any begin id (modeling_xllmx_chameleon_ck.py
        generate_dis_ma reads `start_index` before it is assigned). The 'strict' layout applies
        the same rule with its own blocks: a begin..end span that is not 7 value ids cannot
        be executed.
        """
        toks = [int(t) for t in tokens]
        empty = np.zeros((0, ACTION_DIM))
        begin, end = self.layout.begin, self.layout.end
        if end in toks and (begin not in toks or toks.index(end) < toks.index(begin)):
            return empty, "an end-of-action token before any begin"
        actions: list[np.ndarray] = []
        spans = self._spans(toks)
        for number, span in enumerate(spans, 1):
            action = self._span_action(span)
            if action is None:
                what = (f"{len(span)} values" if self.layout.blocks == "official"
                        else f"{len(span)} tokens, not 7 action values")
                return np.array(actions).reshape(-1, ACTION_DIM), (
                    f"action block {number} holds {what}")
            actions.append(action)
        if not spans:
            return empty, "no action block in the answer"
        return np.array(actions).reshape(-1, ACTION_DIM), None

    def missing_block_cause(self, tokens: Sequence[int]) -> str:
        """Why an answer holds no well-formed block, in one of four words-only categories (so
        that reports can count them): an end before any begin, blocks that are not 7 values, a
        block begun and never ended (the token budget ran out first), or no block begun."""
        toks = [int(t) for t in tokens]
        begin, end = self.layout.begin, self.layout.end
        if end in toks and (begin not in toks or toks.index(end) < toks.index(begin)):
            return "an end-of-action token before any begin"
        if self._spans(toks):
            return "no block of exactly 7 action values"
        if begin in toks:
            return "a block begun and never ended"
        return "no block begun"

    def _spans(self, toks: list[int]) -> list[list[int]]:
        """The ids between each begin and the end that closes it, cut as generate_dis_ma
        does (a second begin restarts the block; an end without an open block is skipped; a
        block still open at the end is dropped)."""
        out: list[list[int]] = []
        start: int | None = None
        for i, t in enumerate(toks):
            if t == self.layout.begin:
                start = i
            elif t == self.layout.end:
                if start is not None:
                    out.append(toks[start + 1 : i])
                start = None
        return out

    def _span_action(self, span: list[int]) -> np.ndarray | None:
        if self.layout.blocks == "official":
            return self.block_action(self.centres[self.id_bins(np.array(span, dtype=np.int64))])
        if len(span) != ACTION_DIM or not all(self.layout.is_value(t) for t in span):
            return None
        return self.from_bins(np.array(span) - self.layout.first_value)

    def decode(self, tokens: Sequence[int]) -> np.ndarray:
        """(K, 7) float64 actions of the decodable blocks in `tokens` (K may be 0).

        'strict': the well-formed blocks; 'official': `decode_chunk`'s executable prefix.
        """
        if self.layout.blocks == "official":
            return self.decode_chunk(tokens)[0]
        bins = self.block_bins(tokens)
        if not bins:
            return np.zeros((0, ACTION_DIM))
        return self.from_bins(np.array(bins))
