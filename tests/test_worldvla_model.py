"""Tests of the WorldVLA integration's model (`worldvla_bench.integrations.worldvla`): tokenizers,
the image layout, the VQ-VAE, WorldVLA's action attention mask, cached batched generation and the
training loss.

Models are the `tiny` preset (random weights) on 64x64 images; torch runs on one thread here
(two threads on two busy shared cores are many times slower).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worldvla_bench.integrations.worldvla import (
    ACTION_MAX,
    ACTION_MIN,
    ACTION_PROMPT,
    VQVAE,
    WORLD_PROMPT,
    ActionTokenizer,
    TransformerConfig,
    Vocab,
    VQConfig,
    WorldVLA,
    WorldVLAConfig,
    WorldVLATokenizer,
    WorldVLATransformer,
    attention_mask,
    class_weights,
    codes_to_tokens,
    collate,
    forward_sequence,
    generate_actions,
    generate_image,
    greedy_generate,
    image_token_count,
    images_to_tensor,
    isolation_start,
    lm_loss,
    pad_sequences,
    preset,
    tensor_to_images,
    tokens_to_codes,
)
from worldvla_bench.integrations.worldvla.generation import action_constraint

VOCAB = Vocab(codebook_size=512)
ACT = ActionTokenizer(VOCAB)
TOK = WorldVLATokenizer(VOCAB)
SPAN = ACTION_MAX - ACTION_MIN
ATOL = 1e-4  # cached vs uncached float32 logits


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> WorldVLATransformer:
    """Tiny preset transformer; a larger init std makes cross-token effects easy to see."""
    torch.manual_seed(0)
    config = preset("tiny", transformer={"init_std": 0.1})
    assert Vocab(config.vq.codebook_size, config.max_grid) == VOCAB
    return WorldVLATransformer(config.transformer, VOCAB.size).eval()


def _codes(rng: np.random.Generator, h: int = 4, w: int = 4) -> np.ndarray:
    return rng.integers(0, VOCAB.codebook_size, (h, w))


def _action_prompt(rng: np.random.Generator, instruction: str = "pick up the bowl") -> list[int]:
    return TOK.action_prompt(instruction, _codes(rng), _codes(rng))


# --- action tokenizer ---------------------------------------------------------------------------


def test_action_round_trip_is_exact_to_the_bin() -> None:
    rng = np.random.default_rng(0)
    actions = rng.uniform(ACTION_MIN - 0.3 * SPAN, ACTION_MAX + 0.3 * SPAN, size=(4000, 7))
    tokens = ACT.encode(actions)
    decoded = ACT.decode(tokens)
    assert decoded.shape == actions.shape
    assert ACT.encode(decoded) == tokens  # a decoded action re-encodes to the same tokens
    np.testing.assert_array_equal(ACT.to_bins(decoded), ACT.to_bins(actions))
    half_bin = ACT.bin_width / 2 * SPAN / 2  # env units
    error = np.abs(decoded - np.clip(actions, ACTION_MIN, ACTION_MAX))
    assert np.all(error <= half_bin * (1 + 1e-9))
    # every bin centre maps back to its own bin, in every dimension
    bins = np.repeat(np.arange(255)[:, None], 7, axis=1)
    np.testing.assert_array_equal(ACT.to_bins(ACT.from_bins(bins)), bins)


def test_action_bounds_clipping_and_gripper() -> None:
    assert np.all(ACT.to_bins(ACTION_MIN) == 0) and np.all(ACT.to_bins(ACTION_MAX) == 254)
    assert np.all(ACT.to_bins(ACTION_MIN - 5.0) == 0) and np.all(ACT.to_bins(ACTION_MAX + 5) == 254)
    top = ACT.decode(ACT.encode(ACTION_MAX + 1.0))[0]
    np.testing.assert_allclose(top, ACTION_MAX - ACT.bin_width / 2 * SPAN / 2)
    # the gripper goes to the env as the bin centre, +-(1 - 1/255) ~ +-0.996
    gripper = ACT.decode(ACT.encode(np.array([[0, 0, 0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0, 0, -1.0]])))
    np.testing.assert_allclose(gripper[:, 6], [1 - 1 / 255, -1 + 1 / 255])
    # 0 is a bin centre where the bounds are symmetric (all but dimension 3)
    zero = ACT.decode(ACT.encode(np.zeros(7)))[0]
    np.testing.assert_allclose(np.delete(zero, 3), 0.0, atol=1e-12)
    with pytest.raises(ValueError):
        ACT.encode(np.full(7, np.nan))


def test_action_token_layout() -> None:
    chunk = np.random.default_rng(1).uniform(ACTION_MIN, ACTION_MAX, (3, 7))
    tokens = ACT.encode(chunk)
    assert len(tokens) == 27
    assert tokens[0::9] == [Vocab.BOA] * 3 and tokens[8::9] == [Vocab.EOA] * 3
    values = [t for i, t in enumerate(tokens) if i % 9 not in (0, 8)]
    assert all(t in VOCAB.action_ids for t in values)
    assert values == [VOCAB.action_offset + b for b in ACT.to_bins(chunk).ravel()]
    # decoding keeps well-formed blocks only
    junk = [Vocab.EOT, *tokens[:9], Vocab.BOA, values[0], Vocab.EOA, *tokens[9:18], Vocab.BOA]
    np.testing.assert_array_equal(ACT.decode(junk), ACT.decode(tokens[:18]))
    assert ACT.decode([Vocab.EOT]).shape == (0, 7)
    # the id ranges of the vocabulary are disjoint and in order
    assert Vocab.N_SPECIAL <= VOCAB.grid_offset < VOCAB.text_offset < VOCAB.action_offset
    assert VOCAB.action_offset + 255 == VOCAB.image_offset
    assert VOCAB.size == VOCAB.image_offset + 512


# --- image layout and VQ ------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w", "codebook"), [(16, 16, 8192), (4, 4, 512), (3, 5, 512)])
def test_image_token_layout(h: int, w: int, codebook: int) -> None:
    vocab = Vocab(codebook)
    codes = np.random.default_rng(h).integers(0, codebook, (h, w))
    tokens = codes_to_tokens(codes, vocab)
    assert len(tokens) == image_token_count(h, w) == 3 + h * (w + 1) + 1
    if (h, w) == (16, 16):
        assert len(tokens) == 276
    if (h, w) == (4, 4):
        assert len(tokens) == 24
    assert tokens[:3] == [Vocab.IMAGE_BEGIN, vocab.grid_token(h), vocab.grid_token(w)]
    assert tokens[-1] == Vocab.IMAGE_END and tokens.count(Vocab.IMAGE_END) == 1
    newlines = [i for i, t in enumerate(tokens) if t == Vocab.NEWLINE]
    assert newlines == [3 + r * (w + 1) + w for r in range(h)]
    in_order = [t - vocab.image_offset for t in tokens if t in vocab.image_ids]
    assert in_order == codes.ravel().tolist()
    np.testing.assert_array_equal(tokens_to_codes(tokens, vocab), codes)
    broken = list(tokens)
    broken[newlines[0]] = vocab.image_offset
    with pytest.raises(ValueError):
        tokens_to_codes(broken, vocab)


def test_vq_shapes_and_straight_through() -> None:
    torch.manual_seed(0)
    vq = VQVAE(preset("tiny").vq)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = images_to_tensor(images)
    assert x.shape == (2, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(tensor_to_images(x), images)
    codes = vq.encode(x)
    assert codes.shape == (2, 8, 8) and codes.dtype == torch.long
    assert vq.decode(codes).shape == (2, 3, 64, 64)
    out = vq(x)
    torch.testing.assert_close(out.codes, codes)
    # the reconstruction gradient reaches the encoder through the straight-through estimator;
    # the codebook learns from its own loss term
    (encoder_grad,) = torch.autograd.grad(out.recon_loss, vq.encoder[0].weight, retain_graph=True)
    assert encoder_grad.abs().sum() > 0
    (codebook_grad,) = torch.autograd.grad(out.codebook_loss, vq.quantizer.codebook.weight)
    assert codebook_grad.abs().sum() > 0
    assert out.commitment_loss > 0 and out.codebook_loss > 0
    # the WorldVLA layout: 256x256 at 16x -> 16x16 codes (narrow channels keep this cheap)
    big = VQVAE(VQConfig(image_size=256, codebook_size=8192, embed_dim=8, channels=(4, 4, 8, 8)))
    with torch.no_grad():
        codes = big.encode(torch.zeros(1, 3, 256, 256))
        assert codes.shape == (1, 16, 16)
        assert big.decode(codes).shape == (1, 3, 256, 256)
    assert len(codes_to_tokens(codes[0], Vocab(8192))) == 276


# --- prompts and masks --------------------------------------------------------------------------


def test_prompt_layout() -> None:
    rng = np.random.default_rng(0)
    prev, cur = _codes(rng), _codes(rng)
    chunk = rng.uniform(ACTION_MIN, ACTION_MAX, (5, 7))
    sample = TOK.action_sample("open the drawer", prev, cur, chunk)
    prompt = TOK.action_prompt("open the drawer", prev, cur)
    assert sample.input_ids[: len(prompt)] == prompt and sample.prompt_len == len(prompt)
    assert prompt[0] == Vocab.BOS and prompt[-1] == Vocab.EOT
    text = ACTION_PROMPT.format(instruction="open the drawer")
    assert TOK.text.decode(prompt) == text
    n_text = 1 + len(text.encode())
    assert prompt[n_text : n_text + 24] == TOK.image(prev)
    assert prompt[n_text + 24 : -1] == TOK.image(cur)
    assert sample.input_ids[len(prompt) :] == [*ACT.encode(chunk), Vocab.EOT]
    assert all(y == -100 for y in sample.labels[: len(prompt)])
    assert sample.labels[len(prompt) :] == sample.input_ids[len(prompt) :]
    world = TOK.world_sample(cur, chunk[0], prev)
    assert TOK.text.decode(world.input_ids) == WORLD_PROMPT
    assert world.input_ids[world.prompt_len :] == [*TOK.image(prev), Vocab.EOT]


def _reference_mask(ids: list[int]) -> torch.Tensor:
    """WorldVLA's generate_att_mask_3, re-implemented with its block pairing, one sample."""
    t = len(ids)
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))

    def blocks(start_id: int, end_id: int) -> list[tuple[int, int]]:
        starts = [i for i, x in enumerate(ids) if x == start_id]
        ends = [i for i, x in enumerate(ids) if x == end_id]
        if len(starts) > len(ends):
            ends.append(t - 1)
        return list(zip(starts, ends, strict=True))

    images, actions = blocks(Vocab.IMAGE_BEGIN, Vocab.IMAGE_END), blocks(Vocab.BOA, Vocab.EOA)
    last_image_end = images[-1][1] if images else -1
    for start, end in actions:
        if start > last_image_end:
            for s, e in actions:
                if e < start:
                    mask[start : end + 1, s : e + 1] = False
    return mask


