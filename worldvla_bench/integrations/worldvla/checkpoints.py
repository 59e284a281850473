"""WorldVLA checkpoints: written atomically (`last.pt` with optimizer and RNG state to resume,
`final.pt` weights only), found in a training directory, loaded into a model."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from worldvla_bench.atomic import write_atomic
from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.config import WorldVLAConfig
from worldvla_bench.integrations.worldvla.model import WorldVLA

CHECKPOINT_FORMAT = "worldvla_bench.worldvla/1"
#: the shipped tiny checkpoints (`shipped.py`, `make tiny-checkpoints`): name -> file in WEIGHTS_DIR
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED: dict[str, str] = {
    "tiny-libero-goal": "tiny_libero_goal.pt",
    "tiny-libero-goal-early": "tiny_libero_goal_early.pt",
    # earlier defaults, kept for comparison; the current `make tiny-checkpoints` regenerates
    # neither: v2 (2026-12-04: next-frame world model, 15000 steps, the same data), v1
    # (2026-12-03: 3 tasks, 18 demos, image codes weighted 0.04)
    "tiny-libero-goal-v2": "tiny_libero_goal_v2.pt",
    "tiny-libero-goal-v1": "tiny_libero_goal_v1.pt",
}
DEFAULT_CHECKPOINT = "tiny-libero-goal"
LAST_CHECKPOINT = "last.pt"
FINAL_CHECKPOINT = "final.pt"
#: training-directory folder of the float16 snapshots (`train --snapshot-every`)
SNAPSHOTS_DIR = "snapshots"


def file_sha256(path: str | Path | None) -> str:
    """Hex sha256 of a file's bytes ('' when there is no such file)."""
    if not path or not Path(path).is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What names a loaded checkpoint (`load_checkpoint`'s metadata) in run records: its file
    name, the sha256 of its bytes and its training step (not its path, which differs between
    clones)."""
    return {"file": Path(meta["path"]).name, "sha256": file_sha256(meta["path"]),
            "step": meta["step"]}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """torch.save through a temporary sibling and an atomic rename."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def shipped_path(name: str) -> Path | None:
    """The file of a shipped checkpoint name, or None if `name` is not one."""
    file = SHIPPED.get(str(name))
    return None if file is None else WEIGHTS_DIR / file


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, a training directory (its final.pt, else last.pt), or the name of a
    shipped checkpoint (`shipped.SHIPPED`, e.g. 'tiny-libero-goal')."""
    shipped = shipped_path(str(path))
    if shipped is not None:
        if not shipped.exists():
            raise BenchError(f"shipped checkpoint {path!r} is missing ({shipped}); regenerate "
                             "it with `make tiny-checkpoints`")
        return shipped
    path = Path(path)
    if path.is_dir():
        for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT):
            if (path / name).exists():
                return path / name
        raise BenchError(f"{path} holds no {FINAL_CHECKPOINT} or {LAST_CHECKPOINT}")
    if not path.exists():
        raise BenchError(f"no such checkpoint: {path} (shipped: {', '.join(SHIPPED)})")
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # corrupt, truncated or foreign file
        raise BenchError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(data, dict) or "config" not in data or "state_dict" not in data:
        raise BenchError(f"{path} is not a WorldVLA checkpoint (no config/state_dict)")
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[WorldVLA, dict[str, Any]]:
    """(model in eval mode, metadata: train_args, chunk_size, action_mask, instruction_source,
    instructions, stage, step). Plain `WorldVLA.save` files load too, with default metadata."""
    data = read_checkpoint(path, map_location)
    model = WorldVLA(WorldVLAConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"])
    model.eval()
    args = data.get("train_args") or {}
    meta = {
        "path": str(resolve_checkpoint(path)),
        "format": data.get("format"),
        "train_args": args,
        "chunk_size": int(data.get("chunk_size", args.get("chunk_size", 5))),
        "action_mask": bool(data.get("action_mask", args.get("action_mask", True))),
        "world_model_weight": float(data.get("world_model_weight",
                                             args.get("world_model_weight", 0.0))),
        "instruction_source": data.get("instruction_source",
                                       args.get("instruction_source", "language")),
        "instructions": dict(data.get("instructions") or {}),
        "stage": data.get("stage", "done"),
        "step": int(data.get("step", 0)),
        "vq_step": int(data.get("vq_step", 0)),
        "exported": data.get("exported"),
    }
    return model, meta


def vq_state(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The VQ-VAE's weights of a checkpoint payload (its `vq.*` entries, prefix removed)."""
    return {k[len("vq."):]: v for k, v in data["state_dict"].items() if k.startswith("vq.")}


def save_vq_only(source: str | Path, target: str | Path) -> Path:
    """Write the VQ-VAE of checkpoint `source` alone (config, its `vq.*` weights, VQ step) to
    `target`: a file `load_vq` and `train --vq-from` read."""
    data = read_checkpoint(source)
    return save_checkpoint(target, {
        "format": data["format"], "config": data["config"], "vq_step": data.get("vq_step", 0),
        "state_dict": {f"vq.{k}": v for k, v in vq_state(data).items()},
        "source": str(source)})


def load_vq(path: str | Path) -> WorldVLA:
    """A model of checkpoint `path`'s config with its VQ-VAE loaded (the transformer as
    initialised): enough to encode frames, from a full checkpoint or a VQ-only file."""
    data = read_checkpoint(path)
    model = WorldVLA(WorldVLAConfig.from_dict(data["config"]))
    model.vq.load_state_dict(vq_state(data))
    model.eval()
    return model
