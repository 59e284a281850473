"""Tests of the released-checkpoint adapter (`chameleon_adapter`) and the `worldvla_hf` policy.

A tiny, randomly initialised Chameleon (2 layers, hidden 64, vocabulary 16384 so that the
reserved-token ids of the release fit) and a tiny Chameleon VQ-GAN are written in the release's
layout (a `save_pretrained` checkpoint directory; a tokenizer directory with `vqgan.yaml`,
`vqgan.ckpt` and `text_tokenizer.json`) and loaded offline. The tiny vocabulary puts
`<reservedNNNNN>` at id NNNNN + 4 (so end of turn 8710, action begin 10004, action end 15004)
and the action values at the end of the vocabulary (the adapter's default assumption).
"""

from __future__ import annotations

import json
import os
import shutil
import string
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from worldvla_bench.integrations.worldvla.action_tokenizer import ACTION_MAX, ACTION_MIN  # noqa: E402
from worldvla_bench.integrations.worldvla.chameleon_adapter import (  # noqa: E402
    ActionValueIds,
    ChameleonWorldVLA,
    decode_actions,
    encode_actions,
    image_tokens,
    instruction_from_task_name,
    load_released,
)
from worldvla_bench.policy import EpisodeContext, make_policy  # noqa: E402

VOCAB_SIZE = 16384
N_CODES = 64
RESERVED = [8706, 8799, 10000, 15000, *range(8801, 8833)]
CHARS = sorted(set(string.ascii_letters + string.digits + " ?.,'-"))
EOT, BOA, EOA, BOI, EOI, NEWLINE = 8710, 10004, 15004, 101, 100, 8803
SPAN = ACTION_MAX - ACTION_MIN
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
    state = dict(vq.state_dict())
    state["decoder.conv_in.weight"] = torch.zeros(1)  # dropped on load, as in the release
    state["loss.logvar"] = torch.zeros(1)
    torch.save({"state_dict": state}, tok / "vqgan.ckpt")
    ddconfig = {"double_z": False, "z_channels": 8, "resolution": 32, "in_channels": 3,
                "out_ch": 3, "ch": 32, "ch_mult": [1, 1, 1, 1, 1], "num_res_blocks": 1,
                "attn_resolutions": [], "dropout": 0.0}
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


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    assert (ids.values.low, ids.values.high) == (VOCAB_SIZE - 256, VOCAB_SIZE - 1)
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
        return [BOI, 8800 + h + 4, 8800 + w + 4, *rows, EOI]

    assert prompt == [0, *text, *image(prev), *image(cur), EOT]
    assert image_tokens(np.zeros((1, 3), int), adapter.ids) == [BOI, 8805, 8807, 4, 4, 4,
                                                                NEWLINE, EOI]
    codes = adapter.encode_images(np.random.default_rng(0).integers(0, 255, (3, 32, 48, 3)))
    assert codes.shape == (3, 2, 3) and 0 <= int(codes.min()) and int(codes.max()) < N_CODES
    with pytest.raises(ValueError, match="multiples of 16"):
        adapter.encode_images(np.zeros((1, 30, 32, 3), np.uint8))


def test_decode_known_tokens(adapter) -> None:
    ids = adapter.ids
    v = VOCAB_SIZE - 1  # id of bin 0
    bins = [0, 254, 127, 1, 200, 30, 100]
    block = [BOA, *[v - b for b in bins], EOA]
    centres = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2
    expected = (centres[bins] + 1) / 2 * SPAN + ACTION_MIN
    tokens = [205, *block, BOA, v, v, EOA, *block[:-1], 4, *block, EOT]  # junk, broken blocks
    out = decode_actions(tokens, ids)
    np.testing.assert_allclose(out, np.stack([expected, expected]))
    assert decode_actions([EOT], ids).shape == (0, 7)
    # ids vocab_size - 256 and - 255 both mean the last bin; the gripper at +-0.996
    edge = decode_actions([BOA, *[VOCAB_SIZE - 256] * 3, *[VOCAB_SIZE - 255] * 4, EOA], ids)
    np.testing.assert_allclose(edge[0], (centres[254] + 1) / 2 * SPAN + ACTION_MIN)
    assert abs(abs(edge[0, 6]) - 0.996) < 1e-3
    # round trip of random actions within half a bin
    actions = np.random.default_rng(1).uniform(ACTION_MIN, ACTION_MAX, (5, 7))
    encoded = encode_actions(actions, ids)
    assert len(encoded) == 45 and encoded[0] == BOA and encoded[8] == EOA
    assert np.all(np.abs(decode_actions(encoded, ids) - actions) <= SPAN / 255 / 2 + 1e-9)
    # the other scheme, should the released ids turn out to be an offset range
    offset = ActionValueIds("offset", first_id=10005).resolve(VOCAB_SIZE)
    assert offset.to_ids(np.array([0, 254])).tolist() == [10005, 10259]
    assert offset.to_bins(np.array([10005, 10259])).tolist() == [0, 254]


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
    finite = masked[0, n + 1:] > -1e30  # image-code logits are suppressed by Chameleon
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
    values = [VOCAB_SIZE - 1 - b for b in bins]
    program_bigram(model.model, [EOT, BOA, *values, EOA, EOT])
    rng = np.random.default_rng(4)
    prompts = [model.action_prompt(t, rng.integers(0, N_CODES, (2, 2)),
                                   rng.integers(0, N_CODES, (2, 2))) for t in ("a", "bb c")]
    out = model.generate(prompts, max_new_tokens=300)
    assert out.tokens == [[BOA, *values, EOA, EOT]] * 2
    centres = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2
    for chunk in out.actions:
        np.testing.assert_allclose(chunk, ((centres[bins] + 1) / 2 * SPAN + ACTION_MIN)[None])


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
    values = [VOCAB_SIZE - 1 - b for b in bins]
    program_bigram(policy.adapter.model, [EOT, BOA, *values, EOA, BOA])
    policy.max_new_tokens = 18
    # observations as the engine prepares them (profile `worldvla` at the checkpoint's 256 px)
    assert policy.image_size == 256
    frames = np.random.default_rng(5).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    chunk = policy.act({"agentview_image": frames[1], "agentview_history": frames[:1],
                        "instruction": LANGUAGE})
    assert policy.last_tokens == [BOA, *values, EOA] * 2
    centres = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2
    expected = (centres[bins] + 1) / 2 * SPAN + ACTION_MIN
    np.testing.assert_allclose(chunk, np.stack([expected, expected]))  # both blocks, one call
    assert policy.stats["chunks"] == 1 and policy.stats["blocks"] == 2
