"""Demonstrations in the LIBERO/robomimic HDF5 layout, written from runs recorded with frames.

One file per task, `<out>/<suite>/<task_name>_demo.hdf5`, as LIBERO ships them:
`data/demo_N/actions` (T, 7), `states` (T, D) flattened MuJoCo states, `rewards`, `dones`, and
`obs/agentview_rgb`, `obs/eye_in_hand_rgb` (T, H, W, 3) uint8 stored as LIBERO renders them
(upside down; readers rotate by 180 degrees), `obs/ee_pos`, `obs/ee_ori` (axis-angle),
`obs/ee_states` (pos + axis-angle), `obs/gripper_states`; `data.attrs['problem_info']` holds the
language instruction. Following robomimic, obs[t] is the observation before actions[t].
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.records import load_episode_arrays, read_episodes

CAMERA_KEYS = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}


def run_to_hdf5(run_dir: Path | str, out_dir: Path | str,
                successful_only: bool = True) -> list[Path]:
    """Write the episodes of a `--save-frames` run as one HDF5 file per task; return the paths."""
    import h5py

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    records = [r for r in read_episodes(run_dir) if r.get("episode_file") and not r.get("error")]
    if successful_only:
        records = [r for r in records if r["success"]]
    by_task: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r["suite"], r["task_id"], r["trial"])):
        by_task[(record["suite"], record["task_id"])].append(record)
    written = []
    for (suite, _task_id), task_records in by_task.items():
        path = out_dir / suite / f"{task_records[0]['task_name']}_demo.hdf5"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with h5py.File(tmp, "w") as handle:
            data = handle.create_group("data")
            data.attrs["problem_info"] = json.dumps(
                {"language_instruction": task_records[0]["instruction"],
                 "problem_name": task_records[0]["task_name"], "suite": suite})
            data.attrs["env_args"] = json.dumps({"suite": suite,
                                                 "task_id": task_records[0]["task_id"]})
            total = 0
            for index, record in enumerate(task_records):
                total += _write_demo(data.create_group(f"demo_{index}"), run_dir, record)
            data.attrs["total"] = total
        tmp.replace(path)
        written.append(path)
    return written


def _write_demo(group, run_dir: Path, record: dict[str, Any]) -> int:
    arrays = load_episode_arrays(run_dir / record["episode_file"])
    if "proprio" not in arrays:
        raise BenchError(f"{record['episode_file']} has no frames: record with --save-frames")
    actions = arrays["actions"]
    steps = len(actions)
    group.attrs.update({"num_samples": steps, "init_state": record["init_state"],
                        "seed": record["seed"], "success": bool(record["success"]),
                        "trial": record["trial"]})
    group.create_dataset("actions", data=actions)
    group.create_dataset("states", data=arrays["states"][:steps])
    if "control_states" in arrays:  # ours, not LIBERO's: lets `sim-oracle` replay the file
        group.create_dataset("control_states", data=arrays["control_states"][:steps])
    rewards = np.zeros(steps)
    if record["success"] and steps:
        rewards[-1] = 1.0
    group.create_dataset("rewards", data=rewards)
    group.create_dataset("dones", data=(np.arange(steps) == steps - 1).astype(np.uint8))
    obs = group.create_group("obs")
    for camera, key in CAMERA_KEYS.items():
        if f"frames_{camera}" in arrays:
            frames = arrays[f"frames_{camera}"][:steps, ::-1, ::-1]  # back to LIBERO's render
            obs.create_dataset(key, data=np.ascontiguousarray(frames), compression="gzip",
                               compression_opts=4)
    proprio = arrays["proprio"][:steps]
    obs.create_dataset("ee_pos", data=proprio[:, :3])
    obs.create_dataset("ee_ori", data=proprio[:, 3:6])
    obs.create_dataset("ee_states", data=proprio[:, :6])
    obs.create_dataset("gripper_states", data=proprio[:, 6:8])
    return steps
