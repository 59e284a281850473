"""`worldvla_hf`: a released WorldVLA checkpoint (`Alibaba-DAMO-Academy/WorldVLA`) as a policy.

Loads a LOCAL `model_256/...` or `model_512/...` directory and the release's `chameleon/tokenizer`
folder with `transformers`' Chameleon classes (extra `hf`; see
`worldvla_bench.integrations.worldvla.chameleon_adapter` and docs/worldvla_checkpoints.md).

WorldVLA's LIBERO eval (profile `worldvla`): prompt "What action should the robot take to
{instruction}?" with the third-person camera's previous and current frames (upright, as our env
renders them; resized to `resolution`, a no-op for frames rendered at it, as the official eval
does), greedy decoding of action blocks until end of turn (cap 12 * 25 = 300 new tokens) with
the action attention mask, every decoded block executed open loop, the gripper as decoded. The
engine applies the profile (`observation_pipeline`): it renders the step before the last of each
chunk too, so `agentview_history` holds the previous env step's frame, resized to `resolution`
(`image_size`) as the current one; at the first call of an episode it is empty and the prompt
holds the current frame only (the official history is empty then).

Blocks are read as the official eval reads them (`ActionTokenizer.decode_chunk`): the blocks
before the first one it cannot execute. Where the official eval ends the episode as a failure
(libero_util/Chameleon_utils.py get_action_Chameleon_dis_awm_ck;
model/modeling_xllmx_chameleon_ck.py generate_dis_ma and generate_att_mask_3; the exception
caught in eval_solver_libero_256.py val_libero, which counts the episode as not done): a block
of 0 or 2-6 values, no block at all, an end-of-action token before any begin, or begin and end
tokens the official mask cannot pair (`chameleon_adapter.mask_fault`), so does ours by default
(``on_broken='end'``): the blocks before the broken one are executed, then the episode ends as a
failure (`EndEpisode`) with the reason in the record (`extra['ended_by_policy']`), counted in
`stats['broken']` and in the run's report. ``on_broken='continue'`` cuts the chunk there and
goes on; an empty chunk becomes a safe one (one step of zero motion, gripper kept), counted in
`stats['fallbacks']`: not the official rule, and it can only raise the success rate.

Batched serving: `act_batch(observations, contexts)` answers many episodes with one batched,
left-padded generation (`ChameleonWorldVLA.generate`), each entry as `act` would (a chunk, or an
`EndEpisode`), so `serve-policy worldvla_hf --max-batch 16` serves 16 env workers with one
model. With ``on_broken='continue'`` the safe chunk depends on the episode's last gripper command,
a per-episode state a shared batched policy cannot keep: that mode has no `act_batch` (the server
then builds one instance per connection, sharing the loaded model).

Loaded models are shared by the policy instances of one process with the same checkpoint and
settings (`share_model=True`, the default): the policy server builds one instance per
connection, and each would otherwise hold its own copy of the 7B weights.

Decoding is greedy, as the official eval's; `temperature` > 0 (with `top_k`, `seed`) samples
instead, each call seeded from (seed, episode, call index) as the `worldvla` policy does
(`policy.ActsInBatches.call_seeds`): batches answer as one call at a time, reruns replay.

The libero_10 trap: those checkpoints were trained with the task's file name (scene-prefixed,
"LIVING ROOM SCENE2 put both ...") as the instruction, WorldVLA's eval prompts with the plain
language string. `instruction_source='filename'` prompts with the file name (from the episode's
`task_name`), 'language' (default) with the env's instruction.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldvla_bench.integrations.worldvla.chameleon_adapter import (
    INSTRUCTION_SOURCES,
    MAX_NEW_TOKENS,
    ChameleonWorldVLA,
    check_attn_implementation,
    instruction_from_task_name,
    load_released,
)
from worldvla_bench.integrations.worldvla.generation import Sampling
from worldvla_bench.integrations.worldvla.policy import PREVIOUS_FRAME, ActsInBatches
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy

RESOLUTIONS = (256, 512)
#: What a broken answer does: end the episode as a failure (official), or go on (safe chunk).
ON_BROKEN = ("end", "continue")
OPEN_GRIPPER = -1.0
_SHARED: dict[tuple[Any, ...], ChameleonWorldVLA] = {}


class WorldVLAHFPolicy(ActsInBatches, Policy):
    """A released WorldVLA checkpoint as a policy; see the module docstring.

    `checkpoint_dir`: local `save_pretrained` directory (e.g. `.../model_256/libero_goal`);
    `tokenizer_dir`: local `chameleon/tokenizer` (vqgan.yaml, vqgan.ckpt, text_tokenizer.json).
    `resolution` 256 or 512 must match the checkpoint. `attn_implementation` 'sdpa' or 'eager'
    (flash attention is refused: it would drop the action mask). `dtype` defaults to bfloat16 on
    CUDA, float32 on CPU. `max_blocks` (None = all) truncates the decoded chunk.
    `share_model` reuses the model another instance of this process loaded with the same settings.
    `on_broken` 'end' (the official rule, default) or 'continue' (module docstring).
    `temperature` (None or 0: greedy, the default), `top_k`, `seed`: sampled decoding.
    """

    cameras = ("agentview",)
    observation_profile = "worldvla"

    def __init__(
        self,
        checkpoint_dir: str,
        tokenizer_dir: str,
        resolution: int = 256,
        instruction_source: str = "language",
        attn_implementation: str = "sdpa",
        device: str = "cpu",
        dtype: str | None = None,
        action_mask: bool = True,
        previous_frame: str = "env_step",
        max_new_tokens: int = MAX_NEW_TOKENS,
        max_blocks: int | None = None,
        num_threads: int | None = None,
        trust_pickle: bool = False,
        share_model: bool = True,
        on_broken: str = "end",
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int = 0,
    ) -> None:
        self.sampling = Sampling(temperature, top_k, seed)
        if int(resolution) not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
        if instruction_source not in INSTRUCTION_SOURCES:
            raise ValueError(f"instruction_source must be one of {INSTRUCTION_SOURCES}, "
                             f"got {instruction_source!r}")
        if previous_frame not in PREVIOUS_FRAME:
            raise ValueError(f"previous_frame must be one of {list(PREVIOUS_FRAME)}, "
                             f"got {previous_frame!r}")
        if max_blocks is not None and int(max_blocks) < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks}")
        if on_broken not in ON_BROKEN:
            raise ValueError(f"on_broken must be one of {ON_BROKEN}, got {on_broken!r}")
        check_attn_implementation(attn_implementation)
        if num_threads is not None:
            torch.set_num_threads(max(1, int(num_threads)))
        key = (str(Path(checkpoint_dir).expanduser().resolve()),
               str(Path(tokenizer_dir).expanduser().resolve()), attn_implementation, str(device),
               str(dtype))
        adapter = _SHARED.get(key) if share_model else None
        if adapter is None:
            adapter = load_released(checkpoint_dir, tokenizer_dir,
                                    attn_implementation=attn_implementation, device=device,
                                    dtype=dtype, trust_pickle=trust_pickle)
            if share_model:
                _SHARED[key] = adapter
        self.adapter: ChameleonWorldVLA = adapter
        self.observation_profile = PREVIOUS_FRAME[previous_frame]
        self.camera = self.cameras[0]
        self.resolution = self.image_size = int(resolution)
        self.instruction_source = instruction_source
        self.action_mask = bool(action_mask)
        self.previous_frame = previous_frame
        self.max_new_tokens = int(max_new_tokens)
        self.max_blocks = None if max_blocks is None else int(max_blocks)
        self.on_broken = on_broken
        if on_broken == "continue":
            self.act_batch = None  # type: ignore[assignment]  # stateful: see module docstring
        self.stats: dict[str, float] = {"calls": 0, "chunks": 0, "fallbacks": 0, "blocks": 0,
                                        "broken": 0, "decode_s": 0.0}
        self.last_tokens: list[int] = []
        self.last_prompt: list[int] = []
        self._warned_no_task = False
        self._calls: dict[tuple[Any, ...] | None, int] = {}
        self.reset(None)

    # -- episode state
    def reset(self, context: EpisodeContext | None) -> None:
        self._context = context
        self._gripper = OPEN_GRIPPER
        self.episode_fallbacks = 0
        self.forget_calls(context)

    def prompt_instruction(self, observation: dict[str, Any] | None = None,
                           context: EpisodeContext | None = None) -> str:
        """The instruction text of the prompt (see `instruction_source`); `context` defaults
        to the episode's (`reset`)."""
        context = context or self._context
        language = str((observation or {}).get("instruction")
                       or (context.instruction if context else ""))
        if self.instruction_source == "filename":
            if context is not None and context.task_name:
                return instruction_from_task_name(context.task_name)
            if not self._warned_no_task:
                warnings.warn("instruction_source='filename' without an episode task_name: "
                              "using the language instruction", stacklevel=2)
                self._warned_no_task = True
        return language

    def fallback_chunk(self) -> np.ndarray:
        chunk = np.zeros((1, 7))
        chunk[:, 6] = self._gripper
        return chunk

    def _answer(self, observations: list[dict[str, Any]],
                contexts: list[EpisodeContext | None]) -> list[np.ndarray | EndEpisode]:
        self.stats["calls"] += len(observations)
        frames, previous = [], []
        for observation in observations:
            frames.append(observation[f"{self.camera}_image"])
            history = observation.get(f"{self.camera}_history", ())
            # no previous frame at the first query of an episode (the official history is empty)
            previous.append(history[-1] if len(history) else None)
        texts = [self.prompt_instruction(o, c) for o, c in zip(observations, contexts, strict=True)]
        seeds = self.call_seeds(observations, contexts)
        sampled = {} if seeds is None else {"sampling": self.sampling, "seeds": seeds}
        t0 = time.perf_counter()
        out = self.adapter.predict(texts, previous, np.stack(frames),
                                   max_new_tokens=self.max_new_tokens,
                                   action_mask=self.action_mask, **sampled)
        self.stats["decode_s"] += time.perf_counter() - t0
        self.stats["chunks"] += len(observations)
        self.last_tokens, self.last_prompt = out.tokens[-1], out.prompts[-1]
        return [self._chunk(actions, fault) for actions, fault in zip(out.actions, out.faults,
                                                                       strict=True)]

    def _chunk(self, actions: np.ndarray, fault: str | None) -> np.ndarray | EndEpisode:
        chunk = actions[: self.max_blocks] if self.max_blocks else actions
        if fault is not None and (self.max_blocks is None or len(chunk) < self.max_blocks):
            self.stats["broken"] += 1
            if self.on_broken == "end":
                return EndEpisode(f"broken answer: {fault}", chunk)
        if not len(chunk) or not np.all(np.isfinite(chunk)):
            self.stats["fallbacks"] += 1
            self.episode_fallbacks += 1
            return self.fallback_chunk()
        self.stats["blocks"] += len(chunk)
        self._gripper = float(chunk[-1, 6])  # as decoded: the profile maps the gripper to itself
        return chunk

    def close(self) -> None:
        self.adapter = None  # type: ignore[assignment]
