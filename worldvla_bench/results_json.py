"""`results.json`: a run's numbers with their uncertainty and provenance, in one shareable file.

Written by `write_report` beside `report.md` and `report.csv`, from the same success-rate table
(nothing is recomputed here) and the run's manifest. Unlike a leaderboard entry that keeps the
score alone, it carries per task and per suite: the number of episodes, successes, the success
rate and its 95% Wilson interval (percent), mean policy steps and errors; and the protocol that
defines the numbers with a stable hash of it, the code revision, package versions and the render
provenance. `schemas/results.schema.json` (JSON Schema, draft 2020-12) describes it; the file
is plain JSON (no NaN: a missing number is `null`).
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from worldvla_bench.atomic import write_atomic
from worldvla_bench.manifest import manifest_config, package_versions, run_render_provenances
from worldvla_bench.protocol import PROTOCOL_KEYS

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1
CONFIDENCE = 0.95


def protocol_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The protocol fields (`Protocol`) a manifest records; fields it predates read as what its
    run did (`manifest_config`), fields it lacks altogether as null."""
    config = manifest_config(manifest) if manifest else {}
    return {key: config.get(key) for key in PROTOCOL_KEYS}


def protocol_hash(protocol: dict[str, Any]) -> str:
    """'sha256:<hex>' of the protocol as canonical JSON (keys sorted, no spaces, ASCII): equal
    for two runs that measure the same thing, whatever wrote them."""
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def result_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `report.success_rate_table` as JSON objects (the suite row has task_id 'all')."""
    rows = []
    for row in table.to_dict("records"):
        task_id = row["task_id"]
        rows.append({
            "suite": str(row["suite"]),
            "task_id": "all" if task_id == "all" else int(task_id),
            "task_name": str(row["task_name"]),
            "n": int(row["trials"]),
            "successes": int(row["successes"]),
            "success_rate": _number(row["success_rate"]),
            "ci95": [_number(row["ci_low"]), _number(row["ci_high"])],
            "mean_steps": _number(row["mean_steps"]),
            "errors": int(row["errors"]),
        })
    return rows


def _revisions(manifest: dict[str, Any]) -> list[str | None]:
    revisions = [inv.get("git_revision") for inv in manifest.get("invocations", [])]
    return list(dict.fromkeys(revisions or [manifest.get("git_revision")]))


def results_document(run_dir: Path | str, table: pd.DataFrame, manifest: dict[str, Any],
                     warnings: list[str]) -> dict[str, Any]:
    """The content of `results.json` for a run, its table and manifest (may be empty)."""
    protocol = protocol_of(manifest)
    found, unrecorded = run_render_provenances(manifest)
    revisions = _revisions(manifest)
    return {
        "schema_version": SCHEMA_VERSION,
        "run": Path(run_dir).name,
        "generated_by": {"worldvla-bench": package_versions()["worldvla-bench"]},
        "protocol": protocol,
        "protocol_hash": protocol_hash(protocol),
        "suite_definition": manifest.get("suite"),
        "revision": revisions[-1],
        "revisions": revisions,
        "versions": manifest.get("versions"),
        "render": found,
        "render_unrecorded_invocations": unrecorded,
        "created_at": manifest.get("created_at"),
        "confidence": CONFIDENCE,
        "interval_method": "wilson",
        "units": {"success_rate": "percent", "ci95": "percent", "mean_steps": "policy steps"},
        "results": result_rows(table),
        "warnings": list(warnings),
    }


def write_results_json(run_dir: Path | str, table: pd.DataFrame, manifest: dict[str, Any],
                       warnings: list[str]) -> dict[str, Any]:
    """Write `results.json` into the run directory (atomically); return what was written."""
    document = results_document(run_dir, table, manifest, warnings)
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"
    write_atomic(Path(run_dir) / RESULTS_FILE, text.encode("utf-8"))
    return document


def results_schema() -> dict[str, Any]:
    """The JSON Schema of `results.json`, shipped in the package."""
    text = resources.files("worldvla_bench").joinpath("schemas/results.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)
