"""The run directory, owned by one class: `RunDir`.

Layout (the only module that knows these names)::

    <run>/manifest.json        what the run measures (`worldvla_bench.manifest`)
    <run>/episodes.jsonl       one JSON record per finished episode, appended and fsynced
    <run>/imagination.json     an imagined run's settings (wm-rank), checked on resume
    <run>/episodes/<stem>.npz  an episode's arrays (actions, states, frames_<camera>, ...)
    <run>/videos/<stem>.mp4    an episode's video
    <run>/<cache>/<name>.npz   arrays derived from the run and cached in it (judge hold frames)

`episodes.jsonl` is the single source of truth. A last line cut short by a crash is dropped on
the next open; any other unreadable line stops the run with its line number. Writing is guarded
by `worldvla_bench.run_lock.run_dir_lock` (one writer per run directory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.atomic import atomic_path, write_atomic
from worldvla_bench.errors import RunDirectoryError

MANIFEST_FILE = "manifest.json"
EPISODES_FILE = "episodes.jsonl"
IMAGINATION_FILE = "imagination.json"
EPISODES_DIR = "episodes"
VIDEOS_DIR = "videos"
ARRAYS_SUFFIX = ".npz"
VIDEO_SUFFIX = ".mp4"

Key = tuple[str, int, int]


def episode_key(record: dict[str, Any]) -> Key:
    """(suite, task_id, trial): identifies an episode within a run."""
    return (str(record["suite"]), int(record["task_id"]), int(record["trial"]))


def episode_stem(suite: str, task_id: int, trial: int) -> str:
    """File-name stem shared by an episode's arrays and video."""
    return f"{suite}_task{int(task_id):02d}_trial{int(trial):02d}"


def has_arrays(record: dict[str, Any]) -> bool:
    """Whether a record is a finished episode whose arrays were saved (no error, a file)."""
    return bool(record.get("episode_file")) and not record.get("error")


class RunDir:
    """One run directory: its manifest, records, episode arrays and videos (paths, reads and
    writes). Cheap to construct; holds nothing but the path."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- the directory -------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def episodes_path(self) -> Path:
        return self.path / EPISODES_FILE

    def is_run(self) -> bool:
        """Whether records were ever written here (`episodes.jsonl` exists)."""
        return self.episodes_path.is_file()

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    def prepare(self) -> RunDir:
        """Create the directory (and parents) and check that it is writable."""
        path = self.path
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
        return self

    # --- records -------------------------------------------------------------------------
    def records(self, repair: bool = False) -> list[dict[str, Any]]:
        """All records, in file order (`read_episodes`)."""
        return read_episodes(self.path, repair=repair)

    def append(self, record: Any) -> None:
        """Append one record (an `EpisodeRecord` or a dict) and fsync it."""
        append_episode(self.path, record)

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Atomically replace the records (used to drop records to retry)."""
        rewrite_episodes(self.path, records)

    def done_keys(self, repair: bool = False) -> set[Key]:
        """The episodes that have a record."""
        return {episode_key(r) for r in self.records(repair=repair)}

    def pending(self, wanted: Iterable[Any], repair: bool = False) -> list[Any]:
        """Of `wanted` (records or keys), those with no record here yet, in order."""
        done = self.done_keys(repair=repair)
        return [w for w in wanted
                if (episode_key(w) if isinstance(w, dict) else tuple(w)) not in done]

    def finished_with_arrays(self) -> list[dict[str, Any]]:
        """The records of finished episodes whose arrays were saved (no error), file order."""
        return [r for r in self.records() if has_arrays(r)]

    # --- per-episode files ---------------------------------------------------------------
    def episode_file(self, suite: str, task_id: int, trial: int) -> str:
        """An episode's arrays, relative to the run (the record's `episode_file`)."""
        return str(Path(EPISODES_DIR) / f"{episode_stem(suite, task_id, trial)}{ARRAYS_SUFFIX}")

    def episode_path(self, suite: str, task_id: int, trial: int) -> Path:
        return self.path / self.episode_file(suite, task_id, trial)

    def video_file(self, suite: str, task_id: int, trial: int) -> str:
        """An episode's video, relative to the run (the record's `video`)."""
        return str(Path(VIDEOS_DIR) / f"{episode_stem(suite, task_id, trial)}{VIDEO_SUFFIX}")

    def video_path(self, suite: str, task_id: int, trial: int) -> Path:
        return self.path / self.video_file(suite, task_id, trial)

    def has_episode_arrays(self) -> bool:
        """Whether the run has an `episodes/` directory of saved arrays."""
        return (self.path / EPISODES_DIR).is_dir()

    def arrays(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        """The arrays a record's `episode_file` names."""
        return load_episode_arrays(self.path / record["episode_file"])

    def save_arrays(self, suite: str, task_id: int, trial: int, **arrays: np.ndarray) -> str:
        """Save an episode's arrays; returns their `episode_file` (relative to the run)."""
        name = self.episode_file(suite, task_id, trial)
        save_episode_arrays(self.path / name, **arrays)
        return name

    def cache_path(self, directory: str, name: str) -> Path:
        """Where arrays derived from the run are cached: `<run>/<directory>/<name>.npz`."""
        return self.path / directory / f"{name}{ARRAYS_SUFFIX}"

    # --- manifest and identity -----------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest (`worldvla_bench.manifest` builds and checks it), None if there is none;
        `RunDirectoryError` (one line) if it is not a readable JSON object with a config."""
        path = self.manifest_path
        if not path.exists():
            return None
        try:
            manifest = read_json(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise RunDirectoryError(f"cannot read {path}: {reason}; restore it from a backup (the "
                                    f"records in {EPISODES_FILE} need it)") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise RunDirectoryError(f"{path} is not a run manifest (no 'config' object); restore "
                                    f"it from a backup")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest)

    def config(self) -> dict[str, Any]:
        """The manifest's `config` ({} without a manifest)."""
        manifest = self.read_manifest()
        return dict(manifest["config"]) if manifest else {}

    def imagination(self) -> dict[str, Any] | None:
        """An imagined run's settings (`imagination.json`), None if it is not one."""
        path = self.path / IMAGINATION_FILE
        return read_json(path) if path.is_file() else None

    def check_imagination(self, settings: dict[str, Any]) -> None:
        """Write what an imagined run measures, or refuse to resume it under other settings
        (the imagined run's counterpart of `manifest.write_or_check_manifest`)."""
        path = self.path / IMAGINATION_FILE
        settings = json.loads(json.dumps(settings))
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old != settings:
                changed = sorted(k for k in set(old) | set(settings)
                                 if old.get(k) != settings.get(k))
                raise RunDirectoryError(f"{self.path} was imagined with other settings "
                                        f"({changed}); choose another --out")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(settings, indent=1).encode("utf-8"))


# --- the file formats (RunDir's methods call these; kept as functions for their callers) ----
def prepare_run_dir(path: Path) -> Path:
    """Create the run directory (and its parents) and check that it is writable."""
    return RunDir(path).prepare().path


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


def append_episode(run_dir: Path, record: Any) -> None:
    """Append one record (anything with `to_dict()`, or a dict) as a JSON line and fsync it, so
    a crash loses nothing that ended."""
    payload = record if isinstance(record, dict) else record.to_dict()
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
    """Save an episode's arrays (actions, states, ...) compressed, atomically."""
    with atomic_path(path, suffix=ARRAYS_SUFFIX) as tmp:
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