def _mask_cases() -> list[list[int]]:
    rng = np.random.default_rng(3)
    img = TOK.image(_codes(rng, 2, 2))
    a = [ACT.encode(rng.uniform(ACTION_MIN, ACTION_MAX, 7)) for _ in range(3)]
    text = TOK.text.encode("go")
    return [
        [Vocab.BOS, *text, *img, *img, Vocab.EOT, *a[0], *a[1], *a[2], Vocab.EOT],  # action
        [Vocab.BOS, *text, *img, *a[0], Vocab.EOT, *img, Vocab.EOT],  # world model
        [*img, *a[0], *img, *a[1], *a[2], Vocab.EOT],  # action history in the prompt
        [*text, *img, *a[0], *a[1][:4]],  # a block still open (mid-generation)
        [*text, *a[0], *a[1], Vocab.EOT],  # no image
        [*a[0], *img, *a[1], *img[:5]],  # an image still open
    ]


@pytest.mark.parametrize("case", range(6))
def test_action_mask_matches_reference_and_is_prefix_stable(case: int) -> None:
    seq = _mask_cases()[case]
    ids = torch.tensor([seq])
    full = attention_mask(ids)[0]
    torch.testing.assert_close(full, _reference_mask(seq))
    torch.testing.assert_close(attention_mask(ids, query_start=7)[0], full[7:])
    if case == 1:  # world-model samples stay causal
        torch.testing.assert_close(full, attention_mask(ids, action_mask=False)[0])
    # rows never change as tokens are appended (what cached generation relies on), given the
    # isolation start of the prompt; cases 1 and 5 are where an image follows the blocks
    if case not in (1, 5):
        iso = isolation_start(ids)
        for n in range(1, len(seq) + 1):
            row = attention_mask(ids[:, :n], isolate_from=iso, query_start=n - 1)[0, 0]
            torch.testing.assert_close(row, full[n - 1, :n])


