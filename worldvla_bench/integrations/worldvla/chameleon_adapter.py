"""Released WorldVLA checkpoints through `transformers`' Chameleon classes (extra `hf`).

The released checkpoints (`Alibaba-DAMO-Academy/WorldVLA`: `model_256/*`, `model_512/*`) are
`save_pretrained` directories of a (modified) Chameleon; the VQ-GAN lives outside them, in
`chameleon/tokenizer` (`vqgan.yaml` + `vqgan.ckpt`, the original Chameleon format, plus
`text_tokenizer.json`). This module loads both from LOCAL directories (never from a hub),
builds WorldVLA's prompts with the released vocabulary, runs batched, cached, greedy generation
with WorldVLA's action attention mask as a 4-d additive mask, decodes the action blocks and
generates images. Every constant is the official code's (github alibaba-damo-academy/WorldVLA,
paths below relative to its `worldvla/`), cited next to it; docs/worldvla_checkpoints.md has
the table.

Action model (libero_util/Chameleon_utils.py get_action_Chameleon_dis_awm_ck, `his` =
'2h_1a_img_only' as every exps_*/eval_*.sh passes; data/convertsation.py Conversation)::

    <s>, text("What action should the robot take to {instruction}?"),
    [image(previous env step's frame)], image(current frame), <reserved08706>
    | blocks (<reserved10000>, value ids, <reserved15000>) ..., <reserved08706>

The previous frame is absent on the first query of an episode (the history is empty).

World model (data/world_model_conv_generation.py main, trained with ``--his 1`` per the README)::

    <s>, text("Generate the next image based on the provided sequence of historical images and
    corresponding actions."), (image(frame), action block) x history, <reserved08706>
    | image(next frame), <reserved08706>

Images (data/item_processor.py FlexARItemProcessor_Action.process_image)::

    image(codes h x w) = <racm3:break>, grid(h / 2), grid(w / 2),
                         row 0 codes, <reserved08799>, ..., row h-1 codes, <reserved08799>, <eoss>

with grid(n) = ``<reserved{8800 + n:05d}>`` (id 8804 + n) counting 32-pixel patches (16-pixel
VQ codes, so n = codes / 2) and a code c written as the BPE token "IMGIMG...Z" of c (Chameleon's
image vocabulary mapping). Action values: `action_tokenizer.RELEASED_LAYOUT`.

The action mask: every action block after the last image attends to the prompt and its own
earlier tokens, never to earlier action blocks (`worldvla_bench.integrations.worldvla.masks`,
reused here through a role map of the four structural tokens; the official
model/modeling_xllmx_chameleon_ck.py generate_att_mask_3). The mask row of every new token is
recomputed at every cached step and handed to the model as a 4-d float mask (B, 1, Tq, Tk).
Flash-attention implementations ignore a custom 4-d mask, so only 'sdpa' and 'eager' are
accepted. Logits are computed from the hidden states with the LM head, without the image-token
suppression of `transformers`' Chameleon: the official eval runs with ``--unmask_image_logits``.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.action_tokenizer import (
    RELEASED_ACTION_BEGIN,
    RELEASED_ACTION_END,
    RELEASED_LAYOUT,
    ActionTokenizer,
)
from worldvla_bench.integrations.worldvla.generation import Sampling, choose_tokens, row_generators
from worldvla_bench.integrations.worldvla.masks import attention_mask, isolation_start, position_ids
from worldvla_bench.integrations.worldvla.sequence import ACTION_PROMPT
from worldvla_bench.integrations.worldvla.vocab import Vocab

if TYPE_CHECKING:  # pragma: no cover
    from transformers import ChameleonForConditionalGeneration, ChameleonVQVAE

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
INSTRUCTION_SOURCES = ("language", "filename")
IMAGE_TOKEN_PREFIX = "IMGIMG"
# eval_solver_libero_256.py Solver.get_args_parser: --action_steps default 25 (no eval script
# passes it)
ACTION_STEPS = 25
# libero_util/Chameleon_utils.py get_action_Chameleon_dis_awm_ck: max_new_tokens=action_steps*12
TOKENS_PER_ACTION_STEP = 12
#: WorldVLA's eval cap on new tokens per decoding call (12 * 25 = 300)
MAX_NEW_TOKENS = TOKENS_PER_ACTION_STEP * ACTION_STEPS
# data/convertsation.py Conversation.sep_token "<reserved08706>"; Chameleon_utils.py
# get_action_Chameleon_dis_awm_ck eos_token_id=[8710]
RELEASED_END_OF_TURN = 8710
# data/item_processor.py FlexARItemProcessor_Action.image_start_token "<racm3:break>"; the id is
# hard-coded in model/modeling_xllmx_chameleon_ck.py generate_att_mask_3 (image_start 8197)
RELEASED_IMAGE_BEGIN = 8197
# item_processor.py image_end_token "<eoss>"; generate_att_mask_3 (image_end 8196)
RELEASED_IMAGE_END = 8196
# item_processor.py new_line_token "<reserved08799>" (id 8799 + 4, as 8706 -> 8710)
RELEASED_IMAGE_NEWLINE = 8803
# item_processor.py get_n_grids_token: f"<reserved{8800 + n:05d}>"; decode_image reads
# n = id - 8804
GRID_NAME_BASE = 8800
RELEASED_GRID_BASE_ID = 8804
# item_processor.py FlexARItemProcessor_Action.__init__ patch_size = 32 (grid counts patches);
# process_image reshapes the codes to (H // 16, W // 16)
GRID_PATCH = 32
CODE_PATCH = 16
# Chameleon_utils.py get_action_Chameleon_dis_awm_ck (his_type '2h_1a_img_only'): his_img[-1:]
ACTION_HISTORY_FRAMES = 1
# data/world_model_conv_generation.py main: the human turn of a world-model conversation
RELEASED_WORLD_PROMPT = ("Generate the next image based on the provided sequence of historical "
                         "images and corresponding actions.")
# README.md "python world_model_conv_generation.py ... --his 1": one (image, action) pair
WORLD_HISTORY = 1


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class ReleasedVocab:
    """Names of the structural tokens in the released vocabulary (looked up by name) and the
    ids the official code hard-codes for them (checked on load unless `check_official_ids`
    is False)."""

    bos: str | None = "<s>"  # xllmx/model/tokenizer.py Tokenizer.encode(bos=True): bos_token_id
    pad: str = "<pad>"
    end_of_turn: str = "<reserved08706>"  # data/convertsation.py Conversation.sep_token
    action_begin: str = "<reserved10000>"  # item_processor.py action_start_token
    action_end: str = "<reserved15000>"  # item_processor.py action_end_token
    image_begin: str = "<racm3:break>"  # item_processor.py image_start_token
    image_end: str = "<eoss>"  # item_processor.py image_end_token
    image_newline: str = "<reserved08799>"  # item_processor.py new_line_token
    #: grid(n) = f"<reserved{grid_base + n:05d}>" (item_processor.py get_n_grids_token)
    grid_base: int = GRID_NAME_BASE
    check_official_ids: bool = True

    def grid_name(self, n: int) -> str:
        return f"<reserved{self.grid_base + n:05d}>"


OFFICIAL_IDS = {"eot": RELEASED_END_OF_TURN, "boa": RELEASED_ACTION_BEGIN,
                "eoa": RELEASED_ACTION_END, "boi": RELEASED_IMAGE_BEGIN,
                "eoi": RELEASED_IMAGE_END, "newline": RELEASED_IMAGE_NEWLINE}


@dataclass(frozen=True)
class TokenIds:
    """Resolved ids of one vocabulary; build with `TokenIds.from_vocab`."""

    bos: int | None
    pad: int
    eot: int
    boa: int
    eoa: int
    boi: int
    eoi: int
    newline: int
    grids: dict[int, int]
    img2bpe: torch.Tensor  # (codebook,) long: VQ code -> BPE id
    bpe2img: dict[int, int]
    actions: ActionTokenizer

    @classmethod
    def from_vocab(cls, vocab: dict[str, int], model_vocab_size: int,
                   names: ReleasedVocab | None = None) -> TokenIds:
        names = names or ReleasedVocab()

        def get(name: str) -> int:
            if name not in vocab:
                raise KeyError(f"token {name!r} is not in the checkpoint's vocabulary")
            return int(vocab[name])

        bpe2img = image_code_map(vocab)
        if not bpe2img:
            raise KeyError(f"the vocabulary has no image tokens ({IMAGE_TOKEN_PREFIX}...)")
        img2bpe = torch.zeros(max(bpe2img.values()) + 1, dtype=torch.long)
        for bpe, code in bpe2img.items():
            img2bpe[code] = bpe
        grids = {n: int(vocab[names.grid_name(n)]) for n in range(1, 129)
                 if names.grid_name(n) in vocab}
        boa, eoa = get(names.action_begin), get(names.action_end)
        # the value ids follow the begin id (item_processor.py process_action)
        layout = dataclasses.replace(RELEASED_LAYOUT, begin=boa, end=eoa, first_value=boa + 2)
        ids = cls(
            bos=get(names.bos) if names.bos is not None else None,
            pad=get(names.pad),
            eot=get(names.end_of_turn),
            boa=boa,
            eoa=eoa,
            boi=get(names.image_begin),
            eoi=get(names.image_end),
            newline=get(names.image_newline),
            grids=grids,
            img2bpe=img2bpe,
            bpe2img=bpe2img,
            actions=ActionTokenizer(layout),
        )
        ids.check(model_vocab_size, official=names.check_official_ids)
        return ids

    @property
    def structural(self) -> dict[str, int]:
        return {"eot": self.eot, "boa": self.boa, "eoa": self.eoa, "boi": self.boi,
                "eoi": self.eoi, "newline": self.newline}

    def check(self, model_vocab_size: int, official: bool = True) -> None:
        """Ids inside the model's vocabulary, no collisions, and (`official`) the ids the
        official code hard-codes (a vocabulary that differs would not run there either)."""
        layout = self.actions.layout
        for name, token in self.structural.items():
            if not 0 <= token < model_vocab_size:
                raise ValueError(f"{name} id {token} outside the model vocabulary "
                                 f"({model_vocab_size})")
            if layout.is_value(token) or token in self.bpe2img:
                raise ValueError(f"{name} id {token} collides with action value or image ids")
            if official and token != OFFICIAL_IDS[name]:
                raise ValueError(f"{name} id {token} differs from the official id "
                                 f"{OFFICIAL_IDS[name]}")
        if official:
            bad = {n: t for n, t in self.grids.items() if t != RELEASED_GRID_BASE_ID + n}
            if bad:
                raise ValueError(f"grid ids {bad} differ from the official 8804 + n")
        if layout.first_value + 255 >= model_vocab_size:
            raise ValueError(f"action value ids {layout.first_value}..{layout.first_value + 255} "
                             f"outside the model vocabulary ({model_vocab_size})")

    def grid(self, n: int) -> int:
        if n not in self.grids:
            raise KeyError(f"no grid token for {n} patches")
        return self.grids[n]


def image_code_map(vocab: dict[str, int]) -> dict[int, int]:
    """BPE id -> VQ code of the "IMGIMG<letters>Z" tokens (Chameleon: letter A..J = digit;
    model/chameleon_vae_ori/vocab.py VocabTranslation.bpe2img)."""
    digits = {chr(ord("A") + i): str(i) for i in range(10)}
    out: dict[int, int] = {}
    for name, token in vocab.items():
        if name.startswith(IMAGE_TOKEN_PREFIX):
            out[int(token)] = int("".join(digits.get(c, c) for c in name[len("IMGIMG"):-1]))
    return out


# --------------------------------------------------------------------------- prompts, decoding


def instruction_from_task_name(task_name: str) -> str:
    """The instruction libero_10 checkpoints were trained with: the task's file name with
    underscores as spaces ("LIVING_ROOM_SCENE2_put_both_..." -> "LIVING ROOM SCENE2 put both
    ..."), without a ".bddl"/".hdf5" extension or a "_demo" suffix."""
    name = Path(task_name).name
    for suffix in (".bddl", ".hdf5"):
        name = name.removesuffix(suffix)
    return name.removesuffix("_demo").replace("_", " ").strip()


def grid_patches(n_codes: int) -> int:
    """Grid token count of an image side of `n_codes` VQ codes (32-pixel patches)."""
    if n_codes < 2 or n_codes * CODE_PATCH % GRID_PATCH:
        raise ValueError(f"an image side of {n_codes} codes is not a whole number of "
                         f"{GRID_PATCH}-pixel patches")
    return n_codes * CODE_PATCH // GRID_PATCH


def image_tokens(codes: np.ndarray | torch.Tensor, ids: TokenIds) -> list[int]:
    """Released layout of one (h, w) VQ code grid (item_processor.py process_image)."""
    grid = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if grid.ndim != 2:
        raise ValueError(f"expected an (h, w) code grid, got shape {tuple(grid.shape)}")
    h, w = grid.shape
    bpe = ids.img2bpe[grid]
    rows = torch.cat([bpe, torch.full((h, 1), ids.newline, dtype=torch.long)], 1)
    return [ids.boi, ids.grid(grid_patches(h)), ids.grid(grid_patches(w)),
            *rows.flatten().tolist(), ids.eoi]


def image_codes(tokens: Sequence[int], ids: TokenIds) -> np.ndarray:
    """Inverse of `image_tokens` (item_processor.py decode_image): (h, w) VQ codes."""
    toks = [int(t) for t in tokens]
    if toks and toks[0] == ids.boi:
        toks = toks[1:]
    if toks and toks[-1] == ids.eoi:
        toks = toks[:-1]
    inverse = {token: n for n, token in ids.grids.items()}
    if len(toks) < 2 or toks[0] not in inverse or toks[1] not in inverse:
        raise ValueError("an image starts with two grid tokens")
    h, w = inverse[toks[0]] * GRID_PATCH // CODE_PATCH, inverse[toks[1]] * GRID_PATCH // CODE_PATCH
    body = np.array(toks[2:], dtype=np.int64)
    if body.size != h * (w + 1):
        raise ValueError(f"expected {h * (w + 1)} image tokens after the grid, got {body.size}")
    rows = body.reshape(h, w + 1)
    if np.any(rows[:, -1] != ids.newline):
        raise ValueError("every image row ends with the new-line token")
    return np.vectorize(ids.bpe2img.__getitem__, otypes=[np.int64])(rows[:, :-1])


def encode_actions(actions: np.ndarray, ids: TokenIds) -> list[int]:
    """Action blocks of a (K, 7) chunk (env units) with the released ids
    (item_processor.py process_action)."""
    return ids.actions.encode(np.atleast_2d(np.asarray(actions, dtype=np.float64)))


def decode_actions(tokens: Sequence[int], ids: TokenIds) -> np.ndarray:
    """(K, 7) float64 actions (env units, bin centres) the official eval would execute from
    `tokens`: its blocks in order, up to the first it cannot execute (see
    `ActionTokenizer.decode_chunk`; `decode_chunk` also says whether one was met)."""
    return ids.actions.decode_chunk(tokens)[0]


# --------------------------------------------------------------------------- masks


def structure_roles(input_ids: torch.Tensor, ids: TokenIds) -> torch.Tensor:
    """Map released ids to our `Vocab` roles (boa, eoa, image begin/end; 0 otherwise) so the
    mask functions of `masks` apply unchanged."""
    roles = torch.zeros_like(input_ids)
    for token, role in ((ids.boa, Vocab.BOA), (ids.eoa, Vocab.EOA),
                        (ids.boi, Vocab.IMAGE_BEGIN), (ids.eoi, Vocab.IMAGE_END)):
        roles = torch.where(input_ids == token, torch.full_like(roles, role), roles)
    return roles


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean (B, Tq, Tk) -> additive float (B, 1, Tq, Tk): 0 allowed, dtype's min elsewhere."""
    out = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return out.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def check_attn_implementation(name: str) -> str:
    if name not in ATTN_IMPLEMENTATIONS:
        hint = (" Flash-attention kernels take no custom 4-d mask, so WorldVLA's action "
                "attention mask would be silently dropped." if "flash" in str(name) else "")
        raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                         f"got {name!r}.{hint}")
    return name


