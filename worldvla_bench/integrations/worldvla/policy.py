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
- or, with ``temperature > 0``, sampled decoding (softmax at that temperature, among the `top_k`
  most likely tokens if set): each call draws with its own generator, seeded from (`seed`,
  suite, task, trial, episode seed, call index within the episode), so a batch (`act_batch`)
  answers as one call at a time does, and a rerun (or resumed run) replays the same episode.
  The call index restarts at the first call of an episode (the one whose observation has no
  history frame) and at `reset`;
- an answer without any well-formed action block (or a prompt that fills the model's context)
  ends the episode as a failure, as the official eval ends it where it has no block to run
  (`EndEpisode`, reason in the record's `extra['ended_by_policy']` with its cause:
  `ActionTokenizer.missing_block_cause`, counted in `stats['broken']`); malformed blocks
  among well-formed ones are skipped, this model's own decoding rule (`tiny_layout`:
  'strict'). ``on_broken='continue'`` gives a safe chunk there instead (zero motion, gripper
  kept at its last command; open at the start), counted in `stats['fallbacks']`, and goes on;
- ``constrained=True`` (not WorldVLA's: its eval decodes unconstrained) lets decoding choose
  only tokens that keep the answer well formed (K blocks of 7 value tokens, then end of turn):
  the best allowed token where the model would emit, say, an image code inside a block. So no
  block is skipped and no answer is broken (short of a prompt that fills the context).

`act_batch(observations, contexts)` answers many episodes with one left-padded batched
generation (`generation.generate`), each entry as `act` would; so `serve-policy worldvla
--max-batch N` serves N env workers with one model. ``on_broken='continue'`` keeps the last
gripper per episode, which a shared batched policy cannot: that mode has no `act_batch`.

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

from worldvla_bench.integrations.worldvla.checkpoints import checkpoint_identity
from worldvla_bench.integrations.worldvla.devices import autocast, resolve_device, use_bf16
from worldvla_bench.integrations.worldvla.generation import (
    Sampling,
    action_constraint,
    action_stop,
    check_sampling,
    derive_seed,
    generate,
)
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.sequence import pad_sequences
from worldvla_bench.integrations.worldvla.shipped import DEFAULT_CHECKPOINT
from worldvla_bench.integrations.worldvla.training import load_checkpoint
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy

INSTRUCTION_SOURCES = ("language", "training")
#: `previous_frame` -> the observation profile that delivers it
PREVIOUS_FRAME = {"env_step": "worldvla", "policy_call": "worldvla_policy_call"}
OPEN_GRIPPER = -1.0
#: What a broken answer does: end the episode as a failure (official), or go on (safe chunk).
ON_BROKEN = ("end", "continue")


def generate_action_tokens(
    model: WorldVLA,
    instructions: list[str],
    prev_images: list[np.ndarray],
    cur_images: list[np.ndarray],
    num_blocks: int | None,
    action_mask: bool = True,
    max_new_tokens: int | None = None,
    sampling: Sampling | None = None,
    seeds: list[int] | None = None,
    constrained: bool = False,
) -> list[list[int] | None]:
    """Answers for a batch, one left-padded generation per token budget: each sample's new
    tokens (None where its prompt fills the model's context), as it would get them alone.
    Greedy unless `sampling` says otherwise (then sample i draws with seed `seeds[i]`).
    `constrained`: only well-formed answers (`generation.action_constraint`: `num_blocks`
    blocks of 7 values, as far as the budget allows). Images are uint8 (H, W, 3) at any size
    (the model resizes them to its own)."""
    b = len(instructions)
    if not (len(prev_images) == len(cur_images) == b):
        raise ValueError("one previous and one current frame per instruction")
    if seeds is not None and len(seeds) != b:
        raise ValueError("one seed per instruction")
    codes = model.encode_images(np.stack([*prev_images, *cur_images]))
    prompts = [model.tokenizer.action_prompt(instructions[i], codes[i], codes[b + i])
               for i in range(b)]
    cap = max_new_tokens or model.config.max_new_action_tokens
    groups: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        budget = min(cap, model.transformer.config.max_seq_len - len(prompt))
        if budget >= 1:
            groups.setdefault(budget, []).append(i)
    answers: list[list[int] | None] = [None] * b
    constraint = action_constraint(model.tokenizer.vocab, num_blocks) if constrained else None
    for budget, members in groups.items():  # a shared budget keeps every sample's own stop
        ids, valid = pad_sequences([prompts[i] for i in members])
        out = generate(model.transformer, ids, valid, max_new_tokens=budget,
                       action_mask=action_mask, constraint=constraint,
                       stop=action_stop(num_blocks), sampling=sampling,
                       seeds=None if seeds is None else [seeds[i] for i in members])
        for row, i in enumerate(members):
            answers[i] = out.new_tokens[row][out.new_valid[row]].tolist()
    return answers


def decode_action_chunk(
    model: WorldVLA,
    instruction: str,
    prev_image: np.ndarray,
    cur_image: np.ndarray,
    num_blocks: int | None,
    action_mask: bool = True,
    max_new_tokens: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Greedy action chunk (K', 7) (its well-formed blocks, K' <= num_blocks, maybe 0) and the
    generated tokens. Images are uint8 (H, W, 3) at any size."""
    tokens = generate_action_tokens(model, [instruction], [prev_image], [cur_image], num_blocks,
                                    action_mask, max_new_tokens)[0]
    if tokens is None:
        raise ValueError("the prompt fills the model's context")
    chunk = model.tokenizer.actions.decode(tokens)
    return (chunk[:num_blocks] if num_blocks is not None else chunk), tokens


class ActsInBatches:
    """`act` and `act_batch` of both WorldVLA policies, through their `_answer(observations,
    contexts)`: one batched generation, each entry a (K, 7) chunk or an `EndEpisode`; and the
    seeds of sampled decoding (`call_seeds`)."""

    _context: EpisodeContext | None
    camera: str
    sampling: Sampling
    _calls: dict[tuple[Any, ...] | None, int]  # episode -> index of its last call

    @classmethod
    def check_arguments(cls, temperature: float | None = None, top_k: int | None = None,
                        seed: int = 0, **_: Any) -> None:
        """Refuse bad decoding options before anything is loaded (one-line ValueError)."""
        check_sampling(temperature, top_k, seed)

    def call_seeds(self, observations: list[dict[str, Any]],
                   contexts: list[EpisodeContext | None]) -> list[int] | None:
        """One sampling seed per call (None when greedy), from (`seed`, episode, call index);
        counts the calls of each episode."""
        if self.sampling.greedy:
            return None
        seeds = []
        for observation, context in zip(observations, contexts, strict=True):
            key = _episode_key(context or self._context)
            first = not len(observation.get(f"{self.camera}_history", ()))
            index = 0 if first else self._calls.get(key, -1) + 1
            self._calls[key] = index
            seeds.append(derive_seed(self.sampling.seed, key, index))
        return seeds

    def forget_calls(self, context: EpisodeContext | None) -> None:
        """Restart the call count of an episode (at `reset`)."""
        self._calls.pop(_episode_key(context), None)

    def _answer(self, observations: list[dict[str, Any]],
                contexts: list[EpisodeContext | None]) -> list[np.ndarray | EndEpisode]:
        raise NotImplementedError

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        out = self._answer([observation], [self._context])[0]
        if isinstance(out, EndEpisode):
            raise out
        return out

    def act_batch(self, observations: list[dict[str, Any]],
                  contexts: list[EpisodeContext | None] | None = None
                  ) -> list[np.ndarray | EndEpisode]:
        """One batched generation for many episodes: each entry what `act` gives for that
        observation and episode context (a chunk, or the `EndEpisode` it would raise)."""
        observations = list(observations)
        contexts = list(contexts or [None] * len(observations))
        if len(contexts) != len(observations):
            raise ValueError("one context (or None) per observation")
        return self._answer(observations, contexts) if observations else []


class WorldVLAPolicy(ActsInBatches, Policy):
    """A WorldVLA checkpoint as a policy; see the module docstring.

    `chunk_size` and `action_mask` default to what the checkpoint was trained with.
    `instruction_source` 'language' prompts with the env's instruction (as WorldVLA's eval does,
    even where training used other text, e.g. libero_10's scene-prefixed names); 'training'
    prompts with the text the checkpoint was trained on for that instruction (falls back to the
    language string for an unseen task). `device` any torch device (default CPU); `bf16`
    None autocasts to bfloat16 on CUDA only. `temperature` (None or 0: greedy, the default),
    `top_k` and `seed`: sampled decoding; `constrained`: well-formed answers only (module
    docstring).
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
        on_broken: str = "end",
        device: str = "cpu",
        bf16: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int = 0,
        constrained: bool = False,
    ) -> None:
        self.sampling = Sampling(temperature, top_k, seed)
        self.constrained = bool(constrained)
        if on_broken not in ON_BROKEN:
            raise ValueError(f"on_broken must be one of {ON_BROKEN}, got {on_broken!r}")
        if instruction_source not in INSTRUCTION_SOURCES:
            raise ValueError(f"instruction_source must be one of {INSTRUCTION_SOURCES}, "
                             f"got {instruction_source!r}")
        if previous_frame not in PREVIOUS_FRAME:
            raise ValueError(f"previous_frame must be one of {list(PREVIOUS_FRAME)}, "
                             f"got {previous_frame!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        torch.set_num_threads(max(1, int(num_threads)))
        self.device = resolve_device(device)
        self.bf16 = use_bf16(self.device, bf16)
        self.model, self.meta = load_checkpoint(checkpoint)
        self.model.to(self.device)
        self._served = checkpoint_identity(self.meta)
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
        self.on_broken = on_broken
        if on_broken == "continue":
            self.act_batch = None  # type: ignore[assignment]  # stateful: see module docstring
        self.stats: dict[str, float] = {"calls": 0, "chunks": 0, "fallbacks": 0, "partial": 0,
                                        "broken": 0, "decode_s": 0.0}
        self._context: EpisodeContext | None = None
        self._calls: dict[tuple[Any, ...] | None, int] = {}  # episode -> index of its last call
        self.reset(None)

    # -- episode state
    def reset(self, context: EpisodeContext | None) -> None:
        self._context = context
        self._gripper = OPEN_GRIPPER  # LIBERO's wait steps leave the gripper open
        self.episode_fallbacks = 0
        self.forget_calls(context)

    def prompt_instruction(self, observation: dict[str, Any],
                           context: EpisodeContext | None = None) -> str:
        context = context or self._context
        language = str(observation.get("instruction") or (context.instruction if context else ""))
        if self.instruction_source == "training":
            return self.meta["instructions"].get(language, language)
        return language

    def served_model(self) -> dict[str, Any]:
        """The checkpoint this policy runs (file name, sha256 of its bytes, training step). The
        engine keeps it in every record and in the run's manifest, so a run resumed after the
        file changed (say, a new shipped default under the same name) stops in one line instead
        of mixing two models."""
        return dict(self._served)

    def fallback_chunk(self) -> np.ndarray:
        """Zero motion, gripper kept at its last command, for `chunk_size` steps."""
        chunk = np.zeros((self.chunk_size, 7))
        chunk[:, 6] = self._gripper
        return chunk

    def _answer(self, observations: list[dict[str, Any]],
                contexts: list[EpisodeContext | None]) -> list[np.ndarray | EndEpisode]:
        self.stats["calls"] += len(observations)
        frames, previous = [], []
        for observation in observations:
            frame = observation[f"{self.camera}_image"]
            history = observation.get(f"{self.camera}_history", ())
            frames.append(frame)
            previous.append(history[-1] if len(history) else frame)  # first call: frame twice
        texts = [self.prompt_instruction(o, c) for o, c in zip(observations, contexts, strict=True)]
        seeds = self.call_seeds(observations, contexts)
        sampled = {} if seeds is None else {"sampling": self.sampling, "seeds": seeds}
        t0 = time.perf_counter()
        with autocast(self.device, self.bf16):
            answers = generate_action_tokens(self.model, texts, previous, frames,
                                             self.chunk_size, self.action_mask,
                                             self.max_new_tokens, **sampled,
                                             constrained=self.constrained)
        self.stats["decode_s"] += time.perf_counter() - t0
        self.stats["chunks"] += len(observations)
        return [self._chunk(tokens) for tokens in answers]

    def _chunk(self, tokens: list[int] | None) -> np.ndarray | EndEpisode:
        chunk = (np.zeros((0, 7)) if tokens is None
                 else self.model.tokenizer.actions.decode(tokens)[: self.chunk_size])
        if self.on_broken == "end" and (not len(chunk) or not np.all(np.isfinite(chunk))):
            self.stats["broken"] += 1
            fault = ("the prompt fills the model's context" if tokens is None
                     else "no well-formed action block in the answer: "
                     + self.model.tokenizer.actions.missing_block_cause(tokens))
            return EndEpisode(f"broken answer: {fault}")
        if not len(chunk) or not np.all(np.isfinite(chunk)):
            self.stats["fallbacks"] += 1
            self.episode_fallbacks += 1
            return self.fallback_chunk()
        if len(chunk) < self.chunk_size:
            self.stats["partial"] += 1
        self._gripper = float(chunk[-1, 6])
        return chunk  # the engine maps the gripper as the profile says (as decoded)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _episode_key(context: EpisodeContext | None) -> tuple[Any, ...] | None:
    """What identifies an episode for sampling seeds: (suite, task, trial, episode seed)."""
    if context is None:
        return None
    return (context.suite, context.task_id, context.trial, context.seed)
