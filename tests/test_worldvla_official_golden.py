"""Our released-checkpoint path against the official WorldVLA code's own outputs.

`tests/fixtures/worldvla_official/` was written by tests/fixtures/make_worldvla_official_golden.py,
which ran the official modules (github alibaba-damo-academy/WorldVLA 6a9af08, transformers
4.48.0, float32 on CPU) on a tiny random checkpoint saved by the official
`ChameleonXLLMXForConditionalGeneration_ck` (q/k-norm in its (1, head_dim) layout) and a tiny
VQ-GAN saved by the official `VQModel`. Here that checkpoint goes through our `load_released`
and every recorded output is recomputed by our code paths (no official code needed): VQ codes,
action prompts, teacher-forced logits of the generated answers, greedy picks, decoded actions,
free greedy decoding, the world-model prompt, generated image codes and decoded pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from worldvla_bench.integrations.worldvla.chameleon_adapter import (  # noqa: E402
    ChameleonWorldVLA,
    load_released,
)

FIXTURE = Path(__file__).parent / "fixtures" / "worldvla_official"
TASK = "put the black bowl on the plate"  # the script's task description
VALUE_IDS = np.arange(10006, 10261)  # the grammar's value ids (bins 0..254)
# measured 2026-12-03 (torch 2.14.1; transformers 5.25 here, 4.48 there): logits within 9.6e-7
# (0.012 is the smallest gap between the two best value ids); without the action mask the answer
# logits move by 2.5 to 4.2; decoded actions within 6.8e-8; 8 of 27648 pixel values one level off
LOGIT_ATOL = 1e-5


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "golden.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def adapter() -> Iterator[ChameleonWorldVLA]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_released(FIXTURE / "checkpoint", FIXTURE / "tokenizer", dtype="float32",
                        decoder=True)
    torch.set_num_threads(threads)


def rows_at(logits: torch.Tensor, ids: np.ndarray) -> np.ndarray:
    return logits[..., torch.as_tensor(ids)].numpy()


def test_the_official_layout_is_what_we_load(adapter) -> None:
    from safetensors import safe_open

    with safe_open(str(FIXTURE / "checkpoint" / "model.safetensors"), framework="pt") as f:
        saved = f.get_tensor("model.layers.0.self_attn.q_norm.weight").float()
        assert tuple(saved.shape) == (1, 8)  # (model_parallel_size, head_dim)
    loaded = adapter.model.get_parameter("model.layers.0.self_attn.q_norm.weight")
    assert tuple(loaded.shape) == (4, 8)
    torch.testing.assert_close(loaded, saved.expand(4, 8), rtol=0, atol=0)


def test_vq_codes_and_action_prompts(adapter, golden) -> None:
    codes = adapter.encode_images(golden["frames"][:2])
    np.testing.assert_array_equal(codes.numpy(), golden["codes"])
    # first query: the current frame only; later: the previous env step's frame, then it
    assert adapter.action_prompt(TASK, None, codes[1]) == golden["first_prompt"].tolist()
    assert adapter.action_prompt(TASK, codes[0], codes[1]) == golden["later_prompt"].tolist()


@pytest.mark.parametrize("name", ["first", "later"])
def test_answer_logits_greedy_picks_and_actions(adapter, golden, name) -> None:
    prompt, answer = golden[f"{name}_prompt"].tolist(), golden[f"{name}_answer"].tolist()
    n = len(answer)
    logits = adapter.teacher_forced_logits([prompt], [answer])[0, :n]  # cached, as generation
    np.testing.assert_allclose(rows_at(logits, golden["logit_ids"]), golden[f"{name}_logits"],
                               rtol=0, atol=LOGIT_ATOL)
    # the official action mask matters: without it the second and third blocks move
    causal = adapter.teacher_forced_logits([prompt], [answer], action_mask=False)[0, :n]
    assert np.abs(rows_at(causal[10:], golden["logit_ids"])
                  - golden[f"{name}_logits"][10:]).max() > 0.1
    # every value the grammar left to the model is our greedy pick among the value ids
    for k, token in enumerate(answer):
        if token in set(VALUE_IDS.tolist()):
            assert int(VALUE_IDS[int(logits[k, VALUE_IDS].argmax())]) == token
    chunk, broken = adapter.ids.actions.decode_chunk(answer)
    assert not broken and chunk.shape == (3, 7)
    # official: float32 bin centres (torch.linspace); ours float64
    np.testing.assert_allclose(chunk, golden[f"{name}_actions"], rtol=0, atol=1e-6)


def test_free_greedy_decoding(adapter, golden) -> None:
    prompt = golden["later_prompt"].tolist()
    out = adapter.generate([prompt], max_new_tokens=len(golden["free_tokens"]))
    assert out.tokens[0] == golden["free_tokens"].tolist()
    logits = adapter.teacher_forced_logits([prompt], [out.tokens[0]])[0, :-1]
    np.testing.assert_allclose(rows_at(logits, golden["logit_ids"]), golden["free_logits"],
                               rtol=0, atol=LOGIT_ATOL)


def test_world_model_prompt_codes_and_pixels(adapter, golden) -> None:
    codes = adapter.encode_images(golden["frames"][1])
    prompt = adapter.world_prompt([codes[0]], golden["world_action"][None])
    assert prompt == golden["world_prompt"].tolist()
    h, w = golden["world_codes"].shape
    generated = adapter.generate_images([prompt], h, w)
    np.testing.assert_array_equal(generated[0].numpy(), golden["world_codes"])
    answer = golden["world_answer"].tolist()
    logits = adapter.teacher_forced_logits([prompt], [answer[:-1]])[0]
    np.testing.assert_allclose(rows_at(logits, golden["logit_ids"]), golden["world_logits"],
                               rtol=0, atol=LOGIT_ATOL)
    pixels = adapter.decode_codes(golden["world_codes"][None])[0]
    diff = np.abs(pixels.astype(int) - golden["world_pixels"])
    # float noise at the uint8 truncation: at most one level, in a few pixels
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
