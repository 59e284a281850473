"""Reports and comparisons, on synthetic run directories with known answers, and via the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from worldvla_bench.cli import main
from worldvla_bench.compare import compare_runs, exact_mcnemar
from worldvla_bench.errors import BenchError
from worldvla_bench.manifest import write_or_check_manifest
from worldvla_bench.records import append_episode
from worldvla_bench.report import load_run, success_rate_table, wilson_interval, write_report


def make_run(path: Path, outcomes: dict[int, list[bool]], max_steps: int = 220,
             mujoco: str = "3.17.0", errors: tuple = (), first_trial: int = 0) -> Path:
    """A run directory whose task t has trials first_trial, ... with the given successes."""
    path.mkdir(parents=True)
    config = {"suite": "libero_spatial", "policy": "p", "policy_kwargs": {}, "seed": 7,
              "image_size": 256, "max_steps": max_steps}
    write_or_check_manifest(path, config, {"name": "libero_spatial", "max_steps": max_steps}, {})
    import json

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["versions"]["mujoco"] = mujoco
    manifest["invocations"][0]["versions"]["mujoco"] = mujoco
    (path / "manifest.json").write_text(json.dumps(manifest))
    for task, results in outcomes.items():
        for trial, success in enumerate(results, start=first_trial):
            append_episode(path, {
                "suite": "libero_spatial", "task_id": task, "task_name": f"task_{task}",
                "trial": trial, "success": success, "steps": 10 if success else 20,
                "error": "PolicyOutputError: x" if (task, trial) in errors else None,
                "actions_at_bound_frac": 0.0})
    return path


def test_wilson_interval_matches_published_values():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson_interval(0, 2)
    assert low == 0.0 and high == pytest.approx(0.6576, abs=1e-4)
    low, high = wilson_interval(50, 50)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.9287, abs=1e-4)


def test_success_rate_table_per_task_and_suite(tmp_path):
    run = make_run(tmp_path / "r", {0: [True] * 5 + [False] * 5, 1: [True] * 10},
                   errors=((0, 9),))
    table = success_rate_table(load_run(run)).set_index("task_id")
    # trial 9 of task 0 ended in an error: it did not run, so it is no failed trial
    assert table.loc[0, "success_rate"] == pytest.approx(500 / 9) and table.loc[0, "trials"] == 9
    assert table.loc[0, "ci_low"] == pytest.approx(26.67, abs=0.01)
    assert table.loc[1, "success_rate"] == 100.0
    assert table.loc["all", "successes"] == 15 and table.loc["all", "trials"] == 19
    assert table.loc["all", "success_rate"] == pytest.approx(1500 / 19)
    # mean steps over the 9 episodes that ran (5 x 10 + 4 x 20), as trials
    assert table.loc[0, "mean_steps"] == pytest.approx(130 / 9) and table.loc[0, "errors"] == 1


def test_write_report_writes_markdown_and_csv_with_warnings(tmp_path):
    run = make_run(tmp_path / "r", {0: [False] * 6})
    result = write_report(run)
    assert (run / "report.md").read_text() == result["markdown"]
    assert "95% CI" in result["markdown"] and "[0.0, 39.0]" in result["markdown"]
    assert (run / "report.csv").read_text().startswith("run,suite,task_id")
    assert any("0 successes" in w for w in result["warnings"])



def test_a_task_whose_episodes_all_ended_in_an_error_shows_n_a(tmp_path, capsys):
    run = make_run(tmp_path / "r", {0: [True, False], 1: [False, False]},
                   errors=((1, 0), (1, 1)))
    result = write_report(run)
    cells = [[c.strip() for c in line.split("|")[1:-1]]
             for line in result["markdown"].splitlines() if line.startswith("| ")]
    rows = {row[1]: row for row in cells}  # by task_id
    header = rows["task_id"]
    task_1 = dict(zip(header, rows["1"], strict=True))
    assert (task_1["trials"], task_1["success %"], task_1["95% CI"], task_1["errors"]) == \
        ("0", "n/a", "n/a", "2")
    suite = dict(zip(header, rows["all"], strict=True))
    assert (suite["trials"], suite["success %"], suite["errors"]) == ("2", "50.0", "2")
    assert "nan" not in result["markdown"].lower()
    csv = (run / "report.csv").read_text()
    assert "nan" not in csv.lower()
    [task_1_line] = [line for line in csv.splitlines() if ",1,task_1," in line]
    # trials, successes, no rate, interval nor mean steps (no episode ran)
    assert task_1_line.endswith(",0,0,,,,,2")
    # every episode of the run ended in an error: the suite row too
    every = make_run(tmp_path / "e", {0: [False, False]}, errors=((0, 0), (0, 1)))
    assert main(["report", str(every)]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "nan" not in out.lower()

def test_exact_mcnemar_known_values():
    assert exact_mcnemar(0, 6) == pytest.approx(2 * 0.5**6)
    assert exact_mcnemar(3, 3) == 1.0 and exact_mcnemar(0, 0) == 1.0


def test_compare_pairs_trials_and_flags_protocol_differences(tmp_path):
    a = make_run(tmp_path / "a", {0: [False] * 10, 1: [True] * 10})
    b = make_run(tmp_path / "b", {0: [True] * 6 + [False] * 4, 1: [True] * 10},
                 max_steps=300, mujoco="3.2.0")
    result = compare_runs(a, b)
    table = result["table"].set_index("task_id")
    assert table.loc[0, "test"] == "mcnemar" and table.loc[0, "delta"] == 60.0
    assert table.loc[0, "p_value"] == pytest.approx(2 * 0.5**6)
    assert bool(table.loc[0, "significant"]) and not bool(table.loc[1, "significant"])
    assert table.loc["all", "delta"] == 30.0
    differences = {d.what: d for d in result["differences"]}
    assert differences["protocol.max_steps"].moves_numbers is True
    assert (differences["versions.mujoco"].a, differences["versions.mujoco"].b) == (
        "3.17.0", "3.2.0")


def test_compare_runs_without_a_shared_trial_uses_fisher(tmp_path):
    a = make_run(tmp_path / "a", {0: [True] * 8 + [False] * 2})
    b = make_run(tmp_path / "b", {0: [True] * 2 + [False] * 8}, first_trial=10)  # none shared
    row = compare_runs(a, b)["table"].set_index("task_id").loc[0]
    assert row["test"] == "fisher" and row["pairs"] == 0 and row["unpaired"] == 20
    assert row["p_value"] == pytest.approx(0.0230141, abs=1e-6)  # hypergeometric by hand
    assert row["delta"] == pytest.approx(20.0 - 80.0)


def test_compare_partly_paired_runs_tests_the_pairs(tmp_path, capsys):
    """A run over trials 0-19 against one over 0-9 (a subset): McNemar on the 10 pairs, the
    success rates and delta over them, the 10 episodes without a partner counted, not mixed."""
    a = make_run(tmp_path / "a", {0: [False] * 10 + [True] * 10})
    b = make_run(tmp_path / "b", {0: [True] * 6 + [False] * 4})
    table = compare_runs(a, b)["table"].set_index("task_id")
    for task in (0, "all"):
        row = table.loc[task]
        assert (row["trials_a"], row["trials_b"], row["pairs"], row["unpaired"]) == (20, 10, 10, 10)
        assert row["test"] == "mcnemar" and (row["only_a"], row["only_b"]) == (0, 6)
        assert row["success_a"] == 0.0 and row["success_b"] == 60.0 and row["delta"] == 60.0
        assert row["p_value"] == pytest.approx(2 * 0.5**6)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "unpaired" in out.splitlines()[1]  # a column of the table's header
    assert "10 episodes have no partner" in out


def test_report_of_a_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="not a run directory"):
        load_run(tmp_path)


def test_cli_report_and_compare_on_a_real_run(recorded_run: Path, capsys):
    assert main(["report", str(recorded_run)]) == 0
    out = capsys.readouterr().out
    assert "libero_spatial" in out and "report.md" in out
    assert main(["compare", str(recorded_run), str(recorded_run)]) == 0
    out = capsys.readouterr().out
    assert "mcnemar" in out and "+0.0" in out


def test_cli_finds_a_run_in_the_working_directory(recorded_run: Path, tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(recorded_run.parent)
    assert main(["report", recorded_run.name]) == 0  # no results/ here: ./<name> is the run
    assert "libero_spatial" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "nothere", str(recorded_run)]) == 2
    err = capsys.readouterr().err
    assert "neither results/nothere nor ./nothere" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["eval", "--suite", "nope"], "unknown suite 'nope'; valid: libero_90"),
        (["eval", "--suite", "libero_goal", "--tasks", "10"], "valid: 0..9"),
        (["eval", "--suite", "libero_goal", "--policy", "nope"], "valid: expert, noop, random"),
        (["eval", "--suite", "libero_goal", "--trials", "51"], "trials 0..50 are not all among"),
        (["eval", "--suite", "libero_goal", "--trials", "5", "--first-trial", "46"],
         "trials 46..50 are not all among the 50 init states"),
        (["eval", "--suite", "libero_goal", "--policy-arg", "x=1"], "bad arguments for policy"),
        (["eval", "--suite", "libero_gaol"],
         "unknown suite 'libero_gaol'; did you mean 'libero_goal'"),
        (["eval", "--suite", "libero_goal", "--trials", "0"],
         "--trials must be at least 1 (got 0)"),
        (["eval", "--suite", "libero_goal", "--first-trial", "-1"],
         "--first-trial must be at least 0 (got -1)"),
        (["eval", "--suite", "libero_goal", "--policy-arg", "action_nois=0.3"],
         "(did you mean 'action_noise' for 'action_nois'?); it takes: verbose, action_noise"),
        (["report", "/nonexistent/run"], "not a run directory"),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_value(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_unusable_results_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["eval", "--suite", "libero_goal", "--tasks", "0", "--trials", "1", "--run",
            str(blocker)]
    assert main(argv) == 2
    assert "not a directory" in capsys.readouterr().err


def test_compare_says_why_a_task_has_no_trial_in_one_run(tmp_path):
    a = make_run(tmp_path / "a", {0: [True, False], 1: [False, False]}, errors=((1, 0), (1, 1)))
    b = make_run(tmp_path / "b", {0: [True, True], 1: [True, False], 2: [True]})
    rows = {row["task_id"]: row for row in compare_runs(a, b)["table"].to_dict("records")}
    assert rows[1]["test"] == "A: every episode an error (2)"
    assert (rows[1]["trials_a"], rows[1]["trials_b"]) == (0, 2)
    assert rows[2]["test"] == "missing in one run"  # task 2 never ran in A