# --------------------------------------------------------------------------- the model


def mask_fault(prompt: Sequence[int], new: Sequence[int], ids: TokenIds) -> str | None:
    """Why the official generation would raise on this answer, or None.

    model/modeling_xllmx_chameleon_ck.py generate_att_mask_3 runs on every sequence the
    official generation feeds the model (the prompt and every new token but the last) and
    raises "Mismatched action (image) start and end tokens" where the begin and end counts
    of actions, or of images, differ by two or more (one more begin is closed at the end, one
    more end is dropped). val_libero catches it and ends the episode, before any action ran.
    """
    fed = [*prompt, *list(new)[:-1]]
    for what, begin, end in (("action", ids.boa, ids.eoa), ("image", ids.boi, ids.eoi)):
        diff = 0
        for token in fed:
            diff += (token == begin) - (token == end)
            if abs(diff) >= 2:
                return f"mismatched {what} begin and end tokens (the official mask raises)"
    return None


@dataclass
class HFGeneration:
    """new tokens per sample (up to and including end of turn), their (K, 7) chunks (the
    blocks the official eval would execute), and why the official eval would end the episode
    after them (`faults`: None where it goes on; `mask_fault`, then
    `ActionTokenizer.decode_chunk`); the prompts."""

    tokens: list[list[int]]
    actions: list[np.ndarray]
    faults: list[str | None] = dataclasses.field(default_factory=list)
    prompts: list[list[int]] = dataclasses.field(default_factory=list)

    @property
    def broken(self) -> list[bool]:
        """Whether the official eval would end the episode after each sample's chunk."""
        return [fault is not None for fault in self.faults]


