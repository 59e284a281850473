"""Attention masks: causal, key padding, and WorldVLA's action mask (`generate_att_mask_3`).

An *action block* runs from a boa token to its eoa token, both included; a block whose eoa has
not come yet (during generation) runs to the end of the sequence. A block is *isolated* when it
starts at or after ``isolate_from``, by default the position just after the last closed image
(0 without images; never while the last image is still open). Queries inside an isolated block
attend to everything causally allowed except the tokens of any *other* action block -- so an
action block after the last image sees the prompt (text and images) and the earlier tokens of its
own block, never earlier action blocks. Samples whose action precedes their last image (the
world-model samples) are therefore plain causal.

Every rule reads only tokens at or before the query, so one mask row never changes when tokens
are appended: cached generation recomputes the row of each new token with the same function and
gets exactly the rows of the full (training) mask. Generation fixes ``isolate_from`` from the
prompt; the reference recomputes the last image over prompt + answer, which differs only if an
answer of the action model contains an image (then the reference rewrites earlier rows, which no
KV cache can follow).

Boolean masks: True = may attend. Shape (B, Tq, Tk) for queries ``query_start..T-1``.
Padded positions (``valid`` False) are never attended to; a padded query attends to itself only,
so no softmax row is empty.
"""

from __future__ import annotations

import torch

from worldvla_bench.integrations.worldvla.vocab import Vocab


def position_ids(valid: torch.Tensor) -> torch.Tensor:
    """Rotary positions (B, T): index among the sample's real tokens (padding is skipped)."""
    return (valid.long().cumsum(1) - 1).clamp(min=0)


def isolation_start(input_ids: torch.Tensor) -> torch.Tensor:
    """(B,) first position whose action blocks are isolated: just after the last closed image.

    0 if a sample has no image; T if its last image is still open (begin without end).
    """
    b, t = input_ids.shape
    idx = torch.arange(t, device=input_ids.device).expand(b, t)
    none = torch.full_like(idx, -1)
    last_end = torch.where(input_ids == Vocab.IMAGE_END, idx, none).max(1).values
    last_begin = torch.where(input_ids == Vocab.IMAGE_BEGIN, idx, none).max(1).values
    start = last_end + 1  # 0 when there is no image end
    return torch.where(last_begin > last_end, torch.full_like(start, t), start)


def action_block_ids(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) position of the boa of the action block holding each token, -1 outside blocks."""
    b, t = input_ids.shape
    idx = torch.arange(t, device=input_ids.device).expand(b, t)
    none = torch.full_like(idx, -1)
    last_boa = torch.where(input_ids == Vocab.BOA, idx, none).cummax(1).values
    last_eoa = torch.where(input_ids == Vocab.EOA, idx, none).cummax(1).values
    eoa_before = torch.cat([none[:, :1], last_eoa[:, :-1]], dim=1)  # last eoa strictly before
    inside = (last_boa >= 0) & (last_boa > eoa_before)
    return torch.where(inside, last_boa, none)


def attention_mask(
    input_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    action_mask: bool = True,
    isolate_from: torch.Tensor | None = None,
    query_start: int = 0,
) -> torch.Tensor:
    """Boolean mask (B, T - query_start, T) for queries ``query_start..T-1`` over keys ``0..T-1``.

    `valid` (B, T) marks real tokens (default all). With ``action_mask=False`` the mask is plain
    causal (plus padding); otherwise WorldVLA's action mask with `isolate_from` (B,) defaulting to
    `isolation_start(input_ids)`.
    """
    b, t = input_ids.shape
    device = input_ids.device
    q = torch.arange(query_start, t, device=device)
    k = torch.arange(t, device=device)
    mask = (k[None, :] <= q[:, None]).expand(b, -1, -1)
    if valid is not None:
        mask = mask & valid.bool()[:, None, :]
    if action_mask:
        if isolate_from is None:
            isolate_from = isolation_start(input_ids)
        block = action_block_ids(input_ids)
        q_block = block[:, query_start:]
        isolated = (q_block >= 0) & (q_block >= isolate_from.to(device)[:, None])
        other_block = (block[:, None, :] >= 0) & (block[:, None, :] != q_block[:, :, None])
        mask = mask & ~(isolated[:, :, None] & other_block)
    return mask | (k[None, :] == q[:, None])[None]
