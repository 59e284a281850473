"""The LIBERO/robomimic demonstration HDF5 layout, written and read in this one module.

A file holds one task: `data.attrs['problem_info']` (JSON: `language_instruction`,
`problem_name`), `data.attrs['env_args']` (JSON: robosuite env arguments in LIBERO's files;
`suite` and `task_id` in ours), `data.attrs['total']`, and per demonstration `data/demo_N/`:
`actions` (T, 7), `states` (T, D) flattened MuJoCo states, `rewards`, `dones`, and `obs/`:
`agentview_rgb`, `eye_in_hand_rgb` (T, H, W, 3) uint8 stored as LIBERO renders them (upside
down: the 180-degree rotation is undone on write and redone on read), `ee_pos`, `ee_ori`
(axis-angle), `ee_states` (pos + axis-angle), `gripper_states`. Following robomimic, `obs[t]` is
the observation before `actions[t]`. Ours also stores `control_states` (the gripper command
and the arm controller's goal, which robosuite keeps outside the simulator), so that `sim-oracle`
can replay a file, and, when the recording policy meant other actions than it executed (an expert
with injected noise), `intended_actions` (T, 7) beside the executed `actions` (which replay the
states).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.atomic import atomic_path
from worldvla_bench.errors import BenchError

#: env camera name -> its `obs/` key in LIBERO's files
CAMERA_KEYS = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}
#: view names users pass (`--view`) -> env camera name
VIEWS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
#: other `obs/` keys that hold a camera's frames in files written by other tools
OTHER_KEYS = {"agentview": ("agentview_image",),
              "robot0_eye_in_hand": ("robot0_eye_in_hand_image",)}


def camera_of_view(view: str) -> str:
    """The env camera of a view name ('wrist' -> 'robot0_eye_in_hand'); other names as given."""
    return VIEWS.get(view, view)


def frame_keys(view: str) -> tuple[str, ...]:
    """Keys under `obs/` that may hold the frames of `view`, in order of preference."""
    camera = camera_of_view(view)
    return (CAMERA_KEYS.get(camera, camera), *OTHER_KEYS.get(camera, ()))


@dataclass
class Demo:
    """One demonstration to write: `frames` by env camera, upright (T, H, W, 3) uint8, one per
    action (the observation before it); `proprio` (T, 8): end-effector position (m), axis-angle
    (rad), two finger joints; `attrs` are stored on the demo group."""

    actions: np.ndarray
    frames: dict[str, np.ndarray]
    states: np.ndarray | None = None
    control_states: np.ndarray | None = None
    proprio: np.ndarray | None = None
    #: (T, 7) the actions the recording policy meant, when it executed others
    intended_actions: np.ndarray | None = None
    success: bool = True
    attrs: dict[str, Any] = field(default_factory=dict)


def write_demos(path: Path | str, demos: Sequence[Demo], instruction: str, problem_name: str,
                env_args: dict[str, Any], attrs: dict[str, Any] | None = None) -> Path:
    """Write one task's demonstrations as a LIBERO HDF5 file, atomically; returns the path.
    `attrs`: more attributes of the `data` group."""
    import h5py

    path = Path(path)
    with atomic_path(path, suffix=".hdf5") as tmp, h5py.File(tmp, "w") as handle:
        data = handle.create_group("data")
        data.attrs["problem_info"] = json.dumps(
            {"language_instruction": instruction, "problem_name": problem_name,
             **({"suite": env_args["suite"]} if "suite" in env_args else {})})
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["total"] = sum(len(demo.actions) for demo in demos)
        data.attrs.update(attrs or {})
        for index, demo in enumerate(demos):
            _write_demo(data.create_group(f"demo_{index}"), demo)
    return path


def _write_demo(group, demo: Demo) -> None:
    steps = len(demo.actions)
    group.attrs.update({"num_samples": steps, **demo.attrs})
    group.create_dataset("actions", data=demo.actions)
    if demo.intended_actions is not None:
        group.create_dataset("intended_actions", data=demo.intended_actions[:steps])
    if demo.states is not None:
        group.create_dataset("states", data=demo.states[:steps])
    if demo.control_states is not None:
        group.create_dataset("control_states", data=demo.control_states[:steps])
    rewards = np.zeros(steps)
    if demo.success and steps:
        rewards[-1] = 1.0
    group.create_dataset("rewards", data=rewards)
    group.create_dataset("dones", data=(np.arange(steps) == steps - 1).astype(np.uint8))
    obs = group.create_group("obs")
    for camera, frames in demo.frames.items():
        stored = np.ascontiguousarray(frames[:steps, ::-1, ::-1])  # back to LIBERO's render
        obs.create_dataset(CAMERA_KEYS.get(camera, camera), data=stored, compression="gzip",
                           compression_opts=4)
    if demo.proprio is not None:
        proprio = demo.proprio[:steps]
        obs.create_dataset("ee_pos", data=proprio[:, :3])
        obs.create_dataset("ee_ori", data=proprio[:, 3:6])
        obs.create_dataset("ee_states", data=proprio[:, :6])
        obs.create_dataset("gripper_states", data=proprio[:, 6:8])


@dataclass
class StoredDemo:
    """One demonstration read back: `frames` of the asked view, upright unless told otherwise."""

    name: str
    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray | None
    control_states: np.ndarray | None
    attrs: dict[str, Any]
    intended_actions: np.ndarray | None = None


@dataclass
class DemoFile:
    """A file's task information: its instruction and, for files we wrote, suite and task."""

    path: Path
    instruction: str
    where: dict[str, Any]


