"""Demonstrations as VQ codes: what the transformer trains on, in one small file.

MuJoCo rollouts are not bit-reproducible across machines, so re-recording the demos elsewhere
gives (slightly) other data. A token file keeps a demo set exactly as the transformer reads it
(the VQ codes of every frame, the actions, the labels and texts), encoded by one VQ-VAE whose
file's sha256 it records: training with `TrainConfig.tokens` (and that VQ-VAE as `vq_from`)
gives the same samples, hence the same losses, as training on the demos themselves, on any
machine. It is about 1/50 of the 64-px frames (8 x 8 codes of 2 bytes per frame).

Layout (`numpy.savez_compressed`): `codes` (sum of frames, H', W') int16, `frame_counts` and
`action_counts` (E,) per episode, `actions` (sum of steps, 7) float64, `labels` (the same, or
empty when the labels are the actions) and `meta`, a JSON string: format, texts, languages,
files, world_files, world_only, intended_labels, vq_sha256, vq_file, and `recipe`, the reading
arguments that shaped the set (`RECIPE_KEYS`), which a training on the file must not
contradict.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldvla_bench.atomic import write_atomic
from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.checkpoints import file_sha256, read_checkpoint
from worldvla_bench.integrations.worldvla.demo_data import DemoSet
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.vq import images_to_tensor

TOKENS_FORMAT = "worldvla_bench.worldvla.tokens/1"
#: TrainConfig fields that decide what a demo set holds (texts, labels, frames read)
RECIPE_KEYS = ("view", "instruction_source", "max_demos", "action_labels")


def save_tokens(path: str | Path, demos: DemoSet, codes: list[np.ndarray],
                vq_checkpoint: str | Path, recipe: dict[str, Any] | None = None) -> Path:
    """Write `demos` (frames not kept) with `codes[e]` (frames of episode e, H', W') encoded by
    the VQ-VAE of `vq_checkpoint`, atomically; `recipe` holds the `RECIPE_KEYS` values the demos
    were read with."""
    if len(codes) != len(demos):
        raise BenchError(f"{len(codes)} code arrays for {len(demos)} episodes")
    if codes and max(int(c.max()) for c in codes) > np.iinfo(np.int16).max:
        raise BenchError("VQ codes beyond int16: a codebook this large needs another layout")
    meta = {"format": TOKENS_FORMAT, "texts": demos.texts, "languages": demos.languages,
            "files": demos.files, "world_files": demos.world_files,
            "world_only": [demos.is_world_only(e) for e in range(len(demos))],
            "intended_labels": demos.intended_labels,
            "vq_sha256": file_sha256(vq_checkpoint), "vq_file": Path(vq_checkpoint).name,
            "recipe": dict(recipe or {})}
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, codes=np.concatenate(codes).astype(np.int16),
        frame_counts=np.array([len(c) for c in codes], np.int64),
        action_counts=np.array([len(a) for a in demos.actions], np.int64),
        actions=np.concatenate(demos.actions).astype(np.float64),
        labels=(np.concatenate([demos.label(e) for e in range(len(demos))]).astype(np.float64)
                if demos.labels else np.zeros((0, 7))),
        meta=np.array(json.dumps(meta)))
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def read_token_meta(path: str | Path) -> dict[str, Any]:
    """The `meta` record of a token file (BenchError if it is not one)."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError) as error:
        raise BenchError(f"{path} is not a token file ({error})") from error
    if meta.get("format") != TOKENS_FORMAT:
        raise BenchError(f"{path}: unknown token format {meta.get('format')!r}")
    return meta


def load_tokens(path: str | Path, world_only: bool = True,
                vq_checkpoint: str | Path | None = None) -> tuple[DemoSet, list[np.ndarray]]:
    """(demo set without frames, codes per episode) of a token file; `world_only` False leaves
    out its world-only episodes. `vq_checkpoint`, when given, must be the file the codes were
    encoded with (same sha256)."""
    meta = read_token_meta(path)
    if vq_checkpoint is not None and file_sha256(vq_checkpoint) != meta["vq_sha256"]:
        read_checkpoint(vq_checkpoint)  # a damaged file is reported as such, not as another VQ
        raise BenchError(f"{path} was encoded by another VQ-VAE than {vq_checkpoint} "
                         f"(its sha256 {meta['vq_sha256'][:12]}...): train with the VQ-VAE it "
                         f"names ({meta['vq_file']})")
    with np.load(Path(path), allow_pickle=False) as data:
        frame_ends = np.cumsum(data["frame_counts"])[:-1]
        action_ends = np.cumsum(data["action_counts"])[:-1]
        codes = np.split(data["codes"].astype(np.int64), frame_ends)
        actions = np.split(data["actions"], action_ends)
        labels = np.split(data["labels"], action_ends) if len(data["labels"]) else []
    keep = [e for e, w in enumerate(meta["world_only"]) if world_only or not w]
    any_world = world_only and any(meta["world_only"])
    demos = DemoSet(frames=[], actions=[actions[e] for e in keep],
                    texts=[meta["texts"][e] for e in keep],
                    languages=[meta["languages"][e] for e in keep], files=list(meta["files"]),
                    world_only=[meta["world_only"][e] for e in keep] if any_world else [],
                    world_files=list(meta["world_files"]) if any_world else [],
                    labels=[labels[e] for e in keep] if labels else [],
                    intended_labels=int(meta["intended_labels"]))
    return demos, [codes[e] for e in keep]


def encode_frames(model: WorldVLA, demos: DemoSet, batch: int = 256) -> list[np.ndarray]:
    """The VQ codes of every frame of every episode, (T+1, H', W') int64 each."""
    model.vq.eval()
    codes = []
    with torch.no_grad():
        for frames in demos.frames:
            parts = [model.vq.encode(images_to_tensor(frames[i : i + batch]).to(model.device))
                     for i in range(0, len(frames), batch)]
            codes.append(torch.cat(parts).cpu().numpy().astype(np.int64))
    return codes


def make_tokens(path: str | Path, vq_checkpoint: str | Path, data: list[str],
                world_data: list[str] | None = None, **recipe: Any) -> Path:
    """Read the demos of `data` (and `world_data`, world-only) as training would, with the
    `RECIPE_KEYS` values in `recipe`, encode every frame with the VQ-VAE of `vq_checkpoint`
    and write them as a token file."""
    from worldvla_bench.integrations.worldvla.checkpoints import load_vq
    from worldvla_bench.integrations.worldvla.demo_data import load_training_demos
    from worldvla_bench.integrations.worldvla.train_config import TrainConfig

    unknown = set(recipe) - set(RECIPE_KEYS)
    if unknown:
        raise BenchError(f"not a demo-reading argument: {sorted(unknown)}")
    model = load_vq(vq_checkpoint)
    read = {**{key: getattr(TrainConfig, key) for key in RECIPE_KEYS}, **recipe}
    demos = load_training_demos(data, world_data or [], model.config.vq.image_size, **read)
    return save_tokens(path, demos, encode_frames(model, demos), vq_checkpoint, read)
