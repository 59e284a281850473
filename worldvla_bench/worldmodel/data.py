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

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.envs.seeding import scene_of
from worldvla_bench.errors import BenchError
from worldvla_bench.libero_hdf5 import camera_of_view, read_demos
from worldvla_bench.run_dir import RunDir, episode_key
from worldvla_bench.worldmodel.models import PredictionContext


@dataclass
class WMEpisode:
    """One episode: `frames` (T+1, H, W, 3) uint8 upright, `actions` (T, 7) executed, optional
    `states`, and `intended_actions` (T, 7) when the recording policy meant others (an expert
    with injected noise: `Policy.intended_actions`)."""

    name: str
    frames: np.ndarray
    actions: np.ndarray
    instruction: str = ""
    states: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    control_states: np.ndarray | None = None
    intended_actions: np.ndarray | None = None

    def prediction_context(self, index: int) -> PredictionContext:
        """What a world model is told about frame `index`: the episode's metadata and, when
        recorded, the simulator and control state of that frame."""
        return PredictionContext(
            meta=self.meta,
            state=None if self.states is None else self.states[index],
            control_state=None if self.control_states is None else self.control_states[index])

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise BenchError(f"episode {self.name}: frames must be uint8 (T, H, W, 3), "
                             f"got {self.frames.dtype} {self.frames.shape}")
        if len(self.frames) != len(self.actions) + 1:
            raise BenchError(f"episode {self.name}: {len(self.frames)} frames for "
                             f"{len(self.actions)} actions (need one more frame than actions)")
        if (self.intended_actions is not None
                and np.shape(self.intended_actions) != np.shape(self.actions)):
            raise BenchError(f"episode {self.name}: intended actions of shape "
                             f"{np.shape(self.intended_actions)} for actions of shape "
                             f"{np.shape(self.actions)}")
        if self.states is not None and len(self.states) != len(self.frames):
            raise BenchError(f"episode {self.name}: {len(self.states)} states for "
                             f"{len(self.frames)} frames")


def _pick_view(keys, view: str, where: str) -> str:
    """The key of a run's episode arrays that holds `view`'s frames (`frames_<camera>`)."""
    for key in (f"frames_{camera_of_view(view)}", view):
        if key in keys:
            return key
    raise BenchError(f"{where} has no frames of view {view!r}; available keys: {sorted(keys)}")


def read_run(run_dir: Path | str, view: str = "agentview",
             tasks: Collection[int] | None = None) -> Iterator[WMEpisode]:
    """Episodes of one of our runs recorded with `--save-frames`, by (suite, task, trial): the
    same order whatever order parallel workers finished them in, so that the first N episodes
    (`wm-eval --max-episodes`, the WorldVLA diagnosis's `--episodes`) are the same N in every
    recording of a run. `tasks`: only those task ids (None: all); others are never loaded."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    records = sorted((r for r in run.finished_with_arrays()
                      if tasks is None or r["task_id"] in tasks), key=episode_key)
    if not records:
        among = "" if tasks is None else f" of tasks {sorted(tasks)}"
        raise BenchError(f"{run_dir} has no recorded episodes{among} "
                         "(run `eval --save-frames` first)")
    manifest = run.read_manifest() or {}
    for record in records:
        arrays = run.arrays(record)
        key = _pick_view(arrays, view, f"{run_dir / record['episode_file']}")
        yield WMEpisode(
            name=Path(record["episode_file"]).stem,
            frames=arrays[key],
            actions=arrays["actions"],
            instruction=record.get("instruction", ""),
            states=arrays.get("states"),
            control_states=arrays.get("control_states"),
            intended_actions=arrays.get("intended_actions"),
            meta={"suite": record["suite"], "task_id": record["task_id"], "trial": record["trial"],
                  "seed": record["seed"], **scene_of(record).to_record(),
                  "success": bool(record.get("success")), "steps": record.get("steps"),
                  "policy": record.get("policy"), "source": str(run_dir),
                  "image_size": manifest.get("config", {}).get("image_size")},
        )


def read_hdf5(path: Path | str, view: str = "agentview", upright: bool = True,
              limit: int | None = None) -> Iterator[WMEpisode]:
    """Episodes of a LIBERO/robomimic HDF5 file (`data/demo_N/...`), in demo-number order.

    robomimic stores one observation per action (obs[t] before actions[t]); the frame after the
    last action is not stored, so the last action is dropped to keep frames == actions + 1.
    """
    info, demos = read_demos(path, view=view, upright=upright, limit=limit)
    for demo in demos:
        length = len(demo.frames)
        meta: dict[str, Any] = {"source": str(info.path), **info.where}
        if "seed" in demo.attrs:
            meta.update(seed=int(demo.attrs["seed"]), trial=int(demo.attrs.get("trial", 0)))
            meta.update(scene_of(demo.attrs).to_record())
        yield WMEpisode(
            name=demo.name, frames=demo.frames, actions=demo.actions[: length - 1],
            instruction=info.instruction,
            states=demo.states[:length] if demo.states is not None else None,
            control_states=(demo.control_states[:length]
                            if demo.control_states is not None else None),
            intended_actions=(demo.intended_actions[: length - 1]
                              if demo.intended_actions is not None else None),
            meta=meta)


def read_episodes_from(path: Path | str, view: str = "agentview") -> Iterator[WMEpisode]:
    """A run directory or an HDF5 file, whichever `path` is."""
    path = Path(path)
    if path.is_dir():
        return read_run(path, view)
    if path.suffix in (".hdf5", ".h5"):
        return read_hdf5(path, view)
    raise BenchError(f"{path} is neither a run directory nor an .hdf5 file")
