"""Released WorldVLA checkpoints through `transformers`' Chameleon classes (extra `hf`).

The released checkpoints (`Alibaba-DAMO-Academy/WorldVLA`: `model_256/*`, `model_512/*`) are
`save_pretrained` directories of a (modified) Chameleon; the VQ-GAN lives outside them, in
`chameleon/tokenizer` (`vqgan.yaml` + `vqgan.ckpt`, the original Chameleon format, plus
`text_tokenizer.json`). This module loads both from LOCAL directories (never from a hub),
builds WorldVLA's action prompt with the released vocabulary, runs batched, cached, greedy
generation with WorldVLA's action attention mask as a 4-d additive mask, and decodes the action
blocks. See docs/worldvla_checkpoints.md for downloading and the traps.

Token layout (Lumina-mGPT / Chameleon, names resolved through the vocabulary, see
`ReleasedVocab`)::

    <s>, text("What action should the robot take to {instruction}?"),
    image(previous frame), image(current frame), <reserved08706>
    | K x (<reserved10000>, 7 action value tokens, <reserved15000>), <reserved08706>

    image(codes h x w) = <racm3:break>, grid(h), grid(w),
                         row 0 codes, <reserved08799>, ..., row h-1 codes, <reserved08799>, <eoss>
    grid(n) = <reserved{8800 + n:05d}>;  a code c is the BPE token "IMGIMG...Z" of c
    (Chameleon's image vocabulary mapping).

Action value tokens: THE assumption of this module, in one place, `RELEASED_ACTION_VALUES`
(see `ActionValueIds`): WorldVLA's action tokenizer follows OpenVLA's, which overwrites the last
256 ids of the text vocabulary: ``id = vocab_size - digitize(x, linspace(-1, 1, 256))``, i.e.
bin b (0..254) <-> id ``vocab_size - 1 - b`` (ids ``vocab_size - 256`` and ``vocab_size - 255``
both decode to the last bin, as in OpenVLA's decoder). `vocab_size` defaults to the model's
(65536 for Chameleon). Change `RELEASED_ACTION_VALUES` (or pass `action_values=`) if the public
code says otherwise; nothing else depends on the scheme.

The action mask: every action block after the last image attends to the prompt and its own
earlier tokens, never to earlier action blocks (`worldvla_bench.integrations.worldvla.masks`, reused
here through a role map of the four structural tokens). The mask row of every new token is
recomputed at every cached step and handed to the model as a 4-d float mask (B, 1, Tq, Tk).
Flash-attention implementations ignore a custom 4-d mask, so only 'sdpa' and 'eager' are
accepted.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.action_tokenizer import (
    ACTION_DIM,
    BLOCK_LEN,
    N_EDGES,
    ActionTokenizer,
)
from worldvla_bench.integrations.worldvla.masks import attention_mask, isolation_start, position_ids
from worldvla_bench.integrations.worldvla.sequence import ACTION_PROMPT
from worldvla_bench.integrations.worldvla.vocab import Vocab

if TYPE_CHECKING:  # pragma: no cover
    from transformers import ChameleonForConditionalGeneration, ChameleonVQVAE

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
INSTRUCTION_SOURCES = ("language", "filename")
N_BINS = N_EDGES - 1
IMAGE_TOKEN_PREFIX = "IMGIMG"
#: WorldVLA's eval cap on new tokens per decoding call
MAX_NEW_TOKENS = 300


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class ActionValueIds:
    """How an action value bin (0..254) maps to a vocabulary id, and back.

    - ``scheme='vocab_end'`` (OpenVLA's, the default): bin b <-> ``vocab_size - 1 - b``; ids
      ``vocab_size - 256 .. vocab_size - 1`` are value tokens (the lowest two both decode to bin
      254). `vocab_size` None = the model's ``config.vocab_size``.
    - ``scheme='offset'``: bin b <-> ``first_id + b`` (255 ids), e.g. reserved tokens right after
      the begin-of-action token.
    """

    scheme: str = "vocab_end"
    vocab_size: int | None = None
    first_id: int | None = None

    def __post_init__(self) -> None:
        if self.scheme not in ("vocab_end", "offset"):
            raise ValueError(f"action value scheme must be 'vocab_end' or 'offset', "
                             f"got {self.scheme!r}")
        if self.scheme == "offset" and self.first_id is None:
            raise ValueError("scheme 'offset' needs first_id")

    def resolve(self, model_vocab_size: int) -> ResolvedActionValues:
        if self.scheme == "vocab_end":
            size = int(self.vocab_size or model_vocab_size)
            return ResolvedActionValues("vocab_end", size - N_EDGES, size - 1, size)
        first = int(self.first_id)  # type: ignore[arg-type]
        return ResolvedActionValues("offset", first, first + N_BINS - 1, first)


@dataclass(frozen=True)
class ResolvedActionValues:
    """Id range [low, high] of the value tokens and the anchor of the scheme."""

    scheme: str
    low: int
    high: int
    anchor: int  # vocab_size (vocab_end) or first_id (offset)

    def to_ids(self, bins: np.ndarray) -> np.ndarray:
        b = np.asarray(bins, dtype=np.int64)
        if np.any((b < 0) | (b >= N_BINS)):
            raise ValueError(f"action bins must be in 0..{N_BINS - 1}")
        return self.anchor - 1 - b if self.scheme == "vocab_end" else self.anchor + b

    def to_bins(self, ids: np.ndarray) -> np.ndarray:
        i = np.asarray(ids, dtype=np.int64)
        bins = self.anchor - 1 - i if self.scheme == "vocab_end" else i - self.anchor
        return np.clip(bins, 0, N_BINS - 1)

    def is_value(self, token: int) -> bool:
        return self.low <= int(token) <= self.high


#: THE assumption about action value ids of the released checkpoints (module docstring).
RELEASED_ACTION_VALUES = ActionValueIds(scheme="vocab_end")


@dataclass(frozen=True)
class ReleasedVocab:
    """Names of the structural tokens in the released vocabulary (looked up by name)."""

    bos: str | None = "<s>"
    pad: str = "<pad>"
    end_of_turn: str = "<reserved08706>"
    action_begin: str = "<reserved10000>"
    action_end: str = "<reserved15000>"
    image_begin: str = "<racm3:break>"
    image_end: str = "<eoss>"
    image_newline: str = "<reserved08799>"
    #: grid(n) = f"<reserved{grid_base + n:05d}>"
    grid_base: int = 8800
    action_values: ActionValueIds = field(default_factory=lambda: RELEASED_ACTION_VALUES)

    def grid_name(self, n: int) -> str:
        return f"<reserved{self.grid_base + n:05d}>"


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
    values: ResolvedActionValues

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
        ids = cls(
            bos=get(names.bos) if names.bos is not None else None,
            pad=get(names.pad),
            eot=get(names.end_of_turn),
            boa=get(names.action_begin),
            eoa=get(names.action_end),
            boi=get(names.image_begin),
            eoi=get(names.image_end),
            newline=get(names.image_newline),
            grids=grids,
            img2bpe=img2bpe,
            bpe2img=bpe2img,
            values=names.action_values.resolve(model_vocab_size),
        )
        ids.check(model_vocab_size)
        return ids

    def check(self, model_vocab_size: int) -> None:
        structural = {"eot": self.eot, "boa": self.boa, "eoa": self.eoa, "boi": self.boi,
                      "eoi": self.eoi, "newline": self.newline}
        for name, token in structural.items():
            if not 0 <= token < model_vocab_size:
                raise ValueError(f"{name} id {token} outside the model vocabulary "
                                 f"({model_vocab_size})")
            if self.values.is_value(token) or token in self.bpe2img:
                raise ValueError(f"{name} id {token} collides with action value or image ids")
        if self.values.low < 0 or self.values.high >= model_vocab_size:
            raise ValueError(f"action value ids {self.values.low}..{self.values.high} outside "
                             f"the model vocabulary ({model_vocab_size})")

    def grid(self, n: int) -> int:
        if n not in self.grids:
            raise KeyError(f"no grid token for {n} codes")
        return self.grids[n]


def image_code_map(vocab: dict[str, int]) -> dict[int, int]:
    """BPE id -> VQ code of the "IMGIMG<letters>Z" tokens (Chameleon: letter A..J = digit)."""
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


def image_tokens(codes: np.ndarray | torch.Tensor, ids: TokenIds) -> list[int]:
    """Chameleon layout of one (h, w) VQ code grid."""
    grid = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if grid.ndim != 2:
        raise ValueError(f"expected an (h, w) code grid, got shape {tuple(grid.shape)}")
    h, w = grid.shape
    bpe = ids.img2bpe[grid]
    rows = torch.cat([bpe, torch.full((h, 1), ids.newline, dtype=torch.long)], 1)
    return [ids.boi, ids.grid(h), ids.grid(w), *rows.flatten().tolist(), ids.eoi]


def encode_actions(actions: np.ndarray, ids: TokenIds) -> list[int]:
    """Action blocks of a (K, 7) chunk (env units) with the released ids (for tests, scoring)."""
    bins = _ACTIONS.to_bins(np.atleast_2d(np.asarray(actions, dtype=np.float64)))
    out: list[int] = []
    for row in bins:
        out += [ids.boa, *ids.values.to_ids(row).tolist(), ids.eoa]
    return out


def decode_actions(tokens: Sequence[int], ids: TokenIds) -> np.ndarray:
    """(K, 7) float64 actions (env units, bin centres) of the well-formed blocks in `tokens`:
    begin, 7 value tokens, end. Anything else (text, end of turn, malformed blocks) is skipped."""
    toks = [int(t) for t in tokens]
    blocks: list[list[int]] = []
    i = 0
    while i < len(toks):
        if toks[i] == ids.boa and i + BLOCK_LEN <= len(toks):
            body = toks[i + 1 : i + 1 + ACTION_DIM]
            if toks[i + BLOCK_LEN - 1] == ids.eoa and all(ids.values.is_value(t) for t in body):
                blocks.append(body)
                i += BLOCK_LEN
                continue
        i += 1
    if not blocks:
        return np.zeros((0, ACTION_DIM))
    return _ACTIONS.from_bins(ids.values.to_bins(np.array(blocks)))


# our ActionTokenizer for the WorldVLA bounds and bin arithmetic (its own ids are not used)
_ACTIONS = ActionTokenizer(Vocab(codebook_size=1))


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


@dataclass
class HFGeneration:
    """new tokens per sample (up to and including end of turn) and their (K, 7) chunks."""

    tokens: list[list[int]]
    actions: list[np.ndarray]


class ChameleonWorldVLA:
    """A released WorldVLA checkpoint: Chameleon transformer, VQ-GAN, text tokenizer, ids."""

    def __init__(self, model: ChameleonForConditionalGeneration, vq: ChameleonVQVAE,
                 text_tokenizer: Any, ids: TokenIds) -> None:
        self.model = model.eval()
        self.vq = vq.eval()
        self.text_tokenizer = text_tokenizer
        self.ids = ids
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep")
                              if k in params), None)
        self._cache_position = "cache_position" in params

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
        """uint8 (B, H, W, 3) or (H, W, 3) upright frames -> VQ codes (B, H/16, W/16)."""
        array = np.asarray(images, dtype=np.uint8)
        array = array[None] if array.ndim == 3 else array
        d = self.vq_downsample
        if array.ndim != 4 or array.shape[-1] != 3 or array.shape[1] % d or array.shape[2] % d:
            raise ValueError(f"expected (B, H, W, 3) images with H, W multiples of {d}, "
                             f"got {array.shape}")
        vq_param = next(self.vq.parameters())
        x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
        x = x.to(device=vq_param.device, dtype=vq_param.dtype) / 127.5 - 1.0
        out = self.vq.encode(x)
        codes = out[2] if isinstance(out, tuple) else out.image_tokens
        b, h, w = array.shape[0], array.shape[1] // d, array.shape[2] // d
        return codes.reshape(b, h, w).long().cpu()

    def action_prompt(self, instruction: str, prev_codes: Any, cur_codes: Any) -> list[int]:
        """<s>, text, image(previous), image(current), end of turn."""
        text = self.encode_text(ACTION_PROMPT.format(instruction=instruction))
        bos = [self.ids.bos] if self.ids.bos is not None else []
        return [*bos, *text, *image_tokens(prev_codes, self.ids),
                *image_tokens(cur_codes, self.ids), self.ids.eot]

    # -- forward passes
    def _step(self, seq: torch.Tensor, valid: torch.Tensor, isolate_from: torch.Tensor | None,
              cache: Any, start: int, keep_last: bool = True) -> tuple[torch.Tensor, Any]:
        """Logits of positions start..T-1 (only the last if `keep_last`) and the new cache."""
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
        if self._keep_kw is not None and keep_last:
            kwargs[self._keep_kw] = 1
        if self._cache_position:
            kwargs["cache_position"] = torch.arange(start, seq.shape[1], device=seq.device)
        out = self.model(**kwargs)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        logits = out.logits[:, -1] if keep_last else out.logits
        return logits.float(), new_cache

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
                 action_mask: bool = True) -> HFGeneration:
        """Greedy, cached, batched: action blocks until end of turn (or `max_new_tokens`)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        seq, valid = self._prepare(prompts)
        isolate_from = self._isolation(seq, action_mask)
        b = seq.shape[0]
        finished = torch.zeros(b, dtype=torch.bool, device=seq.device)
        new: list[list[int]] = [[] for _ in range(b)]
        logits, cache = self._step(seq, valid, isolate_from, None, 0)
        for step in range(max_new_tokens):
            token = torch.where(finished, torch.full_like(finished, self.ids.pad, dtype=torch.long),
                                logits.argmax(-1))
            for i in range(b):
                if not finished[i]:
                    new[i].append(int(token[i]))
            seq = torch.cat([seq, token[:, None]], 1)
            valid = torch.cat([valid, ~finished[:, None]], 1)
            finished = finished | (token == self.ids.eot)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            logits, cache = self._step(seq, valid, isolate_from, cache, seq.shape[1] - 1)
        return HFGeneration(new, [decode_actions(t, self.ids) for t in new])

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

    def predict(self, instructions: Sequence[str], prev_images: np.ndarray,
                cur_images: np.ndarray, *, max_new_tokens: int = MAX_NEW_TOKENS,
                action_mask: bool = True) -> HFGeneration:
        """Action chunks for a batch: instructions (B,), uint8 frames (B, H, W, 3) each."""
        codes = self.encode_images(np.concatenate([np.asarray(prev_images),
                                                   np.asarray(cur_images)]))
        b = len(instructions)
        if codes.shape[0] != 2 * b:
            raise ValueError("one previous and one current frame per instruction")
        prompts = [self.action_prompt(instructions[i], codes[i], codes[b + i]) for i in range(b)]
        return self.generate(prompts, max_new_tokens=max_new_tokens, action_mask=action_mask)


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


def vq_config_from_yaml(path: Path) -> dict[str, Any]:
    """`ChameleonVQVAEConfig` kwargs from Chameleon's original `vqgan.yaml`."""
    import yaml

    with open(path) as f:
        params = yaml.safe_load(f)["model"]["params"]
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


def load_vqgan(tokenizer_dir: Path, device: str = "cpu",
               trust_pickle: bool = False) -> ChameleonVQVAE:
    """Chameleon's VQ-GAN encoder from `vqgan.yaml` + `vqgan.ckpt` (original format; the
    decoder and loss weights are dropped, as transformers' conversion does)."""
    from transformers import ChameleonVQVAE, ChameleonVQVAEConfig

    yaml_path, ckpt_path = tokenizer_dir / "vqgan.yaml", tokenizer_dir / "vqgan.ckpt"
    for p in (yaml_path, ckpt_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing: tokenizer_dir must be the 'chameleon/tokenizer' "
                                    f"folder of the release")
    vq = ChameleonVQVAE(ChameleonVQVAEConfig(**vq_config_from_yaml(yaml_path)))
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as error:  # noqa: BLE001 - unpickling errors have many types
        raise RuntimeError(f"cannot load {ckpt_path} with weights_only=True ({error}); if you "
                           f"trust the file, pass trust_pickle=True") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    own = vq.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise KeyError(f"{ckpt_path} lacks VQ-GAN weights {missing[:5]} (of {len(missing)})")
    vq.load_state_dict({k: state[k] for k in own})
    return vq.to(device).eval()


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
) -> ChameleonWorldVLA:
    """Load a released checkpoint directory and the VQ-GAN folder, both local, offline.

    `attn_implementation` must be 'sdpa' or 'eager' (refused before anything is loaded
    otherwise). `dtype` defaults to bfloat16 on CUDA, float32 on CPU (the VQ-GAN stays float32).
    The config's `vocabulary_map` is filled from the text tokenizer when the checkpoint lacks it.
    Transformer weights missing from the checkpoint raise (the VQ model inside the checkpoint
    is never used and may be absent).
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
    model, info = ChameleonForConditionalGeneration.from_pretrained(
        ckpt, config=config, attn_implementation=attn_implementation, local_files_only=True,
        output_loading_info=True, **{dtype_kw: torch_dtype})
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
    vq = load_vqgan(tok_dir, device, trust_pickle)
    ids = TokenIds.from_vocab(config.vocabulary_map, config.vocab_size, vocab_names)
    return ChameleonWorldVLA(model, vq, text_tokenizer, ids)

