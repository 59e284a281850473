"""Tests of the released-checkpoint adapter (`chameleon_adapter`), the `worldvla_hf` policy and
the `worldvla_hf` world model.

A tiny, randomly initialised Chameleon (2 layers, hidden 64, vocabulary 16384 so that the
reserved-token ids of the release fit) and a tiny Chameleon VQ-GAN (encoder and decoder) are
written in the release's layout (a `save_pretrained` checkpoint directory; a tokenizer directory
with `vqgan.yaml`, `vqgan.ckpt` and `text_tokenizer.json`) and loaded offline. The tiny
vocabulary gives the structural tokens the ids of Chameleon's vocabulary: `<reservedNNNNN>` at
NNNNN + 4 (end of turn `<reserved08706>` 8710, action begin `<reserved10000>` 10004, action end
`<reserved15000>` 15004, new line `<reserved08799>` 8803, grid(n) 8804 + n), `<eoss>` 8196,
`<racm3:break>` 8197, image codes from 4, so an off-by-one in any of them shows.

The golden tests compute the expected ids and actions from the official formulas written out
here (github alibaba-damo-academy/WorldVLA, `worldvla/`): data/item_processor.py
FlexARItemProcessor_Action.norm_action and process_action, model/modeling_xllmx_chameleon_ck.py
decode_token_ids_to_actions and generate_dis_ma, eval_solver_libero_256.py unnorm_min_max.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from worldvla_bench.integrations.worldvla.action_tokenizer import (  # noqa: E402
    ACTION_MAX,
    ACTION_MIN,
    RELEASED_LAYOUT,
    ActionTokenizer,
)
from worldvla_bench.integrations.worldvla.chameleon_adapter import (  # noqa: E402
    ChameleonWorldVLA,
    decode_actions,
    encode_actions,
    image_codes,
    image_tokens,
    instruction_from_task_name,
    load_released,
)
from worldvla_bench.integrations.worldvla.vqgan_decoder import VQGANDecoder  # noqa: E402
from worldvla_bench.policy import EpisodeContext, make_policy  # noqa: E402

VOCAB_SIZE = 16384
N_CODES = 64
RESERVED = [8706, 8799, 10000, 15000, *range(8801, 8833), *range(10001, 10258)]
CHARS = sorted(set(string.ascii_letters + string.digits + " ?.,'-"))
EOT, BOA, EOA, BOI, EOI, NEWLINE = 8710, 10004, 15004, 8197, 8196, 8803

# --- the official formulas, written out independently of the code under test
# item_processor.py norm_action / eval_solver_libero_256.py unnorm_min_max
OFFICIAL_MIN = np.array([-0.9375, -0.9375, -0.9375, -0.32571429, -0.375, -0.375, -1.0])
OFFICIAL_MAX = np.array([0.9375, 0.9375, 0.9375, 0.375, 0.375, 0.375, 1.0])
OFFICIAL_SPAN = OFFICIAL_MAX - OFFICIAL_MIN + 1e-8
EDGES = np.linspace(-1, 1, 256)  # FlexARItemProcessor_Action.__init__ bins
CENTRES = (EDGES[:-1] + EDGES[1:]) / 2.0  # bin_centers


def official_ids(action: np.ndarray) -> np.ndarray:
    """process_action: digitize(clip(2 (a - min) / (max - min + 1e-8) - 1, -1, 1)) + 10004 + 1."""
    norm = np.clip(2 * (action - OFFICIAL_MIN) / OFFICIAL_SPAN - 1, -1, 1)
    return np.digitize(norm, EDGES) + 10004 + 1


def official_values(ids: np.ndarray) -> np.ndarray:
    """decode_token_ids_to_actions: bin centre of clamp(id - 1 - 10004 - 1, 0, 254)."""
    return CENTRES[np.clip(np.asarray(ids) - 1 - 10004 - 1, 0, 254)]


def official_unnorm(values: np.ndarray) -> np.ndarray:
    """unnorm_min_max: (x + 1) / 2 * (max - min + 1e-8) + min."""
    return (values + 1) / 2 * OFFICIAL_SPAN + OFFICIAL_MIN


def official_action(bins) -> np.ndarray:
    """The env action of a block whose value ids are 10006 + bins."""
    return official_unnorm(official_values(10006 + np.asarray(bins)))
TASK = "LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket"
LANGUAGE = "put both the alphabet soup and the tomato sauce in the basket"


def code_name(code: int) -> str:
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def tiny_vocab() -> dict[str, int]:
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({code_name(c): 4 + c for c in range(N_CODES)})
    vocab.update({"<eoss>": EOI, "<racm3:break>": BOI})
    vocab.update({f"<reserved{n:05d}>": n + 4 for n in RESERVED})
    vocab.update({ch: 200 + i for i, ch in enumerate(CHARS)})
    return vocab


def write_release(root: Path) -> tuple[Path, Path]:
    """(checkpoint_dir, tokenizer_dir) of a tiny random model in the release's layout."""
    from tokenizers import Tokenizer, models
    from transformers import (
        ChameleonConfig,
        ChameleonForConditionalGeneration,
        ChameleonVQVAE,
        ChameleonVQVAEConfig,
    )

    ckpt, tok = root / "model_256" / "libero_10", root / "chameleon" / "tokenizer"
    tok.mkdir(parents=True)
    vocab = tiny_vocab()
    Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>")).save(
        str(tok / "text_tokenizer.json"))
    torch.manual_seed(0)
    vq_kwargs = dict(embed_dim=8, num_embeddings=N_CODES, latent_channels=8, resolution=32,
                     base_channels=32, channel_multiplier=[1, 1, 1, 1, 1], num_res_blocks=1,
                     attn_resolutions=[])
    vq_config = ChameleonVQVAEConfig(**vq_kwargs)
    vq = ChameleonVQVAE(vq_config)
    ddconfig = {"double_z": False, "z_channels": 8, "resolution": 32, "in_channels": 3,
                "out_ch": 3, "ch": 32, "ch_mult": [1, 1, 1, 1, 1], "num_res_blocks": 1,
                "attn_resolutions": [], "dropout": 0.0}
    state = dict(vq.state_dict())
    decoder = VQGANDecoder(**ddconfig)
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    state["loss.logvar"] = torch.zeros(1)  # dropped on load, as in the release
    torch.save({"state_dict": state}, tok / "vqgan.ckpt")
    (tok / "vqgan.yaml").write_text(yaml.safe_dump(
        {"model": {"params": {"embed_dim": 8, "n_embed": N_CODES, "ddconfig": ddconfig}}}))
    config = ChameleonConfig(
        vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        vq_config=vq_config.to_dict(), vocabulary_map=vocab, bos_token_id=0, pad_token_id=1,
        eos_token_id=2, initializer_range=0.2)
    model = ChameleonForConditionalGeneration(config)
    model.save_pretrained(ckpt)
    return ckpt, tok


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, Path]:
    return write_release(tmp_path_factory.mktemp("worldvla_release"))


