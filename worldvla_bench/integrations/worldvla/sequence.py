"""Prompts, answers and batches of the two WorldVLA tasks in one token sequence.

Action model (our token layout; the prompt text is WorldVLA's)::

    bos, text("What action should the robot take to {instruction}?"),
    image(previous frame), image(current frame), eot  |  K action blocks, eot

World model::

    bos, text("Generate the next image based on the current image and the action."),
    image(frame), action block(s), eot  |  image(next frame), eot

Everything after ``|`` is the answer: the only tokens with labels (the loss targets).
Images are VQ code grids (h, w) written with `image_tokenizer.codes_to_tokens`; actions are
(7,) or (K, 7) arrays in env units written with `ActionTokenizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.action_tokenizer import ActionTokenizer
from worldvla_bench.integrations.worldvla.image_tokenizer import codes_to_tokens
from worldvla_bench.integrations.worldvla.text_tokenizer import ByteTokenizer
from worldvla_bench.integrations.worldvla.transformer import IGNORE_INDEX
from worldvla_bench.integrations.worldvla.vocab import Vocab

ACTION_PROMPT = "What action should the robot take to {instruction}?"
WORLD_PROMPT = "Generate the next image based on the current image and the action."

Codes = np.ndarray | torch.Tensor


@dataclass
class Sample:
    """One training sequence: token ids and labels (-100 on the prompt)."""

    input_ids: list[int]
    labels: list[int]
    kind: str  # "action" or "world"

    @property
    def prompt_len(self) -> int:
        return next(i for i, y in enumerate(self.labels) if y != IGNORE_INDEX)


@dataclass
class Batch:
    """Padded tensors (B, T): ids, labels (-100 = no loss), valid (False = padding)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.labels.to(device), self.valid.to(device))


class WorldVLATokenizer:
    """Builds prompts and samples from text, code grids and actions over one `Vocab`."""

    def __init__(self, vocab: Vocab, actions: ActionTokenizer | None = None) -> None:
        self.vocab = vocab
        self.text = ByteTokenizer(vocab)
        self.actions = actions if actions is not None else ActionTokenizer(vocab)

    def image(self, codes: Codes) -> list[int]:
        return codes_to_tokens(codes, self.vocab)

    def action_prompt(self, instruction: str, prev_codes: Codes, cur_codes: Codes) -> list[int]:
        """Prompt of the action model (previous and current frame as code grids)."""
        text = self.text.encode(ACTION_PROMPT.format(instruction=instruction))
        return [
            Vocab.BOS, *text, *self.image(prev_codes), *self.image(cur_codes), Vocab.EOT
        ]

    def action_answer(self, actions: np.ndarray) -> list[int]:
        """K action blocks then end of turn, for a (K, 7) chunk."""
        return [*self.actions.encode(actions), Vocab.EOT]

    def action_sample(
        self, instruction: str, prev_codes: Codes, cur_codes: Codes, actions: np.ndarray
    ) -> Sample:
        prompt = self.action_prompt(instruction, prev_codes, cur_codes)
        return _sample(prompt, self.action_answer(actions), "action")

    def world_prompt(self, codes: Codes, action: np.ndarray) -> list[int]:
        """Prompt of the world model: frame codes and the action(s) taken from it."""
        text = self.text.encode(WORLD_PROMPT)
        return [Vocab.BOS, *text, *self.image(codes), *self.actions.encode(action), Vocab.EOT]

    def world_sample(self, codes: Codes, action: np.ndarray, next_codes: Codes) -> Sample:
        prompt = self.world_prompt(codes, action)
        return _sample(prompt, [*self.image(next_codes), Vocab.EOT], "world")


def world_step_actions(actions: np.ndarray, t: int, frame_step: int) -> np.ndarray:
    """The actions one world-model step reads from `actions` (N, 7), starting at step t: the
    (7,) action t when `frame_step` is 1 (WorldVLA's), else the (S, 7) actions t..t+S-1."""
    return actions[t] if frame_step == 1 else actions[t : t + frame_step]


def _sample(prompt: list[int], answer: list[int], kind: str) -> Sample:
    return Sample(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer, kind)


def collate(samples: Sequence[Sample], padding_side: str = "right") -> Batch:
    """Pad samples to one length with pad tokens (labels -100, valid False)."""
    ids, valid = pad_sequences([s.input_ids for s in samples], padding_side)
    labels, _ = pad_sequences([s.labels for s in samples], padding_side, IGNORE_INDEX)
    return Batch(ids, labels, valid)


def pad_sequences(
    sequences: Sequence[Sequence[int]], padding_side: str = "left", value: int = Vocab.PAD
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T) int64, valid (B, T) bool). Generation needs left padding (the default)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not sequences:
        raise ValueError("no sequences")
    t = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), t), value, dtype=torch.long)
    valid = torch.zeros((len(sequences), t), dtype=torch.bool)
    for i, s in enumerate(sequences):
        sl = slice(t - len(s), t) if padding_side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(list(s), dtype=torch.long)
        valid[i, sl] = True
    return ids, valid
