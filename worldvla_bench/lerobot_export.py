"""A run recorded with `eval --save-frames` as a LeRobot v3 dataset (`export-lerobot`).

Written with LeRobot's own writer (`LeRobotDataset.create`, `add_frame`, `save_episode`,
`finalize`), so the layout is the one LeRobot reads: `meta/info.json` (codebase_version v3.0),
`data/chunk-000/file-000.parquet`, `videos/observation.images.<camera>/chunk-000/file-000.mp4`,
`meta/episodes/`, `meta/tasks.parquet`, `meta/stats.json`.

One dataset frame per executed action, as LeRobot datasets of LIBERO are laid out: frame t holds
the cameras' images and the proprioceptive state observed before action t (`observation.*`,
upright, every camera of the suite), the action (7, float32: delta position, delta axis-angle,
gripper), `next.done` (true on the episode's last frame) and `next.success` (true on the last
frame of an episode the simulator judged a success). The frame observed after the last action
is not kept (it has no action). The task is the episode's instruction. Episodes are ordered by
(suite, task, trial); episodes that ended in an error are left out. `meta/info.json` gains a
`worldvla_bench` entry: the run's protocol and its hash, revision, render provenance, and per
dataset episode the run's (suite, task_id, trial, success, seed, steps).

An imagined run of `wm-rank --video` (`<out>/imagined/<world model>/<policy>/`) exports the same
way: its imagined frames (agentview; the first one real), the actions, the imagined success
(the judge's) as `next.success`, no state; its protocol is the simulated run's, and
`worldvla_bench.imagination` says which world model, judge and threshold imagined it.

LeRobot (PyPI `lerobot`, which pins an older torch) is installed without its dependencies, as
`make setup` does; it is imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldvla_bench.errors import BenchError
from worldvla_bench.manifest import read_manifest, run_render_provenances
from worldvla_bench.results_json import protocol_hash, protocol_of
from worldvla_bench.run_dir import RunDir, load_episode_arrays, read_episodes

CODEBASE_VERSION = "v3.0"
ACTION_NAMES = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
#: LiberoEnv's `state` (envs/libero_env.py): eef position (m), axis-angle (rad), gripper qpos
STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_q0",
               "gripper_q1"]
VIDEO_CODECS = ("libsvtav1", "h264", "hevc")
INSTALL_HINT = ("export-lerobot needs LeRobot: pip install --no-deps lerobot==0.4.4 and "
                "pip install 'worldvla-bench[lerobot]' (make setup does both)")


def image_key(camera: str) -> str:
    return f"observation.images.{camera}"


def _exported_episodes(run_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """The run's finished episodes in (suite, task, trial) order, and how many errored."""
    records = read_episodes(run_dir)
    if not records:
        raise BenchError(f"run {run_dir} has no finished episodes")
    kept = [r for r in records if r.get("error") is None]
    kept.sort(key=lambda r: (r["suite"], int(r["task_id"]), int(r["trial"])))
    return kept, len(records) - len(kept)