# --- mask in the forward and in cached generation -----------------------------------------------


def test_action_mask_hides_earlier_blocks_in_the_full_forward(model: WorldVLATransformer) -> None:
    rng = np.random.default_rng(0)
    prompt = _action_prompt(rng)
    first, other_first, second = (rng.uniform(ACTION_MIN, ACTION_MAX, 7) for _ in range(3))
    assert ACT.encode(first) != ACT.encode(other_first)
    rows = [prompt + ACT.encode(a) + ACT.encode(second) + [Vocab.EOT] for a in (first, other_first)]
    ids = torch.tensor(rows)
    b2 = slice(len(prompt) + 9, len(prompt) + 18)  # the second block: boa .. eoa
    with torch.no_grad():
        masked = forward_sequence(model, ids)
        causal = forward_sequence(model, ids, action_mask=False)
    torch.testing.assert_close(masked[0, b2], masked[1, b2], atol=1e-6, rtol=0)
    torch.testing.assert_close(masked[0, : len(prompt)], masked[1, : len(prompt)])
    assert (causal[0, b2] - causal[1, b2]).abs().max() > 1e-3
    assert (masked[0, b2.stop] - masked[1, b2.stop]).abs().max() > 1e-3  # eot sees all blocks


def test_action_mask_hides_earlier_blocks_in_cached_generation(model: WorldVLATransformer) -> None:
    rng = np.random.default_rng(1)
    prompt = _action_prompt(rng)
    blocks = [ACT.encode(rng.uniform(ACTION_MIN, ACTION_MAX, 7)) for _ in range(2)]
    ids = torch.tensor([prompt + b for b in blocks])  # generation continues after block 1
    gen = generate_actions(model, TOK, ids, num_blocks=1, constrained=True, return_logits=True)
    logits = gen.output.logits
    assert logits is not None and logits.shape[1] == 9
    assert gen.tokens[0] == gen.tokens[1] and len(gen.actions[0]) == 1
    # step 0 is predicted at block 1's eoa (inside block 1); steps 1.. inside the new block
    torch.testing.assert_close(logits[0, 1:], logits[1, 1:], atol=1e-6, rtol=0)
    assert (logits[0, 0] - logits[1, 0]).abs().max() > 1e-3
    causal = greedy_generate(
        model, ids, max_new_tokens=9, action_mask=False, return_logits=True,
        constraint=action_constraint(VOCAB, 1),
    )
    assert causal.logits is not None
    assert (causal.logits[0, 1:] - causal.logits[1, 1:]).abs().max() > 1e-3


