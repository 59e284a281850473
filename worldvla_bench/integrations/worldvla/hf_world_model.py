"""`worldvla_hf`: a released WorldVLA checkpoint as a `WorldModel` for `worldvla-bench wm-eval`.

Loads a LOCAL checkpoint directory and the release's `chameleon/tokenizer` folder (VQ-GAN
encoder and decoder; see `chameleon_adapter`). Each prediction step builds the official
world-model prompt (data/world_model_conv_generation.py main: "Generate the next image based on
the provided sequence of historical images and corresponding actions." then (image, action)
pairs, end of turn; trained with ``--his 1``, so one pair by default), generates one image with
the image-token layout forced (grid tokens, rows closed by the new-line token, end of image),
decodes it with the VQ-GAN and feeds it back: the rollout starts from one real frame and runs
on its own predictions (frames decoded to pixels and encoded again, as the official rollout
helper libero_util/Chameleon_utils.py get_action_Chameleon_dis_awm_g_video returns pixels).
`predict_batch` rolls several clips out together, one batched generation per step.

Options beyond the official rollout, as the `worldvla` world model's (`world_model`):
`feedback='codes'` feeds each step's predicted codes back instead of the decoded frame encoded
again; `temperature` > 0 (with `top_k`, `seed`) samples the image codes, clip by clip with a
seed from (seed, clip metadata, instruction, last context frame, step).

Frames are upright uint8 (H, W, 3) as wm-eval reads them (the official frames are the 180-degree
rotated agentview, i.e. upright). They are resized to `resolution` (None: kept; sides must be
multiples of 32) and predictions resized back to the context frames' size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.chameleon_adapter import (
    GRID_PATCH,
    WORLD_HISTORY,
    ChameleonWorldVLA,
    check_attn_implementation,
    load_released,
)
from worldvla_bench.integrations.worldvla.generation import Sampling, derive_seed
from worldvla_bench.integrations.worldvla.world_model import check_world_model_arguments, clip_seed
from worldvla_bench.observation_profiles import resize_image
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel


class WorldVLAHFWorldModel(WorldModel):
    """A released WorldVLA checkpoint as a world model; see the module docstring.

    `checkpoint_dir`, `tokenizer_dir`: local directories as for the `worldvla_hf` policy.
    `history`: (image, action) pairs in the prompt (1 as the released training data).
    `batch_size`: clips generated together by `predict_batch`. `feedback`, `temperature`,
    `top_k`, `seed`: see the module docstring (default: the official greedy pixel rollout).
    """

    def __init__(
        self,
        checkpoint_dir: str,
        tokenizer_dir: str,
        resolution: int | None = 256,
        history: int = WORLD_HISTORY,
        attn_implementation: str = "sdpa",
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int = 8,
        num_threads: int | None = None,
        trust_pickle: bool = False,
        feedback: str = "pixels",
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int = 0,
    ) -> None:
        check_world_model_arguments(feedback, temperature, top_k, seed)
        self.feedback = feedback
        self.sampling = Sampling(temperature, top_k, seed)
        check_attn_implementation(attn_implementation)
        if resolution is not None and (int(resolution) < GRID_PATCH
                                       or int(resolution) % GRID_PATCH):
            raise ValueError(f"resolution must be a multiple of {GRID_PATCH}, got {resolution}")
        if int(history) < 1 or int(batch_size) < 1:
            raise ValueError("history and batch_size must be >= 1")
        if num_threads is not None:
            torch.set_num_threads(max(1, int(num_threads)))
        self.adapter: ChameleonWorldVLA = load_released(
            checkpoint_dir, tokenizer_dir, attn_implementation=attn_implementation,
            device=device, dtype=dtype, trust_pickle=trust_pickle, decoder=True)
        self.resolution = None if resolution is None else int(resolution)
        self.history = int(history)
        self.batch_size = int(batch_size)

    def _model_frame(self, frame: np.ndarray) -> np.ndarray:
        out = np.asarray(frame, dtype=np.uint8)
        if self.resolution is not None and out.shape[:2] != (self.resolution, self.resolution):
            if out.shape[0] != out.shape[1]:
                raise BenchError(f"context frames must be square, got {out.shape[:2]}")
            out = resize_image(out, self.resolution)
        if out.shape[0] % GRID_PATCH or out.shape[1] % GRID_PATCH:
            raise BenchError(f"frame sides must be multiples of {GRID_PATCH}, got "
                             f"{out.shape[:2]} (set resolution)")
        return out

    @classmethod
    def check_arguments(cls, feedback: str = "pixels", temperature: float | None = None,
                        top_k: int | None = None, seed: int = 0, **_: Any) -> None:
        """Refuse bad options before anything is loaded (one-line ValueError)."""
        check_world_model_arguments(feedback, temperature, top_k, seed)

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, instruction: str,
                context: PredictionContext | None = None) -> np.ndarray:
        return self.predict_batch([context_frames], [actions], [instruction], [context])[0]

    def predict_batch(self, context_frames: Sequence[np.ndarray], actions: Sequence[np.ndarray],
                      instructions: Sequence[str] | None = None,
                      contexts: Sequence[PredictionContext | None] | None = None
                      ) -> list[np.ndarray]:
        """One rollout per clip: (N_i, H, W, 3) uint8 from (C_i, H, W, 3) frames and (N_i, 7).
        `instructions` and `contexts` (one per clip) only seed sampled decoding."""
        if len(context_frames) != len(actions):
            raise BenchError("one action sequence per clip")
        texts = list(instructions) if instructions is not None else [""] * len(actions)
        metas = list(contexts) if contexts is not None else [None] * len(actions)
        if len(texts) != len(actions) or len(metas) != len(actions):
            raise BenchError("one instruction and one context (or None) per clip")
        out: list[np.ndarray] = []
        for start in range(0, len(actions), self.batch_size):
            stop = start + self.batch_size
            out += self._rollout(list(context_frames[start:stop]), list(actions[start:stop]),
                                 texts[start:stop], metas[start:stop])
        return out

    def _rollout(self, context_frames: list[np.ndarray], actions: list[np.ndarray],
                 texts: list[str], metas: list[PredictionContext | None]) -> list[np.ndarray]:
        frames, acts = [], []
        for clip, a in zip(context_frames, actions, strict=True):
            f, a = np.asarray(clip), np.asarray(a, dtype=np.float64)
            if f.ndim != 4 or f.shape[-1] != 3 or not len(f):
                raise BenchError(f"context frames must be (C, H, W, 3) with C >= 1, got {f.shape}")
            if a.ndim != 2 or a.shape[1] != 7:
                raise BenchError(f"actions must be (N, 7), got {a.shape}")
            frames.append(f)
            acts.append(a)
        shapes = {f.shape[1:] for f in frames}
        if len(shapes) != 1:
            raise BenchError(f"clips of one batch need one frame size, got {sorted(shapes)}")
        height, width = frames[0].shape[1:3]
        clip_seeds = ([] if self.sampling.greedy else
                      [clip_seed(self.sampling.seed, f[-1], t, c)
                       for f, t, c in zip(frames, texts, metas, strict=True)])
        current = np.stack([self._model_frame(f[-1]) for f in frames])
        codes = self.adapter.encode_images(current)  # (B, h, w)
        h, w = codes.shape[1:]
        history: list[list[torch.Tensor]] = [[codes[i]] for i in range(len(frames))]
        predicted: list[list[np.ndarray]] = [[] for _ in frames]
        for t in range(max(len(a) for a in acts)):
            live = [i for i, a in enumerate(acts) if t < len(a)]
            prompts = []
            for i in live:
                past = acts[i][max(0, t + 1 - self.history) : t + 1]
                prompts.append(self.adapter.world_prompt(history[i][-len(past):], past))
            sampled = {} if self.sampling.greedy else {
                "sampling": self.sampling, "seeds": [derive_seed(clip_seeds[i], t) for i in live]}
            new_codes = self.adapter.generate_images(prompts, h, w, **sampled)
            pixels = self.adapter.decode_codes(new_codes)  # (B', H', W', 3) uint8
            # fed back as a real frame would be (encoded again), or as the predicted codes
            again = (new_codes if self.feedback == "codes" else self.adapter.encode_images(pixels))
            for k, i in enumerate(live):
                predicted[i].append(pixels[k])
                history[i].append(again[k])
        out = []
        for frames_i, a in zip(predicted, acts, strict=True):
            if not len(a):
                out.append(np.zeros((0, height, width, 3), np.uint8))
                continue
            clip = np.stack(frames_i)
            if clip.shape[1:3] != (height, width):
                if height != width:
                    raise BenchError(f"context frames must be square, got {height}x{width}")
                clip = resize_image(clip, height)
            out.append(clip.astype(np.uint8))
        return out

    def close(self) -> None:
        self.adapter = None  # type: ignore[assignment]
