"""The run directory: `manifest.json`, append-only `episodes.jsonl`, per-episode arrays and videos.

`episodes.jsonl` is the single source of truth: one JSON object per finished episode, appended
(and fsynced) the moment the episode ends. A last line cut short by a crash is dropped on the next
open; any other unreadable line stops the run with its line number.
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
    them were made under `hashed`, with `seed`). `retries`: how often the episode was started
    again because its worker process died, and `worker_exits` how each of those workers ended.
    `served_model`: what a policy server served the episode (`RemotePolicy.served_model`).
    `slowest_call_s`: the longest policy call (`reset` or `act`) of the episode that returned.
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
    retries: int = 0
    worker_exits: list[str] = field(default_factory=list)
    served_model: dict[str, Any] | None = None
    slowest_call_s: float | None = None

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
    """All records of a run, in file order.

    Only the last line may be unterminated (a process killed while appending it): it is dropped
    unless it reads as a whole record, and with `repair` it is cut off (or, whole, terminated)
    so that the next append starts a line of its own. Any other line that is not a record stops
    with `RunDirectoryError` naming its line number: records are never silently dropped.
    """
    path = Path(run_dir) / EPISODES_FILE
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    lines = data.splitlines(keepends=True)
    torn_at = None  # byte offset of an unterminated last line to cut
    offset = 0
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        text = line.strip()
        record = _parse_record(text) if text else None
        if last and not line.endswith(b"\n"):
            if record is None and text:
                torn_at = offset
            elif record is not None:
                records.append(record)
            break
        if text and record is None:
            raise RunDirectoryError(
                f"{path}:{number}: not an episode record ({text[:60].decode(errors='replace')!r}"
                f"{'...' if len(text) > 60 else ''}); fix or delete that line by hand "
                f"(the {len(lines) - number} line(s) after it are kept)"
            )
        if record is not None:
            records.append(record)
        offset += len(line)
    if repair and lines and not lines[-1].endswith(b"\n"):
        with path.open("r+b") as stream:
            if torn_at is not None:
                stream.truncate(torn_at)
            else:
                stream.seek(0, os.SEEK_END)
                stream.write(b"\n")
    return records


def _parse_record(text: bytes) -> dict[str, Any] | None:
    """A line's record, or None if it is not a JSON object naming its episode."""
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not all(k in record for k in ("suite", "task_id", "trial")):
        return None
    return record


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