class ChameleonWorldVLA:
    """A released WorldVLA checkpoint: Chameleon transformer, VQ-GAN, text tokenizer, ids.

    `decoder` (a `vqgan_decoder.VQGANDecoder`) turns generated codes into pixels; None when
    only actions are decoded. `mask_image_logits` False (the official eval's
    ``--unmask_image_logits``) lets action decoding pick any id, image codes included.
    """

    def __init__(self, model: ChameleonForConditionalGeneration, vq: ChameleonVQVAE,
                 text_tokenizer: Any, ids: TokenIds, decoder: Any = None,
                 mask_image_logits: bool = False) -> None:
        self.model = model.eval()
        self.vq = vq.eval()
        self.decoder = decoder.eval() if decoder is not None else None
        self.text_tokenizer = text_tokenizer
        self.ids = ids
        self.mask_image_logits = bool(mask_image_logits)
        params = inspect.signature(model.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._cache_position = "cache_position" in params
        self._image_ids = torch.tensor(sorted(ids.bpe2img), dtype=torch.long)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def vq_downsample(self) -> int:
        return 2 ** (len(self.vq.config.channel_multiplier) - 1)

    # -- prompts
    def encode_text(self, text: str) -> list[int]:
        return list(self.text_tokenizer.encode(text, add_special_tokens=False).ids)

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) or (H, W, 3) upright frames -> VQ codes (B, H/16, W/16).

        Pixels scaled to [-1, 1] as model/chameleon_vae_ori/image_tokenizer.py
        img_tokens_from_pil does (x / 255 * 2 - 1).
        """
        array = np.asarray(images, dtype=np.uint8)
        array = array[None] if array.ndim == 3 else array
        d = self.vq_downsample
        if array.ndim != 4 or array.shape[-1] != 3 or array.shape[1] % d or array.shape[2] % d:
            raise ValueError(f"expected (B, H, W, 3) images with H, W multiples of {d}, "
                             f"got {array.shape}")
        vq_param = next(self.vq.parameters())
        x = torch.from_numpy(np.ascontiguousarray(array / 255.0 * 2.0 - 1.0)).permute(0, 3, 1, 2)
        x = x.to(device=vq_param.device, dtype=vq_param.dtype)  # float64 math, then cast, as there
        out = self.vq.encode(x)
        codes = out[2] if isinstance(out, tuple) else out.image_tokens
        b, h, w = array.shape[0], array.shape[1] // d, array.shape[2] // d
        return codes.reshape(b, h, w).long().cpu()

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor | np.ndarray) -> np.ndarray:
        """VQ codes (B, h, w) -> uint8 frames (B, 16h, 16w, 3) with the VQ-GAN decoder
        (image_tokenizer.py pil_from_img_toks and _pil_from_chw_tensor: clamp to [-1, 1],
        (x + 1) / 2 * 255, truncated to uint8)."""
        if self.decoder is None:
            raise RuntimeError("no VQ-GAN decoder loaded (load_released(..., decoder=True))")
        c = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        param = next(self.decoder.parameters())
        quant = self.vq.quantize.embedding(c.to(param.device))  # (B, h, w, C)
        quant = quant.permute(0, 3, 1, 2).to(param.dtype)
        pixels = self.decoder(self.vq.post_quant_conv(quant))
        pixels = (pixels.clamp(-1.0, 1.0) + 1.0) / 2.0
        return (pixels.permute(0, 2, 3, 1).float().cpu().numpy() * 255).astype(np.uint8)

    def _bos(self) -> list[int]:
        return [self.ids.bos] if self.ids.bos is not None else []

    def action_prompt(self, instruction: str, prev_codes: Any | None, cur_codes: Any) -> list[int]:
        """<s>, text, [image(previous)], image(current), end of turn; `prev_codes` None on
        the first query of an episode (get_action_Chameleon_dis_awm_ck: empty history)."""
        text = self.encode_text(ACTION_PROMPT.format(instruction=instruction))
        prev = image_tokens(prev_codes, self.ids) if prev_codes is not None else []
        return [*self._bos(), *text, *prev, *image_tokens(cur_codes, self.ids), self.ids.eot]

    def world_prompt(self, codes: Sequence[Any], actions: np.ndarray) -> list[int]:
        """<s>, text, (image, action block) per history step, end of turn
        (world_model_conv_generation.py main); `codes` and `actions` (H, 7) pair up."""
        acts = np.atleast_2d(np.asarray(actions, dtype=np.float64))
        if len(codes) != len(acts) or not len(acts):
            raise ValueError("one action per history frame, at least one")
        body: list[int] = []
        for frame, action in zip(codes, acts, strict=True):
            body += [*image_tokens(frame, self.ids), *self.ids.actions.encode(action)]
        return [*self._bos(), *self.encode_text(RELEASED_WORLD_PROMPT), *body, self.ids.eot]

    # -- forward passes
    def _step(self, seq: torch.Tensor, valid: torch.Tensor, isolate_from: torch.Tensor | None,
              cache: Any, start: int, keep_last: bool = True) -> tuple[torch.Tensor, Any]:
        """Logits of positions start..T-1 (only the last if `keep_last`) and the new cache.

        The LM head is applied here, so image-code logits are left as the model gives them
        unless `mask_image_logits` (model/chameleon/modeling_chameleon.py forward).
        """
        roles = structure_roles(seq, self.ids)
        allowed = attention_mask(roles, valid, action_mask=isolate_from is not None,
                                 isolate_from=isolate_from, query_start=start)
        kwargs: dict[str, Any] = {
            "input_ids": seq[:, start:],
            "attention_mask": additive_mask(allowed, self.dtype),
            "position_ids": position_ids(valid)[:, start:],
            "use_cache": True,
            self._cache_kw: cache,
        }
        if self._cache_position:
            kwargs["cache_position"] = torch.arange(start, seq.shape[1], device=seq.device)
        out = self.model.model(**kwargs)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        hidden = out.last_hidden_state[:, -1:] if keep_last else out.last_hidden_state
        logits = self.model.lm_head(hidden).float()
        if self.mask_image_logits:
            logits[..., self._image_ids.to(logits.device)] = torch.finfo(logits.dtype).min
        return (logits[:, -1] if keep_last else logits), new_cache

    def _prepare(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        if not prompts:
            raise ValueError("no prompts")
        t = max(len(p) for p in prompts)
        seq = torch.full((len(prompts), t), self.ids.pad, dtype=torch.long)
        valid = torch.zeros((len(prompts), t), dtype=torch.bool)
        for i, p in enumerate(prompts):  # left padding
            seq[i, t - len(p):] = torch.tensor(list(p), dtype=torch.long)
            valid[i, t - len(p):] = True
        return seq.to(self.device), valid.to(self.device)

    def _isolation(self, seq: torch.Tensor, action_mask: bool) -> torch.Tensor | None:
        return isolation_start(structure_roles(seq, self.ids)) if action_mask else None

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = MAX_NEW_TOKENS,
                 action_mask: bool = True, sampling: Sampling | None = None,
                 seeds: Sequence[int] | None = None) -> HFGeneration:
        """Cached, batched: action blocks until end of turn (or `max_new_tokens`); greedy (the
        official decoding) unless `sampling` (one seed per prompt, `generation.generate`)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        seq, valid = self._prepare(prompts)
        isolate_from = self._isolation(seq, action_mask)
        b = seq.shape[0]
        generators = row_generators(sampling, seeds, b)
        finished = torch.zeros(b, dtype=torch.bool, device=seq.device)
        new: list[list[int]] = [[] for _ in range(b)]
        logits, cache = self._step(seq, valid, isolate_from, None, 0)
        for step in range(max_new_tokens):
            chosen = choose_tokens(logits, sampling, generators, ~finished).to(seq.device)
            token = torch.where(finished, torch.full_like(finished, self.ids.pad, dtype=torch.long),
                                chosen)
            for i in range(b):
                if not finished[i]:
                    new[i].append(int(token[i]))
            seq = torch.cat([seq, token[:, None]], 1)
            valid = torch.cat([valid, ~finished[:, None]], 1)
            finished = finished | (token == self.ids.eot)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            logits, cache = self._step(seq, valid, isolate_from, cache, seq.shape[1] - 1)
        actions, faults = [], []
        for prompt, tokens in zip(prompts, new, strict=True):
            fault = mask_fault(prompt, tokens, self.ids)
            chunk, decode_fault = ((np.zeros((0, 7)), fault) if fault
                                   else self.ids.actions.decode_chunk(tokens))
            actions.append(chunk)
            faults.append(decode_fault)
        return HFGeneration(new, actions, faults, [list(p) for p in prompts])

    @torch.no_grad()
    def generate_images(self, prompts: Sequence[Sequence[int]], h: int, w: int, *,
                        sampling: Sampling | None = None,
                        seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Cached, batched: one (h, w) code grid per prompt, the layout forced.

        The begin, grid, new-line and end tokens are written, not sampled; each code slot
        takes the most likely image code (greedy, the official decoding), or one drawn among the
        image codes under `sampling` (one seed per prompt). Returns (B, h, w) long codes.
        """
        layout = image_tokens(torch.zeros((h, w), dtype=torch.long), self.ids)
        # after begin and two grid tokens, row r holds w codes then the new-line token
        slots = [3 + r * (w + 1) + c for r in range(h) for c in range(w)]
        seq, valid = self._prepare(prompts)
        b = seq.shape[0]
        generators = row_generators(sampling, seeds, b)
        everyone = torch.ones(b, dtype=torch.bool)
        image_ids = self._image_ids.to(seq.device)
        codes = torch.zeros((b, h * w), dtype=torch.long)
        logits, cache = self._step(seq, valid, None, None, 0)
        slot_index = {pos: k for k, pos in enumerate(slots)}
        for pos, forced in enumerate(layout[:-1]):
            if pos in slot_index:
                pick = choose_tokens(logits[:, image_ids], sampling, generators, everyone)
                bpe = image_ids[pick.to(seq.device)]
                codes[:, slot_index[pos]] = torch.tensor(
                    [self.ids.bpe2img[int(t)] for t in bpe], dtype=torch.long)
                token = bpe
            else:
                token = torch.full((b,), forced, dtype=torch.long, device=seq.device)
            seq = torch.cat([seq, token[:, None]], 1)
            valid = torch.cat([valid, torch.ones((b, 1), dtype=torch.bool, device=seq.device)], 1)
            if pos < len(layout) - 2:
                logits, cache = self._step(seq, valid, None, cache, seq.shape[1] - 1)
        return codes.reshape(b, h, w)

    @torch.no_grad()
    def teacher_forced_logits(self, prompts: Sequence[Sequence[int]],
                              continuations: Sequence[Sequence[int]], *, action_mask: bool = True,
                              use_cache: bool = True) -> torch.Tensor:
        """Logits (B, N + 1, V) predicting each continuation token and the one after, computed
        as generation does (one cached step per token) or, ``use_cache=False``, in one forward
        over the whole sequence with the same mask. Continuations share a length N."""
        n = {len(c) for c in continuations}
        if len(n) != 1 or len(continuations) != len(prompts):
            raise ValueError("one continuation per prompt, all of one length")
        seq, valid = self._prepare(prompts)
        isolate_from = self._isolation(seq, action_mask)
        p = seq.shape[1]
        cont = torch.tensor([list(c) for c in continuations], dtype=torch.long, device=seq.device)
        full = torch.cat([seq, cont], 1)
        full_valid = torch.cat([valid, torch.ones_like(cont, dtype=torch.bool)], 1)
        if not use_cache:
            logits, _ = self._step(full, full_valid, isolate_from, None, 0, keep_last=False)
            return logits[:, p - 1:]
        logits, cache = self._step(seq, valid, isolate_from, None, 0)
        out = [logits]
        for j in range(cont.shape[1]):
            logits, cache = self._step(full[:, : p + j + 1], full_valid[:, : p + j + 1],
                                       isolate_from, cache, p + j)
            out.append(logits)
        return torch.stack(out, 1)

    def predict(self, instructions: Sequence[str], prev_images: Sequence[np.ndarray | None],
                cur_images: np.ndarray, *, max_new_tokens: int = MAX_NEW_TOKENS,
                action_mask: bool = True, sampling: Sampling | None = None,
                seeds: Sequence[int] | None = None) -> HFGeneration:
        """Action chunks for a batch: instructions (B,), uint8 frames (H, W, 3) each; a
        previous frame None (first query of an episode) leaves it out of that prompt. Greedy
        unless `sampling` (with one seed per instruction, see `generate`)."""
        b = len(instructions)
        if len(prev_images) != b or len(cur_images) != b:
            raise ValueError("one previous (or None) and one current frame per instruction")
        have = [i for i in range(b) if prev_images[i] is not None]
        frames = [np.asarray(cur_images[i]) for i in range(b)]
        frames += [np.asarray(prev_images[i]) for i in have]
        codes = self.encode_images(np.stack(frames))
        prev_codes: list[Any] = [None] * b
        for k, i in enumerate(have):
            prev_codes[i] = codes[b + k]
        prompts = [self.action_prompt(instructions[i], prev_codes[i], codes[i]) for i in range(b)]
        sampled = {} if sampling is None else {"sampling": sampling, "seeds": seeds}
        return self.generate(prompts, max_new_tokens=max_new_tokens, action_mask=action_mask,
                             **sampled)


# --------------------------------------------------------------------------- loading


def _dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return value


def _local_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r} is not a local directory (hub ids are not "
                                f"downloaded here; see docs/worldvla_checkpoints.md)")
    return p


def load_text_tokenizer(checkpoint_dir: Path, tokenizer_dir: Path,
                        text_tokenizer_file: str | Path | None = None) -> Any:
    """A `tokenizers.Tokenizer`: the explicit file, else the checkpoint's `tokenizer.json`,
    else the tokenizer directory's `text_tokenizer.json` (Chameleon's) or `tokenizer.json`."""
    from tokenizers import Tokenizer

    candidates = ([Path(text_tokenizer_file)] if text_tokenizer_file else
                  [checkpoint_dir / "tokenizer.json", tokenizer_dir / "text_tokenizer.json",
                   tokenizer_dir / "tokenizer.json"])
    for path in candidates:
        if path.is_file():
            return Tokenizer.from_file(str(path))
    raise FileNotFoundError(f"no text tokenizer among {[str(c) for c in candidates]}")


def vq_config_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """`ChameleonVQVAEConfig` kwargs from the model params of Chameleon's `vqgan.yaml`."""
    dd = params.get("ddconfig", {})
    return {
        "embed_dim": params["embed_dim"],
        "num_embeddings": params["n_embed"],
        "double_latent": dd.get("double_z", False),
        "latent_channels": dd["z_channels"],
        "resolution": dd.get("resolution", 512),
        "in_channels": dd.get("in_channels", 3),
        "base_channels": dd["ch"],
        "channel_multiplier": list(dd["ch_mult"]),
        "num_res_blocks": dd["num_res_blocks"],
        "attn_resolutions": list(dd.get("attn_resolutions") or []),
        "dropout": dd.get("dropout", 0.0),
    }


