"""Demonstrations in the LIBERO/robomimic HDF5 layout (`worldvla_bench.libero_hdf5`), written
from runs recorded with frames.

One file per task, `<out>/<suite>/<task_name>_demo.hdf5`, as LIBERO ships them:
`data/demo_N/actions` (T, 7), `states` (T, D) flattened MuJoCo states, `rewards`, `dones`, and
`obs/agentview_rgb`, `obs/eye_in_hand_rgb` (T, H, W, 3) uint8 stored as LIBERO renders them
(upside down; readers rotate by 180 degrees), `obs/ee_pos`, `obs/ee_ori` (axis-angle),
`obs/ee_states` (pos + axis-angle), `obs/gripper_states`; `data.attrs['problem_info']` holds the
language instruction. Following robomimic, obs[t] is the observation before actions[t].
An episode whose policy meant other actions than it executed also gets `intended_actions`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from worldvla_bench.envs.seeding import scene_of
from worldvla_bench.errors import BenchError
from worldvla_bench.libero_hdf5 import CAMERA_KEYS, Demo, write_demos
from worldvla_bench.run_dir import RunDir


def run_to_hdf5(run_dir: Path | str, out_dir: Path | str,
                successful_only: bool = True) -> dict[Path, bool]:
    """Write the episodes of a `--save-frames` run as one HDF5 file per task; return each task
    file's path, True when it was (re)written. A task's file that already holds exactly these
    episode records (`SOURCE_ATTR`, a digest of them) is left as it is (False), so re-running
    `record` on a finished run writes nothing."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    records = RunDir(run_dir).finished_with_arrays()
    if successful_only:
        records = [r for r in records if r["success"]]
    by_task: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r["suite"], r["task_id"], r["trial"])):
        by_task[(record["suite"], record["task_id"])].append(record)
    written: dict[Path, bool] = {}
    for (suite, task_id), task_records in by_task.items():
        first = task_records[0]
        path = out_dir / suite / f"{first['task_name']}_demo.hdf5"
        source = records_digest(task_records)
        written[path] = _source_of(path) != source
        if written[path]:
            write_demos(path, [_demo(run_dir, r) for r in task_records],
                        instruction=first["instruction"], problem_name=first["task_name"],
                        env_args={"suite": suite, "task_id": task_id},
                        attrs={SOURCE_ATTR: source})
    return written


#: `data` attribute of a demo file written from a run: sha256 of its episode records
SOURCE_ATTR = "source_records_sha256"


def records_digest(records: list[dict[str, Any]]) -> str:
    """sha256 of episode records (JSON, sorted keys): a re-recorded episode (other seed, steps
    or wall time) or another selection of episodes gives another digest."""
    text = json.dumps(records, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _source_of(path: Path) -> str | None:
    """The digest a demo file was written from; None when absent, unreadable or older."""
    import h5py

    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as handle:
            value = handle["data"].attrs.get(SOURCE_ATTR)
    except (OSError, KeyError):
        return None
    return value.decode() if isinstance(value, bytes) else value


def _demo(run_dir: Path, record: dict[str, Any]) -> Demo:
    arrays = RunDir(run_dir).arrays(record)
    if "proprio" not in arrays:
        raise BenchError(f"{record['episode_file']} has no frames: record with --save-frames")
    steps = len(arrays["actions"])
    return Demo(
        actions=arrays["actions"],
        frames={camera: arrays[f"frames_{camera}"][:steps] for camera in CAMERA_KEYS
                if f"frames_{camera}" in arrays},
        states=arrays["states"][:steps],
        control_states=arrays.get("control_states"),
        proprio=arrays["proprio"][:steps],
        intended_actions=arrays.get("intended_actions"),
        success=bool(record["success"]),
        attrs={"init_state": record["init_state"], "seed": record["seed"],
               "success": bool(record["success"]), "trial": record["trial"],
               **scene_of(record).to_record()},
    )