@pytest.fixture(scope="module")
def adapter(release) -> ChameleonWorldVLA:
    return load_released(*release)


def program_bigram(model, chain: list[int]) -> None:
    """Make the model a bigram table: each token of `chain` predicts the next one.

    Attention and MLP outputs are zeroed, so the last hidden state is the token's own embedding,
    a one-hot direction per source token; the LM head maps it to its successor.
    """
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for k, (src, dst) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
            model.model.embed_tokens.weight[src] = 0.0
            model.model.embed_tokens.weight[src, k] = 1.0
            model.lm_head.weight[dst, k] = 10.0


def test_loads_offline_with_released_ids(adapter, release, tmp_path) -> None:
    ids = adapter.ids
    assert (ids.bos, ids.pad, ids.eot, ids.boa, ids.eoa) == (0, 1, EOT, BOA, EOA)
    assert (ids.boi, ids.eoi, ids.newline, ids.grid(2), ids.grid(16)) == (
        BOI, EOI, NEWLINE, 8806, 8820)
    layout = ids.actions.layout
    assert (layout.begin, layout.end, layout.first_value) == (BOA, EOA, 10006)
    assert layout.blocks == "official" and layout.norm_eps == 1e-8 and not layout.clip_bins
    assert ids.img2bpe[:3].tolist() == [4, 5, 6] and ids.bpe2img[4 + 63] == 63
    assert adapter.model.config._attn_implementation == "sdpa"
    # a checkpoint config without `vocabulary_map` gets it from the text tokenizer
    ckpt = tmp_path / "no_vocab_map"
    shutil.copytree(release[0], ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    del config["vocabulary_map"]
    (ckpt / "config.json").write_text(json.dumps(config))
    other = load_released(ckpt, release[1], attn_implementation="eager")
    assert (other.ids.eot, other.ids.boa, other.ids.eoa, other.ids.grids) == (
        EOT, BOA, EOA, ids.grids)
    assert other.model.config._attn_implementation == "eager"
    # the 4-d additive mask reaches eager attention as it reaches SDPA
    prompt = adapter.action_prompt("go", np.zeros((2, 2), int), np.ones((2, 2), int))
    cont = encode_actions(np.zeros((2, 7)), ids)[:12]
    for action_mask in (True, False):
        a, b = (m.teacher_forced_logits([prompt], [cont], action_mask=action_mask)
                for m in (adapter, other))
        ok = a > -1e30
        torch.testing.assert_close(a[ok], b[ok], rtol=0, atol=1e-4)
    # a checkpoint that is not a complete Chameleon is refused
    from safetensors.torch import load_file, save_file

    (weights,) = ckpt.glob("*.safetensors")
    state = load_file(weights)
    del state["lm_head.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(KeyError, match="lm_head.weight"):
        load_released(ckpt, release[1])
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        load_released("Alibaba-DAMO-Academy/WorldVLA", release[1])


def test_official_qk_norm_layout_loads_with_the_stock_logits(release, tmp_path) -> None:
    """WorldVLA's vendored ChameleonLayerNorm (worldvla/model/chameleon/modeling_chameleon.py)
    stores q/k-norm as (model_parallel_size, head_dim) and repeats each row over its shard's
    heads at every forward; stock transformers stores the repeated (heads, head_dim) tensor."""
    from safetensors.torch import load_file, save_file

    (weights,) = release[0].glob("*.safetensors")
    state = load_file(weights)
    gen = torch.Generator().manual_seed(11)
    official, stock, tiled = dict(state), dict(state), dict(state)
    norms = [k for k in state if k.endswith(("q_norm.weight", "q_norm.bias", "k_norm.weight",
                                             "k_norm.bias"))]
    assert len(norms) == 8 and all(state[k].shape == (4, 16) for k in norms)
    for i, key in enumerate(norms):
        rows = 1 if i % 2 else 2  # official (1, head_dim), and (2, head_dim) from 2 shards
        shard = 1.0 + 0.5 * torch.randn((rows, 16), generator=gen)
        official[key] = shard
        stock[key] = shard.repeat_interleave(4 // rows, 0)  # shard s -> heads 2s, 2s + 1
        tiled[key] = shard.repeat(4 // rows, 1)  # the wrong order, to show the test can see it
    dirs = {}
    for name, tensors in (("official", official), ("stock", stock), ("tiled", tiled)):
        dirs[name] = tmp_path / name
        shutil.copytree(release[0], dirs[name])
        save_file(tensors, dirs[name] / weights.name, metadata={"format": "pt"})
    models = {name: load_released(d, release[1]) for name, d in dirs.items()}
    for key in norms:
        param = models["official"].model.get_parameter(key)
        torch.testing.assert_close(param, stock[key], rtol=0, atol=0)
    rng = np.random.default_rng(12)
    prompt = models["stock"].action_prompt("go", rng.integers(0, N_CODES, (2, 2)),
                                           rng.integers(0, N_CODES, (2, 2)))
    cont = encode_actions(rng.uniform(ACTION_MIN, ACTION_MAX, (2, 7)), models["stock"].ids)
    logits = {name: m.teacher_forced_logits([prompt], [cont]) for name, m in models.items()}
    torch.testing.assert_close(logits["official"], logits["stock"], rtol=0, atol=0)
    assert (logits["tiled"] - logits["stock"]).abs().max() > 1e-2
    # any other mismatch: one line naming the key and both shapes, before the weights are read
    for key, shape in (("model.layers.0.self_attn.q_norm.weight", (3, 16)),
                       ("model.layers.1.self_attn.k_norm.bias", (1, 8)),
                       ("model.layers.0.mlp.down_proj.weight", (64, 64))):
        bad = dict(stock)
        bad[key] = torch.zeros(shape)
        save_file(bad, dirs["tiled"] / weights.name, metadata={"format": "pt"})
        with pytest.raises(ValueError) as error:
            load_released(dirs["tiled"], release[1])
        message = str(error.value)
        assert "\n" not in message and key in message and str(list(shape)) in message
        assert str(list(stock[key].shape)) in message


def test_flash_attention_refused(release) -> None:
    from worldvla_bench.integrations.worldvla.hf_policy import WorldVLAHFPolicy

    for name in ("flash_attention_2", "flash_attention_3"):
        with pytest.raises(ValueError, match="4-d mask"):
            load_released(*release, attn_implementation=name)
        with pytest.raises(ValueError, match="flash"):
            WorldVLAHFPolicy(str(release[0]), str(release[1]), attn_implementation=name)


def test_prompt_layout(adapter) -> None:
    prev = np.array([[0, 1], [2, 3]])
    cur = np.array([[63, 62], [61, 10]])
    prompt = adapter.action_prompt("go", prev, cur)
    text = [200 + CHARS.index(c) for c in "What action should the robot take to go?"]

    def image(codes: np.ndarray) -> list[int]:
        h, w = codes.shape
        rows = [t for row in codes for t in [*(4 + row).tolist(), NEWLINE]]
        # grid tokens count 32-pixel patches: 8804 + codes / 2 (item_processor.py)
        return [BOI, 8804 + h // 2, 8804 + w // 2, *rows, EOI]

    assert prompt == [0, *text, *image(prev), *image(cur), EOT]
    # the first query of an episode: the current frame only
    assert adapter.action_prompt("go", None, cur) == [0, *text, *image(cur), EOT]
    assert image_tokens(np.zeros((2, 4), int), adapter.ids) == [
        BOI, 8805, 8806, 4, 4, 4, 4, NEWLINE, 4, 4, 4, 4, NEWLINE, EOI]
    # a 256x256 frame: 16 x 16 codes, grid(8) = <reserved08808> = 8812, 276 tokens
    big = image_tokens(np.ones((16, 16), int), adapter.ids)
    assert len(big) == 276 and big[:3] == [BOI, 8812, 8812] and big[3 + 16] == NEWLINE
    codes = np.random.default_rng(0).integers(0, N_CODES, (4, 6))
    np.testing.assert_array_equal(image_codes(image_tokens(codes, adapter.ids), adapter.ids),
                                  codes)
    with pytest.raises(ValueError, match="32-pixel"):
        image_tokens(np.zeros((1, 3), int), adapter.ids)
    codes = adapter.encode_images(np.random.default_rng(0).integers(0, 255, (3, 32, 48, 3)))
    assert codes.shape == (3, 2, 3) and 0 <= int(codes.min()) and int(codes.max()) < N_CODES
    with pytest.raises(ValueError, match="multiples of 16"):
        adapter.encode_images(np.zeros((1, 30, 32, 3), np.uint8))


def test_released_action_ids_are_the_official_ones(adapter) -> None:
    ids = adapter.ids
    rng = np.random.default_rng(1)
    lo, hi = OFFICIAL_MIN, OFFICIAL_MAX
    # the bounds, zero, values on and next to bin edges, typical and out-of-range values
    on_edges = official_unnorm(EDGES[[0, 1, 127, 128, 200, 254, 255]][:, None].repeat(7, 1))
    actions = np.concatenate([
        lo[None], hi[None], np.zeros((1, 7)), on_edges, on_edges + 1e-9, on_edges - 1e-9,
        rng.uniform(lo, hi, (50, 7)), rng.uniform(lo - 0.5, hi + 0.5, (20, 7)),
    ])
    tokens = encode_actions(actions, ids)
    blocks = np.array(tokens).reshape(len(actions), 9)
    assert np.all(blocks[:, 0] == 10004) and np.all(blocks[:, 8] == 15004)
    np.testing.assert_array_equal(blocks[:, 1:8], official_ids(actions))
    # hand-derived ids: the minimum is digitize 1, the maximum (thanks to + 1e-8) digitize 255
    assert blocks[0, 1:8].tolist() == [10006] * 7 and blocks[1, 1:8].tolist() == [10260] * 7
    assert blocks[2, 1:8].tolist() == [10133, 10133, 10133, 10124, 10133, 10133, 10133]
    # above the maximum the normalised value clips to exactly 1.0: digitize 256, id 10261
    assert encode_actions(hi + 1, ids)[1:8] == [10261] * 7
    # decoding: every block, bin centres, un-normalised with + 1e-8
    decoded = decode_actions(tokens, ids)
    np.testing.assert_allclose(decoded, official_unnorm(official_values(blocks[:, 1:8])),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        decoded[0], [-0.933824, -0.933824, -0.933824, -0.32434, -0.373529, -0.373529,
                     -0.996078], atol=1e-6)
    # a decoded action re-encodes to its bin's id (10261, bin 255, reads back as bin 254);
    # in range, within half a bin
    again = np.array(encode_actions(decoded, ids)).reshape(len(actions), 9)
    np.testing.assert_array_equal(again[:, 1:8], np.minimum(blocks[:, 1:8], 10260))
    typical = slice(len(actions) - 70, len(actions) - 20)
    assert np.all(np.abs(decoded[typical] - actions[typical]) <= OFFICIAL_SPAN / 255 / 2 + 1e-9)


def test_out_of_range_value_ids_are_clamped(adapter) -> None:
    ids = adapter.ids
    # 10005 (digitize 0) and anything below clamp to bin 0; 10261 and above to bin 254; any id
    # between begin and end is read as a value, text tokens included
    odd = [10005, 10261, 14000, 5, 10006, 10260, 200]
    out = decode_actions([BOA, *odd, EOA], ids)
    np.testing.assert_allclose(out[0], official_unnorm(official_values(np.array(odd))))
    np.testing.assert_allclose(out[0], official_action([0, 254, 254, 0, 0, 254, 0]))


def test_block_parsing_follows_generate_dis_ma_and_unnorm_min_max(adapter) -> None:
    ids = adapter.ids
    bins = [0, 254, 127, 1, 200, 30, 100]
    block = [BOA, *[10006 + b for b in bins], EOA]
    action = official_action(bins)
    chunk = ids.actions.decode_chunk
    # several blocks, with text and end of turn around them: every block, in order
    out, broken = chunk([205, *block, 205, *block, EOT])
    np.testing.assert_allclose(out, np.stack([action, action]))
    assert not broken
    # no block at all: nothing to execute (the official eval ends the episode)
    out, broken = chunk([205, 10100, EOT])
    assert out.shape == (0, 7) and broken == "no action block in the answer"
    # a second begin restarts the block; an end without an open block after one is skipped
    out, broken = chunk([BOA, 10010, 10011, *block, EOA, EOT])
    np.testing.assert_allclose(out, action[None])
    assert not broken
    # an end before any begin: generate_dis_ma reads start_index unassigned and raises, so the
    # official eval ends the episode without running any block
    out, broken = chunk([EOA, BOA, 10010, 10011, *block, EOT])
    assert out.shape == (0, 7) and broken == "an end-of-action token before any begin"
    # a block still open when generation stops (token budget) is dropped
    out, broken = chunk([*block, BOA, 10010, 10011])
    np.testing.assert_allclose(out, action[None])
    assert not broken
    # more than 7 values: the first 7; exactly 1 value: broadcast to all 7 dimensions
    out, broken = chunk([BOA, *block[1:8], 10100, 10200, EOA, BOA, 10050, EOA])
    np.testing.assert_allclose(out, np.stack([action, official_action([44] * 7)]))
    assert not broken
    # 2..6 values (or none) cannot be executed: the chunk stops before that block
    for n in (0, 2, 6):
        out, broken = chunk([*block, BOA, *[10050] * n, EOA, *block, EOT])
        np.testing.assert_allclose(out, action[None])
        assert broken == f"action block 2 holds {n} values"
    assert decode_actions([BOA, 10050, 10051, EOA], ids).shape == (0, 7)
    blocks = ids.actions.decode_blocks([*block, BOA, 10050, 10051, EOA])
    assert [len(b) for b in blocks] == [7, 2]


def test_one_tokenizer_two_layouts() -> None:
    from worldvla_bench.integrations.worldvla.vocab import Vocab

    vocab = Vocab(codebook_size=16)
    tiny, released = ActionTokenizer(vocab), ActionTokenizer(RELEASED_LAYOUT)
    assert tiny.layout.name == "tiny" and tiny.layout.first_value == vocab.action_offset
    np.testing.assert_array_equal(ACTION_MIN, OFFICIAL_MIN)
    np.testing.assert_array_equal(ACTION_MAX, OFFICIAL_MAX)
    actions = np.random.default_rng(2).uniform(ACTION_MIN, ACTION_MAX, (30, 7))
    # one bin arithmetic: the two layouts differ by the id offset (and the released + 1e-8)
    t, r = np.array(tiny.encode(actions)), np.array(released.encode(actions))
    assert t[0] == Vocab.BOA and r[0] == 10004
    values = np.ones(len(t), bool)
    values[0::9] = values[8::9] = False
    assert np.abs(t[values] - vocab.action_offset - (r[values] - 10006)).max() <= 1
    # the tiny layout keeps only well-formed blocks; the released one reads any begin..end
    short = [Vocab.BOA, vocab.action_offset, Vocab.EOA]
    assert tiny.decode(short).shape == (0, 7)
    assert released.decode([10004, 10006, 15004]).shape == (1, 7)


def test_action_mask_hides_earlier_blocks_in_cached_decoding(adapter) -> None:
    rng = np.random.default_rng(2)
    prompt = adapter.action_prompt("go", rng.integers(0, N_CODES, (2, 2)),
                                   rng.integers(0, N_CODES, (2, 2)))
    block1 = encode_actions(rng.uniform(ACTION_MIN, ACTION_MAX, 7), adapter.ids)
    block1b = encode_actions(rng.uniform(ACTION_MIN, ACTION_MAX, 7), adapter.ids)
    block2 = encode_actions(rng.uniform(ACTION_MIN, ACTION_MAX, 7), adapter.ids)[:5]
    conts = [block1 + block2, block1b + block2]
    n = len(block1)  # rows n+1.. predict tokens after the second block's begin
    masked = adapter.teacher_forced_logits([prompt, prompt], conts, action_mask=True)
    causal = adapter.teacher_forced_logits([prompt, prompt], conts, action_mask=False)
    assert masked.shape == (2, len(conts[0]) + 1, VOCAB_SIZE)
    finite = masked[0, n + 1:] > -1e30  # (all finite: image logits are unmasked, as officially)
    torch.testing.assert_close(masked[0, n + 1:][finite], masked[1, n + 1:][finite],
                               rtol=0, atol=1e-5)  # float noise (logits' std is about 1.6)
    assert (causal[0, n + 1:] - causal[1, n + 1:]).abs().max() > 1e-3
    # the first block itself sees the prompt only in both cases: same rows before the change
    torch.testing.assert_close(masked[:, 0], causal[:, 0])
    # cached step-by-step decoding == one full forward with the same mask
    full = adapter.teacher_forced_logits([prompt, prompt], conts, action_mask=True,
                                         use_cache=False)
    ok = masked > -1e30
    torch.testing.assert_close(masked[ok], full[ok], rtol=0, atol=1e-4)


def official_mask_rows(ids: list[int]) -> torch.Tensor:
    """modeling_xllmx_chameleon_ck.py generate_att_mask_3, one sample, written out: causal,
    then every action block after the last image loses its view of every earlier action block
    (an open image or block ends at the last position; a surplus end id is dropped)."""
    t = len(ids)
    mask = torch.tril(torch.ones(t, t)).bool()
    img_s = [i for i, x in enumerate(ids) if x == 8197]
    img_e = [i for i, x in enumerate(ids) if x == 8196]
    if len(img_s) > len(img_e):
        img_e.append(t - 1)
    act_s = [i for i, x in enumerate(ids) if x == 10004]
    act_e = [i for i, x in enumerate(ids) if x == 15004]
    if len(act_s) > len(act_e):
        act_e.append(t - 1)
    elif len(act_s) < len(act_e):
        act_e = act_e[:-1]
    blocks = list(zip(act_s, act_e, strict=True))
    last_image_end = img_e[-1] if img_e else -1
    for start, end in blocks:
        if start > last_image_end:
            for prev_start, prev_end in blocks:
                if prev_end < start:
                    mask[start : end + 1, prev_start : prev_end + 1] = False
    return mask


def test_action_mask_rows_equal_the_official_ones(adapter) -> None:
    from worldvla_bench.integrations.worldvla.chameleon_adapter import structure_roles
    from worldvla_bench.integrations.worldvla.masks import attention_mask

    prompt = adapter.action_prompt("go", np.zeros((2, 2), int), np.ones((2, 2), int))
    answer = [BOA, *range(10010, 10017), EOA, BOA, *range(10020, 10027), EOA, 205, BOA, 10030,
              10031, EOA, EOT]
    seq = prompt + answer
    # each official decoding step hands the model the last row of the mask over everything so far
    for t in range(len(prompt), len(seq) + 1):
        ids = torch.tensor([seq[:t]])
        ours = attention_mask(structure_roles(ids, adapter.ids), query_start=t - 1)[0, -1]
        torch.testing.assert_close(ours, official_mask_rows(seq[:t])[-1])


def test_batched_generation_matches_single(adapter) -> None:
    rng = np.random.default_rng(3)
    prompts = [adapter.action_prompt(text, rng.integers(0, N_CODES, (2, 2)),
                                     rng.integers(0, N_CODES, (2, 2)))
               for text in ("go", "pick up the bowl")]
    batch = adapter.generate(prompts, max_new_tokens=12)
    for i, prompt in enumerate(prompts):
        alone = adapter.generate([prompt], max_new_tokens=12)
        assert alone.tokens[0] == batch.tokens[i]
    assert all(len(t) == 12 for t in batch.tokens)  # a random model never ends its turn


def test_generation_stops_at_end_of_turn_and_decodes(adapter, release) -> None:
    model = load_released(*release)
    bins = [0, 30, 60, 127, 200, 254, 100]
    values = [10006 + b for b in bins]
    program_bigram(model.model, [EOT, BOA, *values, EOA, EOT])
    rng = np.random.default_rng(4)
    prompts = [model.action_prompt(t, rng.integers(0, N_CODES, (2, 2)),
                                   rng.integers(0, N_CODES, (2, 2))) for t in ("a", "bb c")]
    out = model.generate(prompts, max_new_tokens=300)
    assert out.tokens == [[BOA, *values, EOA, EOT]] * 2
    for chunk in out.actions:
        np.testing.assert_allclose(chunk, official_action(bins)[None])
    assert out.broken == [False, False]


def test_policy_instruction_source_and_act(release) -> None:
    from worldvla_bench.integrations.worldvla.hf_policy import WorldVLAHFPolicy

    policy = WorldVLAHFPolicy(str(release[0]), str(release[1]), resolution=256,
                              instruction_source="filename", share_model=False)
    shared = [make_policy("worldvla_bench.integrations.worldvla.hf_policy:WorldVLAHFPolicy",
                          checkpoint_dir=str(release[0]), tokenizer_dir=str(release[1]))
              for _ in range(2)]
    assert shared[0].adapter is shared[1].adapter is not policy.adapter
    assert policy.cameras == ("agentview",) and policy.observation_profile == "worldvla"
    context = EpisodeContext("libero_10", 0, TASK, LANGUAGE, 0, 0, 10)
    policy.reset(context)
    assert policy.prompt_instruction({"instruction": LANGUAGE}) == (
        "LIVING ROOM SCENE2 put both the alphabet soup and the tomato sauce in the basket")
    assert instruction_from_task_name(TASK + "_demo.hdf5") == policy.prompt_instruction()
    policy.instruction_source = "language"
    assert policy.prompt_instruction({"instruction": LANGUAGE}) == LANGUAGE
    with pytest.raises(ValueError, match="instruction_source"):
        WorldVLAHFPolicy(str(release[0]), str(release[1]), instruction_source="training")
    with pytest.raises(ValueError, match="resolution"):
        WorldVLAHFPolicy(str(release[0]), str(release[1]), resolution=224)

    # a bigram cycle: blocks of the same action until the 18-token cap -> two blocks
    bins = [10, 20, 30, 40, 50, 60, 254]
    values = [10006 + b for b in bins]
    program_bigram(policy.adapter.model, [EOT, BOA, *values, EOA, BOA])
    policy.max_new_tokens = 18
    # observations as the engine prepares them (profile `worldvla` at the checkpoint's 256 px)
    assert policy.image_size == 256
    frames = np.random.default_rng(5).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    chunk = policy.act({"agentview_image": frames[1], "agentview_history": frames[:1],
                        "instruction": LANGUAGE})
    assert policy.last_tokens == [BOA, *values, EOA] * 2
    expected = official_action(bins)
    np.testing.assert_allclose(chunk, np.stack([expected, expected]))  # both blocks, one call
    assert policy.stats["chunks"] == 1 and policy.stats["blocks"] == 2
    # later queries hold the previous env step's frame then the current one (276 tokens each at
    # 256 x 256); the first query of an episode (no history yet) the current frame only
    codes = policy.adapter.encode_images(frames)
    two = policy.last_prompt
    assert two.count(BOI) == 2 and two[-1] == EOT
    assert two[-553:-1] == [*image_tokens(codes[0], policy.adapter.ids),
                            *image_tokens(codes[1], policy.adapter.ids)]
    policy.reset(None)
    policy.act({"agentview_image": frames[1], "agentview_history": frames[:0],
                "instruction": LANGUAGE})
    one = policy.last_prompt
    assert one.count(BOI) == 1 and one == [*two[:-553], *two[-277:]]
    assert one[-277:-1] == image_tokens(codes[1], policy.adapter.ids)

def test_mask_fault_is_where_generate_att_mask_3_raises(adapter) -> None:
    from worldvla_bench.integrations.worldvla.chameleon_adapter import mask_fault

    prompt = adapter.action_prompt("go", np.zeros((2, 2), int), np.zeros((2, 2), int))
    ids = adapter.ids
    # every sequence fed to the model is checked: the prompt and all new tokens but the last
    assert mask_fault(prompt, [BOA, 10050, BOA, 10051, EOT], ids) == (
        "mismatched action begin and end tokens (the official mask raises)")
    assert mask_fault(prompt, [BOA, 10050, BOA], ids) is None  # the last one is never fed
    assert mask_fault(prompt, [BOA, 10050, EOA, EOA, EOA, EOT], ids) is not None
    assert mask_fault(prompt, [BOA, 10050, EOA, EOA, EOT], ids) is None  # one extra end: dropped
    assert mask_fault(prompt, [BOI, BOI, EOT], ids).startswith("mismatched image")
    # the official counts, written out (generate_att_mask_3: one missing end is added, one
    # extra end is dropped, then the counts must agree)
    for new in ([BOA, BOA, EOA, EOT], [EOA, EOA, EOA, EOT], [BOA, EOA, BOA, 10050, BOA, EOT]):
        fed = [*prompt, *new[:-1]]
        raises = False
        for t in range(1, len(fed) + 1):
            starts, ends = fed[:t].count(BOA), fed[:t].count(EOA)
            ends += 1 if starts > ends else (-1 if starts < ends else 0)
            raises |= starts != ends
        assert (mask_fault(prompt, new, ids) is not None) == raises


def test_policy_where_the_official_eval_ends_the_episode(release) -> None:
    from worldvla_bench.integrations.worldvla.hf_policy import WorldVLAHFPolicy
    from worldvla_bench.policy import EndEpisode

    policy = WorldVLAHFPolicy(str(release[0]), str(release[1]), resolution=256,
                              share_model=False)
    frame = np.random.default_rng(8).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    obs = {"agentview_image": frame, "instruction": LANGUAGE}
    # a block of two values (the official unnorm_min_max cannot broadcast it): by default, the
    # end of the episode as a failure, as the official eval
    program_bigram(policy.adapter.model, [EOT, BOA, 10100, 10101, EOA, EOT])
    with pytest.raises(EndEpisode, match="broken answer: action block 1 holds 2 values") as end:
        policy.act(obs)
    assert end.value.actions.shape == (0, 7)
    assert policy.last_tokens == [BOA, 10100, 10101, EOA, EOT]
    assert policy.stats["broken"] == 1 and policy.stats["fallbacks"] == 0
    # ... or, with on_broken=continue, the safe chunk and the episode goes on
    program_bigram(policy.adapter.model, [EOT, BOA, 10100, 10101, EOA, EOT])
    going = WorldVLAHFPolicy(str(release[0]), str(release[1]), resolution=256,
                             on_broken="continue")
    going.adapter = policy.adapter
    assert going.act_batch is None  # its safe chunk keeps per-episode state: not shared
    np.testing.assert_allclose(going.act(obs), [[0, 0, 0, 0, 0, 0, -1.0]])
    assert going.stats["broken"] == 1 and going.stats["fallbacks"] == 1
    # a block of one value broadcasts to all 7 dimensions: no end
    program_bigram(policy.adapter.model, [EOT, BOA, 10100, EOA, EOT])
    np.testing.assert_allclose(policy.act(obs), official_action([94] * 7)[None])
    with pytest.raises(ValueError, match="on_broken"):
        WorldVLAHFPolicy(str(release[0]), str(release[1]), on_broken="ignore")


BRANCH_SEED = 1  # its batch below mixes chunks and episode ends


def test_act_batch_equals_act_one_at_a_time(release) -> None:
    """One left-padded batch of different frames, histories and instructions (the action mask
    on) gives every episode what `act` gives it alone: chunks, and episode ends."""
    from conftest import batch_equals_one_at_a_time, program_branches

    from worldvla_bench.integrations.worldvla.hf_policy import WorldVLAHFPolicy

    policy = WorldVLAHFPolicy(str(release[0]), str(release[1]), resolution=256,
                              share_model=False, max_new_tokens=40)
    assert policy.action_mask
    model = policy.adapter.model  # 10006: the value id of bin 0
    program_branches(model.lm_head.weight, model.model.embed_tokens.weight, (BOA, EOA, EOT),
                     10006, BRANCH_SEED)
    texts = ["put the bowl on the plate", "open the drawer", "go", "pick up the soup and place it"]
    kinds = batch_equals_one_at_a_time(policy, texts, 256)
    assert kinds == {"chunk", "end"}, kinds  # the batch mixes both


# --- the released checkpoint as a world model ----------------------------------------------


WORLD_TEXT = ("Generate the next image based on the provided sequence of historical images and "
              "corresponding actions.")  # data/world_model_conv_generation.py main


@pytest.fixture(scope="module")
def world_model(release):
    from worldvla_bench.integrations.worldvla.hf_world_model import WorldVLAHFWorldModel

    model = WorldVLAHFWorldModel(str(release[0]), str(release[1]), resolution=32)
    yield model
    model.close()


def test_world_prompt_layout(adapter) -> None:
    codes = np.array([[0, 1], [2, 3]])
    action = np.array([0.1, -0.2, 0.3, 0.0, 0.05, -0.1, -1.0])
    prompt = adapter.world_prompt([codes], action[None])
    text = [200 + CHARS.index(c) for c in WORLD_TEXT]
    image = [BOI, 8805, 8805, 4, 5, NEWLINE, 6, 7, NEWLINE, EOI]
    assert prompt == [0, *text, *image, BOA, *official_ids(action).tolist(), EOA, EOT]
    two = adapter.world_prompt([codes, codes + 1], np.stack([action, -action]))
    assert two.count(BOI) == 2 and two.count(BOA) == 2 and two[-1] == EOT
    with pytest.raises(ValueError, match="one action per history frame"):
        adapter.world_prompt([codes], np.stack([action, action]))


def test_generated_image_is_forced_layout_and_greedy_codes(world_model) -> None:
    adapter = world_model.adapter
    rng = np.random.default_rng(6)
    prompts = [adapter.world_prompt([rng.integers(0, N_CODES, (2, 4))],
                                    rng.uniform(ACTION_MIN, ACTION_MAX, (1, 7))) for _ in range(2)]
    codes = adapter.generate_images(prompts, 2, 4)
    assert codes.shape == (2, 2, 4) and int(codes.min()) >= 0 and int(codes.max()) < N_CODES
    # every code is the most likely image code given the forced tokens before it, as a
    # teacher-forced pass over the layout with these codes shows
    layouts = [image_tokens(c, adapter.ids) for c in codes]
    logits = adapter.teacher_forced_logits(prompts, layouts, action_mask=False)
    image_ids = torch.tensor(sorted(adapter.ids.bpe2img))
    for i, layout in enumerate(layouts):
        for pos, token in enumerate(layout):
            if token in adapter.ids.bpe2img:
                best = image_ids[logits[i, pos, image_ids].argmax()]
                assert int(best) == token
    # batched generation equals one prompt at a time
    torch.testing.assert_close(adapter.generate_images(prompts[1:], 2, 4), codes[1:])


def test_vqgan_decoder_loads_the_release_weights(world_model, release) -> None:
    adapter = world_model.adapter
    state = torch.load(release[1] / "vqgan.ckpt", weights_only=True)["state_dict"]
    for name, value in adapter.decoder.state_dict().items():
        torch.testing.assert_close(value, state[f"decoder.{name}"], rtol=0, atol=0)
    pixels = adapter.decode_codes(np.zeros((3, 2, 4), np.int64))
    assert pixels.shape == (3, 32, 64, 3) and pixels.dtype == np.uint8
    assert (pixels[0] == pixels[1]).all()
    from worldvla_bench.integrations.worldvla.vqgan_decoder import decoder_from_state

    ddconfig = yaml.safe_load((release[1] / "vqgan.yaml").read_text())["model"]["params"]
    with pytest.raises(KeyError, match="decoder weights"):
        decoder_from_state(ddconfig["ddconfig"], {k: v for k, v in state.items()
                                                  if k != "decoder.conv_out.weight"})


def test_world_model_rolls_out_on_its_own_predictions(world_model) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 255, (2, 1, 32, 32, 3), dtype=np.uint8)
    actions = [rng.uniform(ACTION_MIN, ACTION_MAX, (4, 7)), rng.uniform(ACTION_MIN, ACTION_MAX,
                                                                         (2, 7))]
    single = [world_model.predict(frames[i], actions[i], "") for i in range(2)]
    assert single[0].shape == (4, 32, 32, 3) and single[0].dtype == np.uint8
    batched = world_model.predict_batch(list(frames), actions)
    for a, b in zip(single, batched, strict=True):  # same codes; pixels within float noise
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1
    # autoregressive: a shorter clip is the prefix of a longer one
    np.testing.assert_array_equal(world_model.predict(frames[0], actions[0][:2], ""),
                                  single[0][:2])
    # each step sees only the previous (predicted) frame and its action: the first prediction
    # is the image generated from the real frame's prompt
    adapter = world_model.adapter
    codes = adapter.encode_images(frames[0, 0])[0]
    first = adapter.generate_images([adapter.world_prompt([codes], actions[0][:1])], 2, 2)
    np.testing.assert_array_equal(adapter.decode_codes(first)[0], single[0][0])
    # other frame sizes: resized to the model's resolution and back
    big = world_model.predict(np.repeat(np.repeat(frames[0], 2, 1), 2, 2), actions[0][:1], "")
    assert big.shape == (1, 64, 64, 3) and big.dtype == np.uint8


def test_wm_eval_scores_the_released_world_model(release, tmp_path) -> None:
    import h5py
    import pandas as pd

    from worldvla_bench.cli import main

    data = tmp_path / "demos.hdf5"
    with h5py.File(data, "w") as handle:
        group = handle.create_group("data")
        group.attrs["problem_info"] = json.dumps({"language_instruction": LANGUAGE})
        for i in range(4):  # (the CLI's table needs >= 4 clips for its FVD GT-split column)
            rng = np.random.default_rng(10 + i)
            frames = rng.integers(0, 255, size=(11, 32, 32, 3), dtype=np.uint8)
            demo = group.create_group(f"demo_{i}")
            demo.create_dataset("obs/agentview_rgb", data=frames[:, ::-1, ::-1])
            demo.create_dataset("actions", data=rng.uniform(-0.5, 0.5, size=(11, 7)))
    out = tmp_path / "wm"
    assert main(["wm-eval", "--model", "worldvla_hf", "--model-arg",
                 f"checkpoint_dir={release[0]}", "--model-arg", f"tokenizer_dir={release[1]}",
                 "--model-arg", "resolution=32", "--data", str(data), "--horizons", "9",
                 "--out", str(out), "--no-progress"]) == 0
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["clips"] == 4 and summary["horizon"] == 9 and summary["fvd_n"] == 4
    assert np.isfinite(summary["fvd"]) and np.isfinite(summary["psnr"])
    assert 0 <= summary["ssim"] <= 1
    assert len(pd.read_csv(out / "per_clip.csv")) == 4


# --- sampled decoding (an option beyond the official greedy decoding) -----------------------


def test_adapter_sampling_is_seeded_per_row_and_greedy_at_its_limits(adapter) -> None:
    from worldvla_bench.integrations.worldvla.generation import Sampling

    rng = np.random.default_rng(12)
    texts = ["put the bowl on the plate", "open the drawer", "go"]
    prompts = [adapter.action_prompt(t, None, rng.integers(0, N_CODES, (2, 2))) for t in texts]
    hot = Sampling(temperature=1.0, seed=3)
    greedy = adapter.generate(prompts, max_new_tokens=12).tokens
    for limit in (None, Sampling(0), Sampling(1e-6), Sampling(2.0, top_k=1)):
        assert adapter.generate(prompts, max_new_tokens=12, sampling=limit).tokens == greedy
    sampled = adapter.generate(prompts, max_new_tokens=12, sampling=hot, seeds=[1, 2, 3]).tokens
    assert sampled != greedy
    assert adapter.generate(prompts, max_new_tokens=12, sampling=hot,
                            seeds=[1, 2, 3]).tokens == sampled
    other = adapter.generate(prompts, max_new_tokens=12, sampling=hot, seeds=[4, 5, 6]).tokens
    assert all(a != b for a, b in zip(sampled, other, strict=True))
    for i, prompt in enumerate(prompts):  # a row draws alone as in the batch
        assert adapter.generate([prompt], max_new_tokens=12, sampling=hot,
                                seeds=[i + 1]).tokens[0] == sampled[i]
    world = [adapter.world_prompt([rng.integers(0, N_CODES, (2, 4))],
                                  rng.uniform(ACTION_MIN, ACTION_MAX, (1, 7))) for _ in range(2)]
    codes = adapter.generate_images(world, 2, 4, sampling=hot, seeds=[7, 8])
    assert not torch.equal(codes, adapter.generate_images(world, 2, 4))
    assert torch.equal(adapter.generate_images(world, 2, 4, sampling=Sampling(1.0, top_k=1)),
                       adapter.generate_images(world, 2, 4))
    for i in range(2):
        assert torch.equal(adapter.generate_images(world[i:i + 1], 2, 4, sampling=hot,
                                                   seeds=[7 + i])[0], codes[i])


def test_hf_policy_samples_per_call_and_batches_as_one_at_a_time(release) -> None:
    from worldvla_bench.errors import BenchError
    from worldvla_bench.integrations.worldvla.hf_policy import WorldVLAHFPolicy
    from worldvla_bench.policy import EndEpisode

    rng = np.random.default_rng(13)
    contexts = [EpisodeContext("libero_goal", i, f"t{i}", text, i, 50 + i, 20)
                for i, text in enumerate(["open the drawer", "put the bowl on the plate"])]
    episodes = []
    for context in contexts:
        frames = rng.integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
        episodes.append([{"agentview_image": frames[c + 1], "instruction": context.instruction,
                          "agentview_history": frames[c:c + 1] if c else frames[:0]}
                         for c in range(2)])

    def one_at_a_time(policy) -> tuple[list[list[int]], list]:
        """Every call's tokens and answer (a chunk or an EndEpisode), episode by episode."""
        tokens, answers = [], []
        for context, episode in zip(contexts, episodes, strict=True):
            policy.reset(context)
            for observation in episode:
                try:
                    answers.append(policy.act(observation))
                except EndEpisode as end:
                    answers.append(end)
                tokens.append(policy.last_tokens)
        return tokens, answers

    def make(**kwargs) -> WorldVLAHFPolicy:
        return WorldVLAHFPolicy(str(release[0]), str(release[1]), resolution=256,
                                max_new_tokens=12, **kwargs)

    policy = make(temperature=1.0, top_k=100, seed=3)
    alone, alone_answers = one_at_a_time(policy)
    assert alone == one_at_a_time(policy)[0]  # a rerun replays the episodes
    assert alone != one_at_a_time(make(temperature=1.0, top_k=100, seed=4))[0]
    assert alone != one_at_a_time(make())[0]
    assert one_at_a_time(make(temperature=0))[0] == one_at_a_time(make())[0]
    for c in range(2):  # the episodes interleaved in batches, as a server sees them
        answers = policy.act_batch([e[c] for e in episodes], contexts)
        assert policy.last_tokens == alone[2 + c]  # the batch's last row: episode 1, call c
        for i, answer in enumerate(answers):
            one = alone_answers[2 * i + c]
            assert type(answer) is type(one)
            if isinstance(one, EndEpisode):
                assert answer.reason == one.reason
            else:
                np.testing.assert_array_equal(answer, one)
    with pytest.raises(BenchError, match="top_k must be"):
        make_policy("worldvla_hf", checkpoint_dir="/nonexistent", tokenizer_dir="/nonexistent",
                    top_k=0)


def test_hf_world_model_sampling_and_codes_feedback(world_model, release) -> None:
    from worldvla_bench.errors import BenchError
    from worldvla_bench.integrations.worldvla.hf_world_model import WorldVLAHFWorldModel
    from worldvla_bench.worldmodel.models import PredictionContext, make_world_model

    rng = np.random.default_rng(14)
    frames = list(rng.integers(0, 255, (2, 1, 32, 32, 3), dtype=np.uint8))
    actions = [rng.uniform(ACTION_MIN, ACTION_MAX, (3, 7)) for _ in range(2)]
    texts = ["open the drawer", "go"]
    contexts = [PredictionContext(meta={"episode": f"e{i}"}) for i in range(2)]

    def build(**kwargs) -> WorldVLAHFWorldModel:
        return WorldVLAHFWorldModel(str(release[0]), str(release[1]), resolution=32, **kwargs)

    hot = build(temperature=1.0, seed=3)
    batched = hot.predict_batch(frames, actions, texts, contexts)
    again = build(temperature=1.0, seed=3).predict_batch(frames, actions, texts, contexts)
    other = build(temperature=1.0, seed=4).predict_batch(frames, actions, texts, contexts)
    greedy = world_model.predict_batch(frames, actions, texts, contexts)
    for i in range(2):
        np.testing.assert_array_equal(batched[i], again[i])
        alone = hot.predict(frames[i], actions[i], texts[i], contexts[i])
        assert np.abs(alone.astype(int) - batched[i]).max() <= 1  # same codes; float noise
        assert np.mean(np.abs(batched[i].astype(int) - other[i]) > 1) > 0.01
        assert np.mean(np.abs(batched[i].astype(int) - greedy[i]) > 1) > 0.01
    assert build(temperature=0).predict_batch(frames, actions)[0].tolist() == \
        world_model.predict_batch(frames, actions)[0].tolist()
    codes = build(feedback="codes").predict_batch(frames, actions)
    pixels = world_model.predict_batch(frames, actions)
    for a, b in zip(codes, pixels, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a[0], b[0])  # the first step reads the real frame
    with pytest.raises(BenchError, match="feedback must be one of"):
        make_world_model("worldvla_hf", checkpoint_dir="/nonexistent",
                         tokenizer_dir="/nonexistent", feedback="bits")
