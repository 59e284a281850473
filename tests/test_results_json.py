"""results.json: real runs (a fresh LIBERO run, the shipped examples, a run older than
render provenance) validate against the package's JSON Schema and hold report.csv's numbers."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from test_report import make_run

from worldvla_bench.report import write_report
from worldvla_bench.results_json import RESULTS_FILE, protocol_hash, results_schema

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "results" / "examples"
RECORDED = [EXAMPLES / "expert_libero_goal", EXAMPLES / "libero_spatial_random",
            REPO / "tests" / "fixtures" / "old_run_expert_libero_long"]


def _validator() -> jsonschema.Draft202012Validator:
    schema = results_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _copy_run(run: Path, tmp_path: Path) -> Path:
    """episodes.jsonl and manifest.json of a recorded run, so the report is written elsewhere."""
    out = tmp_path / run.name
    out.mkdir()
    for name in ("episodes.jsonl", "manifest.json"):
        shutil.copy(run / name, out / name)
    return out


def _check_against_csv(run_dir: Path) -> dict:
    document = json.loads((run_dir / RESULTS_FILE).read_text())
    _validator().validate(document)
    csv = pd.read_csv(run_dir / "report.csv", dtype={"task_id": str})
    assert len(document["results"]) == len(csv)
    for row, (_, expected) in zip(document["results"], csv.iterrows(), strict=True):
        assert str(row["task_id"]) == expected["task_id"]
        assert row["n"] == expected["trials"] and row["successes"] == expected["successes"]
        assert row["success_rate"] == pytest.approx(expected["success_rate"], abs=1e-9)
        assert row["ci95"] == pytest.approx([expected["ci_low"], expected["ci_high"]], abs=1e-9)
        assert row["errors"] == expected["errors"]
        assert row["mean_steps"] == pytest.approx(expected["mean_steps"])
    return document


def test_a_fresh_real_run_validates_and_holds_report_csv(recorded_run: Path, tmp_path):
    run = _copy_run(recorded_run, tmp_path)
    write_report(run)
    document = _check_against_csv(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert document["protocol"]["suite"] == "libero_spatial"
    assert document["protocol"]["policy"] == "random"
    assert document["protocol"]["image_size"] == 64
    assert document["render"] and document["render"][0]["mujoco_gl"] == manifest["render"][
        "mujoco_gl"]
    assert document["revision"] == manifest["invocations"][-1]["git_revision"]
    assert document["versions"] == manifest["versions"]


@pytest.mark.parametrize("run", RECORDED, ids=lambda p: p.name)
def test_recorded_runs_validate_and_hold_report_csv(run: Path, tmp_path):
    copied = _copy_run(run, tmp_path)
    write_report(copied)
    document = _check_against_csv(copied)
    suite_row = document["results"][-1]
    assert suite_row["task_id"] == "all"
    assert suite_row["n"] == sum(r["n"] for r in document["results"][:-1])
    if run.name.startswith("old_run"):  # made before render provenance was recorded
        assert document["render"] == [] and document["render_unrecorded_invocations"] >= 1


def test_schema_rejects_what_a_leaderboard_loses(tmp_path):
    """A document without its episode count or interval, or with a rate over 100, is invalid."""
    run = make_run(tmp_path / "r", {0: [True, False, True], 1: [False, False, False]})
    write_report(run)
    document = json.loads((run / RESULTS_FILE).read_text())
    validator = _validator()
    validator.validate(document)
    for broken in ("n", "ci95"):
        bad = copy.deepcopy(document)
        del bad["results"][0][broken]
        assert not validator.is_valid(bad)
    bad = copy.deepcopy(document)
    bad["results"][0]["success_rate"] = 120.0
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(document)
    bad["protocol_hash"] = "md5:abc"
    assert not validator.is_valid(bad)



def test_a_task_whose_episodes_all_ended_in_an_error_is_valid_json_with_null(tmp_path):
    run = make_run(tmp_path / "r", {0: [True, False], 1: [False, False]},
                   errors=((1, 0), (1, 1)))
    write_report(run)

    def no_nan(constant: str):
        raise AssertionError(f"results.json holds {constant}: not JSON")

    document = json.loads((run / RESULTS_FILE).read_text(), parse_constant=no_nan)
    _validator().validate(document)
    task_1 = document["results"][1]
    assert (task_1["task_id"], task_1["n"], task_1["errors"]) == (1, 0, 2)
    assert task_1["success_rate"] is None and task_1["ci95"] == [None, None]
    validator = _validator()
    bad = copy.deepcopy(document)
    bad["results"][1]["success_rate"] = 0.0  # a rate without an episode that ran
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(document)
    bad["results"][0]["success_rate"] = None  # no rate for episodes that ran
    assert not validator.is_valid(bad)

def test_protocol_hash_is_stable_and_names_the_protocol(tmp_path):
    a = make_run(tmp_path / "a", {0: [True, False]})
    b = make_run(tmp_path / "b", {0: [False, False]})  # same protocol, other outcomes
    c = make_run(tmp_path / "c", {0: [True, False]}, max_steps=300)
    hashes = {}
    for run in (a, b, c):
        write_report(run)
        hashes[run.name] = json.loads((run / RESULTS_FILE).read_text())["protocol_hash"]
    assert hashes["a"] == hashes["b"] != hashes["c"]
    protocol = json.loads((a / RESULTS_FILE).read_text())["protocol"]
    reordered = dict(reversed(list(protocol.items())))
    assert protocol_hash(reordered) == hashes["a"]
    # the canonical form, written out: a reader in another language gets the same hash
    import hashlib
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
    assert hashes["a"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