def test_cached_generation_equals_full_forward_batch_with_padding(
    model: WorldVLATransformer,
) -> None:
    rng = np.random.default_rng(2)
    prompts = [_action_prompt(rng, "open it"), _action_prompt(rng, "put the bowl on the plate")]
    assert len(prompts[0]) != len(prompts[1])
    ids, valid = pad_sequences(prompts)  # left padding
    cached = generate_actions(model, TOK, ids, valid, num_blocks=3, constrained=True,
                              return_logits=True)
    uncached = generate_actions(model, TOK, ids, valid, num_blocks=3, constrained=True,
                                return_logits=True, use_cache=False)
    out = cached.output
    assert out.logits is not None and uncached.output.logits is not None
    assert torch.equal(out.new_tokens, uncached.output.new_tokens)
    torch.testing.assert_close(out.logits, uncached.output.logits, atol=ATOL, rtol=0)
    assert [a.shape for a in cached.actions] == [(3, 7), (3, 7)]
    # one full (training) forward over prompt + answer, same mask
    p, n = ids.shape[1], out.new_tokens.shape[1]
    with torch.no_grad():
        full = forward_sequence(model, out.sequences, out.valid, isolate_from=out.isolate_from)
    torch.testing.assert_close(full[:, p - 1 : p - 1 + n], out.logits, atol=ATOL, rtol=0)
    # padding changes nothing: each prompt alone gives the same tokens and logits
    for i, prompt in enumerate(prompts):
        alone = generate_actions(model, TOK, torch.tensor([prompt]), num_blocks=3,
                                 constrained=True, return_logits=True)
        assert alone.tokens[0] == cached.tokens[i]
        assert alone.output.logits is not None
        torch.testing.assert_close(alone.output.logits[0], out.logits[i], atol=ATOL, rtol=0)
    # samples finishing at different steps: the finished one is fed invalid pad tokens
    def stop(new: torch.Tensor) -> torch.Tensor:
        return torch.tensor([new.shape[1] >= 4, new.shape[1] >= 12])

    ragged = greedy_generate(model, ids, valid, max_new_tokens=20, stop=stop, return_logits=True)
    assert ragged.logits is not None and ragged.new_tokens.shape[1] == 12
    assert ragged.new_valid[0].tolist() == [True] * 4 + [False] * 8
    assert (ragged.new_tokens[0, 4:] == Vocab.PAD).all()
    with torch.no_grad():
        full = forward_sequence(model, ragged.sequences, ragged.valid,
                                isolate_from=ragged.isolate_from)
    torch.testing.assert_close(full[1, p - 1 : p + 11], ragged.logits[1], atol=ATOL, rtol=0)
    torch.testing.assert_close(full[0, p - 1 : p + 3], ragged.logits[0, :4], atol=ATOL, rtol=0)
    alone = greedy_generate(model, torch.tensor([prompts[1]]), max_new_tokens=12,
                            return_logits=True)
    assert alone.logits is not None
    torch.testing.assert_close(alone.logits[0], ragged.logits[1], atol=ATOL, rtol=0)


