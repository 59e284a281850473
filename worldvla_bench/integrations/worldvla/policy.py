"""`worldvla`: a WorldVLA checkpoint (trained with `worldvla-bench train`) as a LIBERO policy.

Reproduces WorldVLA's LIBERO evaluation (profile `worldvla` in
`worldvla_bench.observation_profiles`):
- the prompt is "What action should the robot take to {instruction}?" with two frames of the
  third-person camera (upright, resized to the model's image size): the frame of the previous env
  step and the current one; at the first call of an episode the current frame is used twice;
- greedy decoding of up to K action blocks (K = `chunk_size`, default the K the checkpoint was
  trained with; it also stops at end of turn), with the action attention mask when the
  checkpoint was trained with it; decoded to bin centres (the gripper goes to the env as decoded,
  about +-0.996) and executed open loop;
- a generation without any well-formed action block gives a safe chunk instead (zero motion,
  gripper kept at its last command; open at the start), counted in `stats['fallbacks']`.

The frames come prepared by the engine, which applies the profile (`observation_pipeline`): it
renders the step before the last of each chunk too, so `agentview_history` holds the previous
env step's frame; the image is resized to the model's size (`image_size`). The tiny model's
prompt always holds two frames, as its training samples do: at the first call of an episode,
with no earlier frame, the current one is used twice. `previous_frame='policy_call'` asks for
the profile `worldvla_policy_call` instead: the frame of the previous policy call (K steps
earlier; one render per chunk, not what the model was trained on).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.generation import action_stop, greedy_generate
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.sequence import pad_sequences
from worldvla_bench.integrations.worldvla.shipped import DEFAULT_CHECKPOINT
from worldvla_bench.integrations.worldvla.training import load_checkpoint
from worldvla_bench.policy import EpisodeContext, Policy

INSTRUCTION_SOURCES = ("language", "training")
#: `previous_frame` -> the observation profile that delivers it
PREVIOUS_FRAME = {"env_step": "worldvla", "policy_call": "worldvla_policy_call"}
OPEN_GRIPPER = -1.0


def decode_action_chunk(
    model: WorldVLA,
    instruction: str,
    prev_image: np.ndarray,
    cur_image: np.ndarray,
    num_blocks: int | None,
    action_mask: bool = True,
    max_new_tokens: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Greedy action chunk (K', 7) (K' <= num_blocks, maybe 0) and the generated tokens.

    Images are uint8 (H, W, 3) at any size (the model resizes them to its own).
    """
    codes = model.encode_images(np.stack([prev_image, cur_image]))
    prompt = model.tokenizer.action_prompt(instruction, codes[0], codes[1])
    ids, valid = pad_sequences([prompt])
    room = model.transformer.config.max_seq_len - len(prompt)
    budget = min(max_new_tokens or model.config.max_new_action_tokens, room)
    if budget < 1:
        raise ValueError(f"the prompt ({len(prompt)} tokens) fills the model's context")
    out = greedy_generate(model.transformer, ids, valid, max_new_tokens=budget,
                          action_mask=action_mask, stop=action_stop(num_blocks))
    tokens = out.new_tokens[0][out.new_valid[0]].tolist()
    chunk = model.tokenizer.actions.decode(tokens)
    if num_blocks is not None:
        chunk = chunk[:num_blocks]
    return chunk, tokens


class WorldVLAPolicy(Policy):
    """A WorldVLA checkpoint as a policy; see the module docstring.

    `chunk_size` and `action_mask` default to what the checkpoint was trained with.
    `instruction_source` 'language' prompts with the env's instruction (as WorldVLA's eval does,
    even where training used other text, e.g. libero_10's scene-prefixed names); 'training'
    prompts with the text the checkpoint was trained on for that instruction (falls back to the
    language string for an unseen task).
    """

    cameras = ("agentview",)
    observation_profile = "worldvla"

    def __init__(
        self,
        checkpoint: str = DEFAULT_CHECKPOINT,
        chunk_size: int | None = None,
        action_mask: bool | None = None,
        instruction_source: str = "language",
        previous_frame: str = "env_step",
        max_new_tokens: int | None = None,
        num_threads: int = 1,
    ) -> None:
        if instruction_source not in INSTRUCTION_SOURCES:
            raise ValueError(f"instruction_source must be one of {INSTRUCTION_SOURCES}, "
                             f"got {instruction_source!r}")
        if previous_frame not in PREVIOUS_FRAME:
            raise ValueError(f"previous_frame must be one of {list(PREVIOUS_FRAME)}, "
                             f"got {previous_frame!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        torch.set_num_threads(max(1, int(num_threads)))
        self.model, self.meta = load_checkpoint(checkpoint)
        if self.meta["stage"] != "done" and not self.meta["exported"]:
            warnings.warn(f"{checkpoint}: checkpoint of an unfinished training run "
                          f"(stage {self.meta['stage']}, step {self.meta['step']})", stacklevel=2)
        self.observation_profile = PREVIOUS_FRAME[previous_frame]
        self.camera = self.cameras[0]
        self.chunk_size = int(chunk_size or self.meta["chunk_size"])
        self.action_mask = bool(self.meta["action_mask"] if action_mask is None else action_mask)
        self.instruction_source = instruction_source
        self.previous_frame = previous_frame
        self.max_new_tokens = max_new_tokens
        self.image_size = self.model.config.vq.image_size
        self.stats: dict[str, float] = {"calls": 0, "chunks": 0, "fallbacks": 0, "partial": 0,
                                        "decode_s": 0.0}
        self._context: EpisodeContext | None = None
        self.reset(None)

    # -- episode state
    def reset(self, context: EpisodeContext | None) -> None:
        self._context = context
        self._gripper = OPEN_GRIPPER  # LIBERO's wait steps leave the gripper open
        self.episode_fallbacks = 0

    def prompt_instruction(self, observation: dict[str, Any]) -> str:
        language = str(observation.get("instruction")
                       or (self._context.instruction if self._context else ""))
        if self.instruction_source == "training":
            return self.meta["instructions"].get(language, language)
        return language

    def fallback_chunk(self) -> np.ndarray:
        """Zero motion, gripper kept at its last command, for `chunk_size` steps."""
        chunk = np.zeros((self.chunk_size, 7))
        chunk[:, 6] = self._gripper
        return chunk

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        self.stats["calls"] += 1
        frame = observation[f"{self.camera}_image"]
        history = observation.get(f"{self.camera}_history", ())
        prev = history[-1] if len(history) else frame  # first call: the current frame twice
        t0 = time.perf_counter()
        chunk = self._decode(self.prompt_instruction(observation), prev, frame)
        self.stats["decode_s"] += time.perf_counter() - t0
        self.stats["chunks"] += 1
        self._gripper = float(chunk[-1, 6])
        return chunk

    def _decode(self, instruction: str, prev: np.ndarray, frame: np.ndarray) -> np.ndarray:
        try:
            chunk, _ = decode_action_chunk(self.model, instruction, prev, frame, self.chunk_size,
                                           self.action_mask, self.max_new_tokens)
        except ValueError:  # prompt too long for the model's context
            chunk = np.zeros((0, 7))
        if not len(chunk) or not np.all(np.isfinite(chunk)):
            self.stats["fallbacks"] += 1
            self.episode_fallbacks += 1
            return self.fallback_chunk()
        if len(chunk) < self.chunk_size:
            self.stats["partial"] += 1
        return chunk  # the engine maps the gripper as the profile says (as decoded)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
