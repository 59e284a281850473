"""Batched generation with a KV cache, greedy or sampled; action chunks and next images.

Prompts in a batch may differ in length: pad them on the left (`sequence.pad_sequences`), with
`valid` False on padding. Rotary positions skip padding, so a padded sample gets the same logits
as it would alone. A sample that is finished (stop rule met) receives pad tokens marked invalid
until the whole batch is finished.

At every step the mask row of the new token is recomputed from all tokens so far with
`masks.attention_mask` (the function the training forward uses), with ``isolate_from`` fixed
from the prompt, so cached generation reproduces the uncached forward over the same tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.action_tokenizer import ACTION_DIM
from worldvla_bench.integrations.worldvla.image_tokenizer import image_template, tokens_to_codes
from worldvla_bench.integrations.worldvla.masks import attention_mask, isolation_start, position_ids
from worldvla_bench.integrations.worldvla.sequence import WorldVLATokenizer
from worldvla_bench.integrations.worldvla.transformer import KVCache, WorldVLATransformer
from worldvla_bench.integrations.worldvla.vocab import Vocab

#: (new tokens so far (B, n), raw logits (B, V)) -> logits with disallowed tokens at -inf
Constraint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: new tokens so far (B, n) -> finished (B,) bool
StopRule = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen. `temperature` None or 0: greedy (argmax), the default; > 0: sampled
    from softmax(logits / temperature), among the `top_k` most likely tokens if `top_k` is set
    (tokens tied with the k-th are kept too); `seed` (an int) makes the draws reproducible."""

    temperature: float | None = None
    top_k: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_k, self.seed)

    @property
    def greedy(self) -> bool:
        return not self.temperature

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_k": self.top_k, "seed": self.seed}


