"""The run directory: `manifest.json`, append-only `episodes.jsonl`, per-episode arrays and videos.

`episodes.jsonl` is the single source of truth: one JSON object per finished episode, appended
(and fsynced) the moment the episode ends. A line cut short by a crash is dropped on the next open.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.atomic import atomic_path, write_atomic
from worldvla_bench.errors import RunDirectoryError

EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclass
class EpisodeRecord:
    """The outcome of one episode. Times in seconds; `steps` counts policy steps (no wait steps).

    `seed` is the policy's (`EpisodeContext.seed`); `seeding`, `scene_seed` and `scene_resets`
    say how the scene was seeded (`worldvla_bench.envs.seeding.SceneSeed`; records without
    them were made under `hashed`, with `seed`).
    """

    suite: str
    task_id: int
    task_name: str
    instruction: str
    trial: int
    init_state: int
    seed: int
    policy: str
    success: bool
    steps: int
    max_steps: int
    wall_time_s: float
    policy_time_s: float
    env_time_s: float
    reset_time_s: float
    policy_calls: int
    actions_at_bound_frac: float
    error: str | None = None
    env_build_s: float = 0.0
    video: str | None = None
    episode_file: str | None = None
    worker_pid: int | None = None
    finished_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    seeding: str | None = None
    scene_seed: int | None = None
    scene_resets: int | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.suite, self.task_id, self.trial)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def episode_key(record: dict[str, Any]) -> tuple[str, int, int]:
    """(suite, task_id, trial): identifies an episode within a run."""
    return (str(record["suite"]), int(record["task_id"]), int(record["trial"]))


def episode_stem(suite: str, task_id: int, trial: int) -> str:
    """File-name stem shared by an episode's arrays and video."""
    return f"{suite}_task{int(task_id):02d}_trial{int(trial):02d}"


def slugify(text: str, max_len: int = 60) -> str:
    """Lower-case words joined by '_' for file names."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:max_len]


def prepare_run_dir(path: Path) -> Path:
    """Create the run directory (and its parents) and check that it is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"results path {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise RunDirectoryError(f"cannot write to results directory {path}: {reason}") from None
    return path


def read_episodes(run_dir: Path, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records of a run, in file order. With `repair`, cut a torn last line."""
    path = Path(run_dir) / EPISODES_FILE
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    good_end = 0
    offset = 0
    for line in data.splitlines(keepends=True):
        offset += len(line)
        if not line.endswith(b"\n"):
            break  # a torn final line: written partly when the process was killed
        text = line.strip()
        if text:
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError:
                break
        good_end = offset
    if repair and good_end < len(data):
        with path.open("r+b") as stream:
            stream.truncate(good_end)
    return records


def append_episode(run_dir: Path, record: EpisodeRecord | dict[str, Any]) -> None:
    """Append one record as a JSON line and fsync it, so a crash loses nothing that ended."""
    payload = record.to_dict() if isinstance(record, EpisodeRecord) else record
    line = json.dumps(payload, sort_keys=True, default=_json_default) + "\n"
    path = Path(run_dir) / EPISODES_FILE
    with path.open("a", encoding="utf-8") as stream:
        stream.write(line)
        stream.flush()
        os.fsync(stream.fileno())


def rewrite_episodes(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Atomically replace `episodes.jsonl` with `records` (used to drop records to retry)."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in records)
    write_atomic(Path(run_dir) / EPISODES_FILE, text.encode())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_atomic(path, text.encode())


def read_json(path: Path) -> dict[str, Any]:
    with Path(path).open(encoding="utf-8") as stream:
        return json.load(stream)


def save_episode_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Save an episode's arrays (actions, states, ...) as a compressed .npz, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_episode_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