def _arrays(run_dir: Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    name = record.get("episode_file")
    path = run_dir / name if name else None
    if path is None or not path.is_file():
        raise BenchError(f"episode {record['suite']} task {record['task_id']} trial "
                         f"{record['trial']} of {run_dir} has no arrays file: was the run "
                         "recorded with --save-frames?")
    arrays = load_episode_arrays(path)
    if not any(k.startswith("frames_") for k in arrays):
        raise BenchError(f"{path} holds no frames: record the run with eval --save-frames")
    return arrays


def _features(arrays: dict[str, np.ndarray], cameras: list[str]) -> dict[str, dict[str, Any]]:
    features: dict[str, dict[str, Any]] = {}
    for camera in cameras:
        height, width, channels = arrays[f"frames_{camera}"].shape[1:]
        features[image_key(camera)] = {"dtype": "video", "shape": (height, width, channels),
                                       "names": ["height", "width", "channels"]}
    if "proprio" in arrays:  # imagined episodes have images only
        state_dim = arrays["proprio"].shape[1]
        features["observation.state"] = {
            "dtype": "float32", "shape": (state_dim,),
            "names": STATE_NAMES if state_dim == len(STATE_NAMES) else None}
    features["action"] = {"dtype": "float32", "shape": (7,), "names": ACTION_NAMES}
    features["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    features["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
    return features


def export_lerobot(run_dir: Path | str, out: Path | str, repo_id: str | None = None,
                   vcodec: str = "libsvtav1", progress: bool = True) -> dict[str, Any]:
    """Write the run as a LeRobot v3 dataset rooted at `out` (which must not exist yet).
    Returns {'root', 'episodes', 'frames', 'skipped_errors'}."""
    run_dir, out = Path(run_dir), Path(out)
    if vcodec not in VIDEO_CODECS:
        raise BenchError(f"unknown video codec {vcodec!r}; choose one of {', '.join(VIDEO_CODECS)}")
    if out.exists():
        raise BenchError(f"{out} already exists: choose a new directory for the dataset")
    try:
        import datasets
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as error:
        raise BenchError(f"{INSTALL_HINT} ({error})") from error
    datasets.disable_progress_bars()  # one bar, ours, per episode
    records, errored = _exported_episodes(run_dir)
    imagination = _imagination(run_dir)
    manifest = read_manifest(run_dir) or _sim_manifest(run_dir, imagination)
    suite = manifest.get("suite") or {}
    first = _arrays(run_dir, records[0])
    cameras = [c for c in suite.get("cameras", []) if f"frames_{c}" in first] or sorted(
        k.removeprefix("frames_") for k in first if k.startswith("frames_"))
    fps = int(suite.get("control_freq") or 20)
    dataset = LeRobotDataset.create(repo_id or f"local/{run_dir.name}", fps=fps,
                                    features=_features(first, cameras), root=out,
                                    robot_type="panda", use_videos=True, vcodec=vcodec)
    exported, frames = [], 0
    for record in tqdm(records, desc="episodes", unit="ep", disable=not progress):
        arrays = _arrays(run_dir, record)
        actions = np.asarray(arrays["actions"], dtype=np.float32).reshape(-1, 7)
        steps = len(actions)
        if steps == 0:
            continue
        for t in range(steps):
            last = t == steps - 1
            frame = {image_key(c): arrays[f"frames_{c}"][t] for c in cameras}
            if "proprio" in arrays:
                frame["observation.state"] = np.asarray(arrays["proprio"][t], dtype=np.float32)
            frame.update({
                "action": actions[t],
                "next.done": np.array([last]),
                "next.success": np.array([last and bool(record["success"])]),
                "task": str(record["instruction"]),
            })
            dataset.add_frame(frame)
        dataset.save_episode()
        exported.append({"episode_index": len(exported), "suite": record["suite"],
                         "task_id": int(record["task_id"]), "trial": int(record["trial"]),
                         "success": bool(record["success"]), "seed": record.get("seed"),
                         "steps": steps, **({"simulated_success": record["extra"].get(
                             "simulated_success")} if imagination else {})})
        frames += steps
    dataset.finalize()
    if not exported:
        raise BenchError(f"run {run_dir} has no episode with an action to export")
    _add_provenance(out, run_dir, manifest, exported, errored, imagination)
    return {"root": out, "episodes": len(exported), "frames": frames, "skipped_errors": errored}


def _imagination(run_dir: Path) -> dict[str, Any] | None:
    """What a wm-rank imagined run measures (`RunDir.imagination`), None for a simulated run."""
    return RunDir(run_dir).imagination()


def _sim_manifest(run_dir: Path, imagination: dict[str, Any] | None) -> dict[str, Any]:
    """An imagined run's protocol lives in the manifest of the simulated run it re-imagined:
    `sim_run` as wm-rank recorded it, else <out>/sim/<policy> beside <out>/imagined/<wm>/."""
    if imagination is None:
        return {}
    beside = run_dir.resolve().parent.parent.parent / "sim" / run_dir.name
    for sim_run in (Path(imagination["sim_run"]), beside):
        if RunDir(sim_run).has_manifest():
            return read_manifest(sim_run) or {}
    return {}


def _add_provenance(out: Path, run_dir: Path, manifest: dict[str, Any],
                    exported: list[dict[str, Any]], errored: int,
                    imagination: dict[str, Any] | None) -> None:
    """The run's protocol and provenance, in the dataset's `meta/info.json`."""
    protocol = protocol_of(manifest)
    invocations = manifest.get("invocations") or [{}]
    info_path = out / "meta" / "info.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["worldvla_bench"] = {
        "run": run_dir.name,
        "protocol": protocol,
        "protocol_hash": protocol_hash(protocol),
        "revision": invocations[-1].get("git_revision", manifest.get("git_revision")),
        "versions": manifest.get("versions"),
        "render": run_render_provenances(manifest)[0],
        "imagination": imagination,
        "skipped_error_episodes": errored,
        "frame_convention": "frame t: observation before action t; the last observation "
                            "(after the last action) is not kept",
        "episodes": exported,
    }
    info_path.write_text(json.dumps(info, indent=4) + "\n", encoding="utf-8")