def read_vqgan(tokenizer_dir: Path, trust_pickle: bool = False
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`vqgan.yaml`'s model params and `vqgan.ckpt`'s state dict (original Chameleon format)."""
    import yaml

    yaml_path, ckpt_path = tokenizer_dir / "vqgan.yaml", tokenizer_dir / "vqgan.ckpt"
    for p in (yaml_path, ckpt_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing: tokenizer_dir must be the 'chameleon/tokenizer' "
                                    f"folder of the release")
    with open(yaml_path) as f:
        params = yaml.safe_load(f)["model"]["params"]
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as error:  # noqa: BLE001 - unpickling errors have many types
        raise RuntimeError(f"cannot load {ckpt_path} with weights_only=True ({error}); if you "
                           f"trust the file, pass trust_pickle=True") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    return params, state


def load_vqgan(tokenizer_dir: Path, device: str = "cpu", trust_pickle: bool = False,
               decoder: bool = False) -> tuple[ChameleonVQVAE, Any]:
    """Chameleon's VQ-GAN encoder from `vqgan.yaml` + `vqgan.ckpt` (the decoder and loss
    weights are dropped, as transformers' conversion does) and, with `decoder`, its decoder
    (`vqgan_decoder.VQGANDecoder`; else None)."""
    from transformers import ChameleonVQVAE, ChameleonVQVAEConfig

    params, state = read_vqgan(tokenizer_dir, trust_pickle)
    vq = ChameleonVQVAE(ChameleonVQVAEConfig(**vq_config_from_params(params)))
    own = vq.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise KeyError(f"{tokenizer_dir / 'vqgan.ckpt'} lacks VQ-GAN weights {missing[:5]} "
                       f"(of {len(missing)})")
    vq.load_state_dict({k: state[k] for k in own})
    dec = None
    if decoder:
        from worldvla_bench.integrations.worldvla.vqgan_decoder import decoder_from_state

        dec = decoder_from_state(params["ddconfig"], state).to(device)
    return vq.to(device).eval(), dec


# The released checkpoints hold q/k-norm weights and biases as (model_parallel_size, head_dim),
# (1, 128) for the 7B: WorldVLA's vendored Chameleon (github alibaba-damo-academy/WorldVLA,
# worldvla/model/chameleon/modeling_chameleon.py ChameleonLayerNorm: a LayerNorm of shape
# [model_parallel_size, head_dim] whose `repeat_param` repeat-interleaves each row over the
# n_heads_per_mp heads of its shard at every forward) and its convert script
# (model/chameleon/convert_chameleon_weights_to_hf.py: q_normalization / k_normalization written
# with `.reshape(1, -1)` or stacked per shard, no `repeat_interleave(num_heads)`). Stock
# transformers' ChameleonLayerNorm holds the repeated (num_heads, head_dim) tensor instead.
QK_NORM_SUFFIXES = tuple(f"self_attn.{n}.{p}" for n in ("q_norm", "k_norm")
                         for p in ("weight", "bias"))


def checkpoint_shapes(checkpoint_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of every `*.safetensors` file of a checkpoint, read from the headers only
    (empty for a checkpoint without safetensors files)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(checkpoint_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def layout_conversions(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]
                       ) -> dict[str, tuple[int, ...]]:
    """{key: shape in transformers} of the checkpoint tensors to repeat per head: q/k-norm
    tensors of shape (r, head_dim) where transformers wants (heads, head_dim) and r divides
    heads (the official layout, r = model_parallel_size = 1). Any other shape mismatch between
    the checkpoint (`found`) and transformers' Chameleon (`expected`) raises a one-line
    ValueError naming the key and both shapes; keys absent from either side are left to the
    loader's missing / unexpected checks."""
    convert: dict[str, tuple[int, ...]] = {}
    for key in sorted(set(found) & set(expected)):
        have, want = tuple(found[key]), tuple(expected[key])
        if have == want:
            continue
        if (key.endswith(QK_NORM_SUFFIXES) and len(have) == len(want) == 2
                and have[1] == want[1] and have[0] >= 1 and want[0] % have[0] == 0):
            convert[key] = want
            continue
        raise ValueError(f"checkpoint tensor {key} has shape {list(have)}, transformers' Chameleon "
                         f"expects {list(want)}")
    return convert


def repeat_per_head(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(r, head_dim) -> (heads, head_dim), row i repeated for heads i * heads / r .. (i + 1)
    * heads / r - 1, as the official ChameleonLayerNorm.repeat_param does at every forward."""
    return tensor.repeat_interleave(int(shape[0]) // tensor.shape[0], dim=0)


def _expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    from transformers import ChameleonForConditionalGeneration

    with torch.device("meta"):
        skeleton = ChameleonForConditionalGeneration(config)
    return {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}


def _load_converted(model: Any, checkpoint_dir: Path, convert: dict[str, tuple[int, ...]]) -> None:
    from safetensors import safe_open

    params = dict(model.named_parameters())
    for path in sorted(checkpoint_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in set(handle.keys()) & set(convert):
                param = params[key]
                with torch.no_grad():
                    param.copy_(repeat_per_head(handle.get_tensor(key), convert[key]).to(
                        device=param.device, dtype=param.dtype))


def load_released(
    checkpoint_dir: str | Path,
    tokenizer_dir: str | Path,
    *,
    attn_implementation: str = "sdpa",
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    vocab_names: ReleasedVocab | None = None,
    text_tokenizer_file: str | Path | None = None,
    trust_pickle: bool = False,
    decoder: bool = False,
    mask_image_logits: bool = False,
) -> ChameleonWorldVLA:
    """Load a released checkpoint directory and the VQ-GAN folder, both local, offline.

    `attn_implementation` must be 'sdpa' or 'eager' (refused before anything is loaded
    otherwise). `dtype` defaults to bfloat16 on CUDA, float32 on CPU (the VQ-GAN stays float32).
    The config's `vocabulary_map` is filled from the text tokenizer when the checkpoint lacks it.
    Transformer weights missing from the checkpoint raise (the VQ model inside the checkpoint
    is never used and may be absent). q/k-norm tensors in the official layout (r, head_dim)
    are repeated per head (`layout_conversions`); any other shape mismatch raises a one-line
    ValueError before the weights are read. `decoder` also loads the VQ-GAN decoder (world model);
    `mask_image_logits` suppresses image codes in action decoding (the official eval does not).
    """
    check_attn_implementation(attn_implementation)
    ckpt, tok_dir = _local_dir(checkpoint_dir, "checkpoint_dir"), _local_dir(tokenizer_dir,
                                                                              "tokenizer_dir")
    import transformers
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration

    text_tokenizer = load_text_tokenizer(ckpt, tok_dir, text_tokenizer_file)
    config = ChameleonConfig.from_pretrained(ckpt, local_files_only=True)
    if not config.vocabulary_map:
        vocab = dict(text_tokenizer.get_vocab(with_added_tokens=True))
        config.vocabulary_map = vocab
        config.image_token_id = vocab.get("<image>")
    torch_dtype = _dtype(dtype, device)
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    convert = layout_conversions(checkpoint_shapes(ckpt), _expected_shapes(config))
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if convert:  # the load report would call the converted tensors "newly initialized"
        hf_logging.set_verbosity_error()
    try:
        model, info = ChameleonForConditionalGeneration.from_pretrained(
            ckpt, config=config, attn_implementation=attn_implementation, local_files_only=True,
            output_loading_info=True, ignore_mismatched_sizes=bool(convert),
            **{dtype_kw: torch_dtype})
    finally:
        hf_logging.set_verbosity(verbosity)
    mismatched = {entry[0] for entry in info.get("mismatched_keys", [])}
    if mismatched != set(convert):  # the header scan and the loader disagree: never guess
        raise RuntimeError(f"{ckpt}: loader found mismatched shapes at {sorted(mismatched)[:5]}, "
                           f"expected {sorted(convert)[:5]}")
    _load_converted(model, ckpt, convert)
    missing = sorted(k for k in info.get("missing_keys", []) if "vqmodel." not in k)
    if missing:
        raise KeyError(f"{ckpt}: transformer weights missing from the checkpoint: {missing[:5]} "
                       f"(of {len(missing)}); is it a Chameleon save_pretrained directory?")
    unexpected = sorted(k for k in info.get("unexpected_keys", []) if "vqmodel." not in k)
    if unexpected:
        warnings.warn(f"{ckpt}: weights not used by transformers' Chameleon: {unexpected[:5]} "
                      f"(of {len(unexpected)})", stacklevel=2)
    check_attn_implementation(model.config._attn_implementation)
    model = model.to(device)
    vq, dec = load_vqgan(tok_dir, device, trust_pickle, decoder=decoder)
    ids = TokenIds.from_vocab(config.vocabulary_map, config.vocab_size, vocab_names)
    return ChameleonWorldVLA(model, vq, text_tokenizer, ids, decoder=dec,
                             mask_image_logits=mask_image_logits)