def test_generate_image_forces_the_layout(model: WorldVLATransformer) -> None:
    rng = np.random.default_rng(4)
    prompts = [TOK.world_prompt(_codes(rng), rng.uniform(ACTION_MIN, ACTION_MAX, 7))
               for _ in range(2)]
    ids, valid = pad_sequences(prompts)
    gen = generate_image(model, TOK, ids, valid, grid=(4, 4), return_logits=True)
    assert gen.codes.shape == (2, 4, 4)
    assert gen.output.new_tokens.shape == (2, image_token_count(4, 4))
    for row, codes in zip(gen.output.new_tokens.tolist(), gen.codes, strict=True):
        assert row == codes_to_tokens(codes, VOCAB)
    plain = generate_image(model, TOK, ids, valid, grid=(4, 4), return_logits=True, use_cache=False)
    assert torch.equal(plain.codes, gen.codes)
    assert gen.output.logits is not None and plain.output.logits is not None
    torch.testing.assert_close(gen.output.logits, plain.output.logits, atol=ATOL, rtol=0)


# --- facade, training, loss ---------------------------------------------------------------------


def test_worldvla_facade_predicts_chunks_and_frames(tmp_path) -> None:
    torch.manual_seed(0)
    wm = WorldVLA.from_preset("tiny").eval()
    images = np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    chunks = wm.predict_actions(["open the drawer", "pick up the bowl"], images, images[::-1],
                                num_blocks=5, constrained=True)
    assert [c.shape for c in chunks] == [(5, 7), (5, 7)]
    for c in chunks:  # bin centres inside the bounds
        assert np.all(c >= ACTION_MIN) and np.all(c <= ACTION_MAX)
        np.testing.assert_allclose(ACT.decode(ACT.encode(c)), c)
    free = wm.predict_actions(["open the drawer"], images[:1], images[:1], max_new_tokens=12)
    assert free[0].ndim == 2 and free[0].shape[1] == 7
    frames = wm.predict_next_images(images, np.zeros((2, 7)))
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8
    path = tmp_path / "tiny.pt"
    wm.save(path)
    loaded = WorldVLA.load(path)
    assert loaded.config == wm.config
    for key, value in wm.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(6)
    wm = WorldVLA.from_preset("tiny")
    c0, c1, c2 = (_codes(rng) for _ in range(3))
    chunk = rng.uniform(ACTION_MIN, ACTION_MAX, (5, 7))
    batch = collate([
        TOK.action_sample("pick up the bowl", c0, c1, chunk),
        TOK.world_sample(c1, chunk[0], c2),
    ])  # right padding
    assert not batch.valid.all()
    optimizer = torch.optim.AdamW(wm.transformer.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = wm.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # the VQ-VAE trains too
    images = images_to_tensor(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    vq_opt = torch.optim.Adam(wm.vq.parameters(), lr=2e-3)
    vq_losses = []
    for _ in range(10):
        vq_loss = wm.vq(images).loss
        vq_opt.zero_grad()
        vq_loss.backward()
        vq_opt.step()
        vq_losses.append(vq_loss.item())
    assert vq_losses[-1] < vq_losses[0], vq_losses


def test_image_weight_gives_a_weighted_mean() -> None:
    torch.manual_seed(0)
    v = VOCAB.size
    logits = torch.randn(2, 40, v)
    labels = torch.randint(0, v, (2, 40))
    labels[:, 20:30] = torch.randint(VOCAB.image_offset, v, (2, 10))  # image-code targets
    labels[:, :5] = -100
    weight = class_weights(VOCAB, 0.04)
    assert weight[VOCAB.image_offset] == pytest.approx(0.04) and weight[Vocab.NEWLINE] == 1
    loss = lm_loss(logits, labels, weight)
    target = labels[:, 1:].reshape(-1)
    keep = target != -100
    flat = logits[:, :-1].reshape(-1, v)
    nll = F.cross_entropy(flat, target, reduction="none", ignore_index=-100)
    w = weight[target[keep]]
    torch.testing.assert_close(loss, (w * nll[keep]).sum() / w.sum())
    assert not torch.isclose(loss, (w * nll[keep]).sum() / keep.sum())  # not a scaled sum
    assert not torch.isclose(loss, lm_loss(logits, labels))
    torch.testing.assert_close(lm_loss(logits, labels, class_weights(VOCAB, 1.0)), nll[keep].mean())
    # with image targets only the weight cancels out (a scaled sum would shrink 25x)
    only_images = torch.full_like(labels, -100)
    only_images[:, 20:30] = labels[:, 20:30]
    torch.testing.assert_close(lm_loss(logits, only_images, weight), lm_loss(logits, only_images))


def test_presets_share_the_code() -> None:
    base = preset("base")
    assert base.vq.grid == 16 and base.vq.codebook_size == 8192
    assert image_token_count(base.vq.grid, base.vq.grid) == 276
    assert preset("tiny").vq.grid == 8
    with torch.device("meta"):
        big = WorldVLATransformer(base.transformer, Vocab(8192, base.max_grid).size)
    assert sum(p.numel() for p in big.parameters()) > 100_000_000
    changed = preset("tiny", vq={"codebook_size": 256}, image_loss_weight=1.0)
    assert changed.vq.codebook_size == 256 and changed.transformer == preset("tiny").transformer
    assert WorldVLAConfig.from_dict(base.to_dict()) == base
    with pytest.raises(ValueError):
        TransformerConfig(d_model=130, n_heads=4)
    with pytest.raises(ValueError):
        preset("huge")