def read_demos(path: Path | str, view: str = "agentview", upright: bool = True,
               limit: int | None = None) -> tuple[DemoFile, Iterator[StoredDemo]]:
    """A file's task information and its demonstrations in demo-number order (read lazily; the
    file stays open until the iterator is exhausted or closed)."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise BenchError(f"no such HDF5 file: {path}")
    handle = h5py.File(path, "r")
    if "data" not in handle:
        handle.close()
        raise BenchError(f"{path} is not a LIBERO/robomimic file (no 'data' group)")
    data = handle["data"]
    info = DemoFile(path, _json_attr(data, "problem_info").get("language_instruction", ""),
                    _where(data))

    def demos() -> Iterator[StoredDemo]:
        try:
            names = sorted(data.keys(),
                           key=lambda n: int(n.split("_")[-1]) if n[-1].isdigit() else 0)
            for count, name in enumerate(names):
                if limit is not None and count >= limit:
                    break
                demo = data[name]
                key = _pick(demo["obs"].keys(), frame_keys(view), view, f"{path}:{name}/obs")
                frames = np.asarray(demo["obs"][key], dtype=np.uint8)
                if upright:
                    frames = np.ascontiguousarray(frames[:, ::-1, ::-1])
                yield StoredDemo(name, frames, np.asarray(demo["actions"], dtype=np.float64),
                                 _optional(demo, "states"), _optional(demo, "control_states"),
                                 dict(demo.attrs), _optional(demo, "intended_actions"))
        finally:
            handle.close()

    return info, demos()


def _pick(keys, candidates: tuple[str, ...], view: str, where: str) -> str:
    for key in candidates:
        if key in keys:
            return key
    raise BenchError(f"{where} has no frames of view {view!r}; available keys: {sorted(keys)}")


def _optional(demo, key: str) -> np.ndarray | None:
    return np.asarray(demo[key], dtype=np.float64) if key in demo else None


def _json_attr(data, key: str) -> dict[str, Any]:
    """A JSON-object attribute of the file's `data` group; {} when missing or not an object."""
    try:
        value = json.loads(data.attrs.get(key, "{}"))
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _where(data) -> dict[str, Any]:
    """Suite and task of a file written by `worldvla-bench record` (LIBERO's own files have
    robosuite env arguments here instead, so they give nothing)."""
    args = _json_attr(data, "env_args")
    if "suite" not in args or "task_id" not in args:
        return {}
    return {"suite": str(args["suite"]), "task_id": int(args["task_id"])}
