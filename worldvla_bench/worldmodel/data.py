"""Episodes for the world-model track: frames, actions and (when known) simulator states.

Two sources:
- our run directories, recorded with `worldvla-bench eval --save-frames`;
- LIBERO/robomimic HDF5 demonstration files (`data/demo_*/obs/agentview_rgb`, `actions`, and
  `states` when present). LIBERO's HDF5 images are stored upside down, as rendered; pass
  `upright=True` (the default) to rotate them by 180 degrees like our env's observations.

Alignment: `frames[t]` is the observation after `t` actions; `actions[t]` leads from frame t to
frame t+1, so len(frames) == len(actions) + 1. `states[t]` is the simulator state of frame t.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.records import load_episode_arrays, read_episodes, read_json

VIEW_ALIASES = {
    "agentview": ("frames_agentview", "agentview_rgb", "agentview_image"),
    "wrist": ("frames_robot0_eye_in_hand", "eye_in_hand_rgb", "robot0_eye_in_hand_image"),
}


@dataclass
class WMEpisode:
    """One episode: `frames` (T+1, H, W, 3) uint8 upright, `actions` (T, 7), optional `states`."""

    name: str
    frames: np.ndarray
    actions: np.ndarray
    instruction: str = ""
    states: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    control_states: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise BenchError(f"episode {self.name}: frames must be uint8 (T, H, W, 3), "
                             f"got {self.frames.dtype} {self.frames.shape}")
        if len(self.frames) != len(self.actions) + 1:
            raise BenchError(f"episode {self.name}: {len(self.frames)} frames for "
                             f"{len(self.actions)} actions (need one more frame than actions)")
        if self.states is not None and len(self.states) != len(self.frames):
            raise BenchError(f"episode {self.name}: {len(self.states)} states for "
                             f"{len(self.frames)} frames")


def _pick_view(keys, view: str, where: str) -> str:
    for key in VIEW_ALIASES.get(view, (view,)):
        if key in keys:
            return key
    raise BenchError(f"{where} has no frames of view {view!r}; available keys: {sorted(keys)}")


def read_run(run_dir: Path | str, view: str = "agentview") -> Iterator[WMEpisode]:
    """Episodes of one of our runs recorded with `--save-frames`, in record order."""
    run_dir = Path(run_dir)
    records = [r for r in read_episodes(run_dir) if r.get("episode_file") and not r.get("error")]
    if not records:
        raise BenchError(f"{run_dir} has no recorded episodes (run `eval --save-frames` first)")
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
    for record in records:
        arrays = load_episode_arrays(run_dir / record["episode_file"])
        key = _pick_view(arrays, view, f"{run_dir / record['episode_file']}")
        yield WMEpisode(
            name=Path(record["episode_file"]).stem,
            frames=arrays[key],
            actions=arrays["actions"],
            instruction=record.get("instruction", ""),
            states=arrays.get("states"),
            control_states=arrays.get("control_states"),
            meta={"suite": record["suite"], "task_id": record["task_id"], "trial": record["trial"],
                  "seed": record["seed"], "source": str(run_dir),
                  "image_size": manifest.get("config", {}).get("image_size")},
        )


def read_hdf5(path: Path | str, view: str = "agentview", upright: bool = True,
              limit: int | None = None) -> Iterator[WMEpisode]:
    """Episodes of a LIBERO/robomimic HDF5 file (`data/demo_N/...`), in demo-number order.

    robomimic stores one observation per action (obs[t] before actions[t]); the frame after the
    last action is not stored, so the last action is dropped to keep frames == actions + 1.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise BenchError(f"no such HDF5 file: {path}")
    with h5py.File(path, "r") as handle:
        if "data" not in handle:
            raise BenchError(f"{path} is not a LIBERO/robomimic file (no 'data' group)")
        data = handle["data"]
        instruction = _instruction(data)
        where = _env_args(data)
        names = sorted(data.keys(), key=lambda n: int(n.split("_")[-1]) if n[-1].isdigit() else 0)
        for count, name in enumerate(names):
            if limit is not None and count >= limit:
                break
            demo = data[name]
            key = _pick_view(demo["obs"].keys(), view, f"{path}:{name}/obs")
            frames = np.asarray(demo["obs"][key], dtype=np.uint8)
            if upright:
                frames = np.ascontiguousarray(frames[:, ::-1, ::-1])
            actions = np.asarray(demo["actions"], dtype=np.float64)[: len(frames) - 1]
            states = _optional(demo, "states", len(frames))
            meta: dict[str, Any] = {"source": str(path), **where}
            if "seed" in demo.attrs:
                meta.update(seed=int(demo.attrs["seed"]), trial=int(demo.attrs.get("trial", 0)))
            yield WMEpisode(name=name, frames=frames, actions=actions, instruction=instruction,
                            states=states, control_states=_optional(demo, "control_states",
                                                                    len(frames)),
                            meta=meta)


def _optional(demo, key: str, length: int) -> np.ndarray | None:
    return np.asarray(demo[key][:length], dtype=np.float64) if key in demo else None


def _json_attr(data, key: str) -> dict[str, Any]:
    """A JSON-object attribute of the file's `data` group; {} when missing or not an object."""
    import json

    try:
        value = json.loads(data.attrs.get(key, "{}"))
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _env_args(data) -> dict[str, Any]:
    """Suite and task of a file written by `worldvla-bench record` (LIBERO's own files have
    robosuite env arguments here instead, so they give nothing)."""
    args = _json_attr(data, "env_args")
    if "suite" not in args or "task_id" not in args:
        return {}
    return {"suite": str(args["suite"]), "task_id": int(args["task_id"])}


def _instruction(data) -> str:
    return _json_attr(data, "problem_info").get("language_instruction", "")


def read_episodes_from(path: Path | str, view: str = "agentview") -> Iterator[WMEpisode]:
    """A run directory or an HDF5 file, whichever `path` is."""
    path = Path(path)
    if path.is_dir():
        return read_run(path, view)
    if path.suffix in (".hdf5", ".h5"):
        return read_hdf5(path, view)
    raise BenchError(f"{path} is neither a run directory nor an .hdf5 file")