def check_sampling(temperature: Any, top_k: Any, seed: Any) -> None:
    """Raise a one-line ValueError for a bad temperature (< 0, not a number), top_k (< 1, not an
    int) or seed (not an int); None is fine for temperature and top_k."""
    if temperature is not None and (isinstance(temperature, bool)
                                    or not isinstance(temperature, (int, float))
                                    or not temperature >= 0 or temperature == float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got "
                         f"{temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from JSON-able parts (bytes are hashed first): the same parts give the same
    seed in any process (unlike `hash`), different parts different seeds."""
    items = [hashlib.sha256(p).hexdigest() if isinstance(p, (bytes, bytearray, memoryview))
             else p for p in parts]
    text = json.dumps(items, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def row_generators(sampling: Sampling | None, seeds: Sequence[int] | None,
                   rows: int) -> list[torch.Generator] | None:
    """One CPU generator per row for sampled decoding, seeded by `seeds` (default
    `sampling.seed` for every row); None when decoding is greedy."""
    if sampling is None or sampling.greedy:
        return None
    seeds = [sampling.seed] * rows if seeds is None else list(seeds)
    if len(seeds) != rows:
        raise ValueError(f"one seed per prompt: {len(seeds)} seeds for {rows} prompts")
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def choose_tokens(scores: torch.Tensor, sampling: Sampling | None,
                  generators: Sequence[torch.Generator] | None, rows: torch.Tensor) -> torch.Tensor:
    """Next tokens (B,) from scores (B, V): argmax if greedy, else one draw per row in `rows`
    (bool (B,)) with that row's generator (float64 on CPU, so a row draws the same on any device
    and in any batch); rows not drawn get their argmax."""
    best = scores.argmax(-1)
    if sampling is None or sampling.greedy or generators is None:
        return best
    work = scores.detach().double().cpu() / float(sampling.temperature)  # type: ignore[arg-type]
    if sampling.top_k is not None and sampling.top_k < work.shape[-1]:
        kth = torch.topk(work, sampling.top_k, dim=-1).values[:, -1:]
        work = work.masked_fill(work < kth, float("-inf"))
    probs = torch.softmax(work, -1)
    out = best.clone()
    for i in torch.nonzero(rows.cpu()).flatten().tolist():
        out[i] = int(torch.multinomial(probs[i], 1, generator=generators[i]))
    return out


@dataclass
class GenerationOutput:
    """sequences/valid (B, P + N) include the (left-padded) prompt; new_tokens (B, N);
    logits (B, N, V) float32 are the raw logits each new token was chosen from (if asked)."""

    sequences: torch.Tensor
    valid: torch.Tensor
    new_tokens: torch.Tensor
    new_valid: torch.Tensor
    logits: torch.Tensor | None
    isolate_from: torch.Tensor | None


def forward_sequence(
    model: WorldVLATransformer,
    input_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    action_mask: bool = True,
    isolate_from: torch.Tensor | None = None,
) -> torch.Tensor:
    """The full (training) forward: logits (B, T, V) with the same mask generation uses."""
    if valid is None:
        valid = torch.ones_like(input_ids, dtype=torch.bool)
    mask = attention_mask(input_ids, valid, action_mask=action_mask, isolate_from=isolate_from)
    return model(input_ids, mask, position_ids(valid))


def _step(
    model: WorldVLATransformer,
    ids: torch.Tensor,
    valid: torch.Tensor,
    action_mask: bool,
    isolate_from: torch.Tensor | None,
    cache: KVCache | None,
) -> torch.Tensor:
    """Logits (B, V) of the last position; with a cache only the uncached tokens are run."""
    start = cache.length if cache is not None else 0
    mask = attention_mask(
        ids, valid, action_mask=action_mask, isolate_from=isolate_from, query_start=start
    )
    positions = position_ids(valid)[:, start:]
    return model(ids[:, start:], mask, positions, cache)[:, -1].float()


@torch.no_grad()
def generate(
    model: WorldVLATransformer,
    input_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    max_new_tokens: int,
    action_mask: bool = True,
    constraint: Constraint | None = None,
    stop: StopRule | None = None,
    use_cache: bool = True,
    return_logits: bool = False,
    sampling: Sampling | None = None,
    seeds: Sequence[int] | None = None,
) -> GenerationOutput:
    """Decoding of up to `max_new_tokens` tokens after left-padded prompts (B, P): greedy, or
    sampled as `sampling` says with one generator per row seeded by `seeds` (B ints; default
    `sampling.seed` for every row)."""
    ids = input_ids.to(model.embed.weight.device)
    b, p = ids.shape
    valid = torch.ones_like(ids, dtype=torch.bool) if valid is None else valid.to(ids.device).bool()
    generators = row_generators(sampling, seeds, b)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not bool(valid[:, -1].all()):
        raise ValueError("prompts must be left-padded: the last position of each row must be valid")
    if p + max_new_tokens > model.config.max_seq_len:
        limit = model.config.max_seq_len
        raise ValueError(f"prompt {p} + {max_new_tokens} new tokens exceeds max_seq_len {limit}")
    isolate_from = isolation_start(ids) if action_mask else None
    cache = model.new_cache(b, p + max_new_tokens) if use_cache else None
    finished = torch.zeros(b, dtype=torch.bool, device=ids.device)
    new = ids.new_zeros((b, 0))
    new_valid = valid.new_zeros((b, 0))
    all_logits: list[torch.Tensor] = []
    logits = _step(model, ids, valid, action_mask, isolate_from, cache)
    for step in range(max_new_tokens):
        if return_logits:
            all_logits.append(logits)
        scores = constraint(new, logits) if constraint is not None else logits
        chosen = choose_tokens(scores, sampling, generators, ~finished).to(ids.device)
        token = torch.where(finished, torch.full_like(finished, Vocab.PAD, dtype=torch.long),
                            chosen)
        new = torch.cat([new, token[:, None]], 1)
        new_valid = torch.cat([new_valid, ~finished[:, None]], 1)
        ids = torch.cat([ids, token[:, None]], 1)
        valid = torch.cat([valid, ~finished[:, None]], 1)
        if stop is not None:
            finished = finished | stop(new)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        logits = _step(model, ids, valid, action_mask, isolate_from, cache)
    return GenerationOutput(
        sequences=ids,
        valid=valid,
        new_tokens=new,
        new_valid=new_valid,
        logits=torch.stack(all_logits, 1) if return_logits else None,
        isolate_from=isolate_from,
    )


def greedy_generate(
    model: WorldVLATransformer,
    input_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
    **kwargs: Any,
) -> GenerationOutput:
    """`generate` with greedy decoding (argmax at every step)."""
    return generate(model, input_ids, valid, sampling=None, **kwargs)


def action_stop(num_blocks: int | None) -> StopRule:
    """Finished at end of turn, or after `num_blocks` action blocks (eoa tokens) if given."""

    def stop(new: torch.Tensor) -> torch.Tensor:
        done = (new == Vocab.EOT).any(1)
        if num_blocks is not None:
            done = done | ((new == Vocab.EOA).sum(1) >= num_blocks)
        return done

    return stop


def action_constraint(vocab: Vocab, num_blocks: int | None = None) -> Constraint:
    """Only well-formed answers: blocks (boa, 7 values, eoa), then eot.

    End of turn is allowed after at least one block, or after `num_blocks` blocks if given.
    """
    min_blocks = 1 if num_blocks is None else num_blocks
    values = torch.zeros(vocab.size, dtype=torch.bool)
    values[vocab.action_offset : vocab.action_offset + vocab.n_action_bins] = True

    def allowed_next(tokens: list[int]) -> torch.Tensor:
        n_values, in_block, n_blocks = 0, False, 0
        for t in tokens:
            if t == Vocab.BOA:
                in_block, n_values = True, 0
            elif t == Vocab.EOA:
                in_block, n_blocks = False, n_blocks + 1
            elif in_block:
                n_values += 1
        allowed = torch.zeros(vocab.size, dtype=torch.bool)
        if not in_block:
            allowed[Vocab.BOA] = True
            allowed[Vocab.EOT] = n_blocks >= min_blocks
        elif n_values < ACTION_DIM:
            allowed |= values
        else:
            allowed[Vocab.EOA] = True
        return allowed

    def constrain(new: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        allowed = torch.stack([allowed_next(row) for row in new.tolist()]).to(logits.device)
        return logits.masked_fill(~allowed, float("-inf"))

    return constrain


@dataclass
class ActionGeneration:
    """actions[i]: (K_i, 7) float64 chunk of sample i (its well-formed blocks, env units)."""

    actions: list[np.ndarray]
    tokens: list[list[int]]
    output: GenerationOutput


def generate_actions(
    model: WorldVLATransformer,
    tokenizer: WorldVLATokenizer,
    input_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    num_blocks: int | None = None,
    max_new_tokens: int = 300,
    constrained: bool = False,
    use_cache: bool = True,
    return_logits: bool = False,
    sampling: Sampling | None = None,
    seeds: Sequence[int] | None = None,
) -> ActionGeneration:
    """Action chunks for left-padded action prompts, with WorldVLA's action mask.

    Stops a sample at end of turn, after `num_blocks` blocks (None: until end of turn, as
    WorldVLA's eval), or at `max_new_tokens`. ``constrained=True`` restricts decoding to
    well-formed blocks (WorldVLA decodes unconstrained, the default). Greedy unless
    `sampling` (with `seeds`) says otherwise (`generate`).
    """
    out = generate(
        model,
        input_ids,
        valid,
        max_new_tokens=max_new_tokens,
        action_mask=True,
        constraint=action_constraint(tokenizer.vocab, num_blocks) if constrained else None,
        stop=action_stop(num_blocks),
        use_cache=use_cache,
        return_logits=return_logits,
        sampling=sampling,
        seeds=seeds,
    )
    tokens = [row[ok].tolist() for row, ok in zip(out.new_tokens, out.new_valid, strict=True)]
    actions = []
    for toks in tokens:
        chunk = tokenizer.actions.decode(toks)
        actions.append(chunk[:num_blocks] if num_blocks is not None else chunk)
    return ActionGeneration(actions, tokens, out)


def image_constraint(vocab: Vocab, h: int, w: int) -> Constraint:
    """Forces the image layout tokens; code slots may take any image code."""
    template = image_template(vocab, h, w)
    codes = torch.zeros(vocab.size, dtype=torch.bool)
    codes[vocab.image_offset : vocab.image_offset + vocab.codebook_size] = True

    def constrain(new: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        slot = template[new.shape[1]]
        if slot is None:
            allowed = codes.to(logits.device)
        else:
            allowed = torch.zeros(vocab.size, dtype=torch.bool, device=logits.device)
            allowed[slot] = True
        return logits.masked_fill(~allowed, float("-inf"))

    return constrain


@dataclass
class ImageGeneration:
    """codes: (B, h, w) int64 VQ codes of the generated images."""

    codes: torch.Tensor
    output: GenerationOutput


def generate_image(
    model: WorldVLATransformer,
    tokenizer: WorldVLATokenizer,
    input_ids: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    grid: tuple[int, int],
    use_cache: bool = True,
    return_logits: bool = False,
    sampling: Sampling | None = None,
    seeds: Sequence[int] | None = None,
) -> ImageGeneration:
    """Next-image codes (h, w) = `grid` for left-padded world-model prompts.

    Layout tokens (begin, grid, newlines, end) are forced; each code slot takes the most likely
    image code (greedy), or a sampled one under `sampling` (with `seeds`, see `generate`).
    World-model samples use the plain causal mask.
    """
    h, w = grid
    n = len(image_template(tokenizer.vocab, h, w))
    out = generate(
        model,
        input_ids,
        valid,
        max_new_tokens=n,
        action_mask=False,
        constraint=image_constraint(tokenizer.vocab, h, w),
        use_cache=use_cache,
        return_logits=return_logits,
        sampling=sampling,
        seeds=seeds,
    )
    codes = [tokens_to_codes(row.tolist(), tokenizer.vocab) for row in out.new_tokens]
    return ImageGeneration(torch.as_tensor(np.stack(codes)), out)
