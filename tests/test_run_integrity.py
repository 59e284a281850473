"""Nothing lost, nothing mixed: one writer per run directory, records that need their manifest,
unreadable lines that stop instead of vanishing, one-line errors, and error episodes kept apart
from the success rate (issue 28). Unit tests on the run directory; a few short LIBERO runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import split_config
from policies_for_tests import SleepyPolicy
from test_report import make_run

from worldvla_bench.cli import main
from worldvla_bench.errors import BenchError, RunDirectoryError, ServerUnreachableError
from worldvla_bench.manifest import write_or_check_manifest
from worldvla_bench.records import append_episode, read_episodes
from worldvla_bench.report import load_run, success_rate_table, write_report
from worldvla_bench.rollout import run_evaluation
from worldvla_bench.run_lock import run_dir_lock
from worldvla_bench.serving.server import PolicyServer
from worldvla_bench.tasks import load_suite

CONFIG = {"suite": "libero_spatial", "policy": "p", "policy_kwargs": {}, "seed": 7,
          "image_size": 64, "max_steps": 10}
SUITE = {"name": "libero_spatial", "max_steps": 10}
SHORT = ["--suite", "libero_spatial", "--tasks", "0", "--image-size", "64", "--max-steps", "10",
         "--workers", "1", "--no-progress"]


def _record(trial: int, success: bool = False, error: str | None = None) -> dict:
    return {"suite": "libero_spatial", "task_id": 0, "task_name": "t", "trial": trial,
            "success": success, "steps": 5, "error": error, "actions_at_bound_frac": 0.0}


# -- one writer per run directory -------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with run_dir_lock(tmp_path):
        with pytest.raises(RunDirectoryError, match=f"in use by another run \\(pid {os.getpid()}"):
            with run_dir_lock(tmp_path):
                pass
    with run_dir_lock(tmp_path):  # released when the block ended
        pass


def test_a_lock_held_by_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from worldvla_bench.run_lock import "
         "run_dir_lock\nwith run_dir_lock(sys.argv[1]):\n print('held', flush=True); "
         "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunDirectoryError, match=f"pid {holder.pid}"):
        with run_dir_lock(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_dir_lock(tmp_path):  # the stale lock file is there; the dead holder's lock is not
        assert (tmp_path / ".lock").exists()


def test_eval_into_a_run_directory_in_use_is_one_line_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "busy"
    run.mkdir()
    with run_dir_lock(run):
        assert main(["eval", *SHORT, "--trials", "1", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is in use by another run" in err and err.count("\n") == 1
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no manifest, no records


def test_report_counts_a_duplicated_episode_once_and_warns(tmp_path):
    run = make_run(tmp_path / "r", {0: [False, False, False]})
    for trial in range(3):  # a second writer ran the same episodes
        append_episode(run, _record(trial, success=True))
    table = success_rate_table(load_run(run)).set_index("task_id")
    assert table.loc["all", "trials"] == 3 and table.loc["all", "successes"] == 0
    warnings = write_report(run)["warnings"]
    assert any("3 duplicate records" in w for w in warnings)


# -- records need their manifest; unreadable lines stop -----------------------------------------

def test_records_without_a_manifest_are_refused(tmp_path):
    append_episode(tmp_path, _record(0))
    with pytest.raises(RunDirectoryError, match="holds episode records but no manifest.json"):
        write_or_check_manifest(tmp_path, CONFIG, SUITE, {})
    assert not (tmp_path / "manifest.json").exists()


def test_an_unreadable_line_in_the_middle_stops_with_its_line_number(tmp_path):
    for trial in range(3):
        append_episode(tmp_path, _record(trial))
    path = tmp_path / "episodes.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = '{"suite": "libero_spatial", "task_id": 0, "tri\n'  # damaged, not the last
    path.write_text("".join(lines))
    before = path.read_bytes()
    for repair in (False, True):
        with pytest.raises(RunDirectoryError, match=r"episodes.jsonl:2: not an episode record"):
            read_episodes(tmp_path, repair=repair)
    assert path.read_bytes() == before  # nothing deleted


def test_only_an_unterminated_last_line_is_trimmed(tmp_path):
    append_episode(tmp_path, _record(0))
    path = tmp_path / "episodes.jsonl"
    with path.open("a") as stream:
        stream.write(json.dumps(_record(1)))  # whole, but its newline never written
    assert [r["trial"] for r in read_episodes(tmp_path, repair=True)] == [0, 1]
    with path.open("a") as stream:
        stream.write('{"suite": "libero_spatial", "ta')  # torn by a kill
    assert [r["trial"] for r in read_episodes(tmp_path, repair=True)] == [0, 1]
    append_episode(tmp_path, _record(2))
    assert [r["trial"] for r in read_episodes(tmp_path)] == [0, 1, 2]


def test_report_on_a_damaged_file_is_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "r", {0: [True, False]})
    with (run / "episodes.jsonl").open("a") as stream:
        stream.write("garbage\n")
        stream.write(json.dumps(_record(2)) + "\n")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "episodes.jsonl:3: not an episode record" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["report", "compare", "eval"])
def test_a_corrupt_manifest_is_one_line(tmp_path, capsys, command):
    run = make_run(tmp_path / "r", {0: [True]})
    (run / "manifest.json").write_text('{"config": {"suite": ')
    argv = {"report": ["report", str(run)], "compare": ["compare", str(run), str(run)],
            "eval": ["eval", *SHORT, "--trials", "1", "--run", str(run)]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and err.count("\n") == 1 and "Traceback" not in err


# -- reports: errors apart, written whole or not at all ---------------------------------------

def test_success_rate_is_over_the_episodes_that_ran(tmp_path):
    run = make_run(tmp_path / "r", {0: [True, False, False, False]}, errors=((0, 2), (0, 3)))
    row = success_rate_table(load_run(run)).set_index("task_id").loc["all"]
    assert (row["trials"], row["successes"], row["errors"]) == (2, 1, 2)
    assert row["success_rate"] == 50.0


def test_an_unwritable_report_still_prints_the_table(tmp_path, capsys):
    run = make_run(tmp_path / "r", {0: [True, False]})
    (run / "report.csv").mkdir()  # the report cannot replace it
    assert main(["report", str(run)]) == 1
    captured = capsys.readouterr()
    assert "| task_id" in captured.out or "task_id" in captured.out
    assert "cannot write the report" in captured.err and captured.err.count("\n") == 1
    assert not [p for p in run.iterdir() if p.name.startswith(".report")]  # no temporaries


# -- input checked before anything is written --------------------------------------------------

@pytest.mark.parametrize("extra,message", [
    (["--tasks", "5-2"], "the range '5-2' is empty"),
    (["--workers", "0"], "workers must be >= 1, got 0"),
    (["--workers", "-3"], "workers must be >= 1, got -3"),
    (["--episode-timeout", "0"], "episode timeout must be > 0 seconds"),
    (["--policy", "random", "--policy-arg", "chunk_size=2.7"], "chunk_size=2.7 is not of type int"),
    (["--policy", "random", "--policy-arg", "chunk_size=abc"], "chunk_size='abc' is not of type"),
])
def test_bad_values_are_one_line_and_leave_no_run_behind(tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    argv = ["eval", "--suite", "libero_spatial", "--trials", "1", "--run", str(run), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not run.exists()


def test_one_bad_suite_file_breaks_only_itself(tmp_path, monkeypatch, capsys):
    from worldvla_bench.tasks import DEFAULT_TASKS_DIR

    (tmp_path / "libero_spatial.yaml").write_text(
        (DEFAULT_TASKS_DIR / "libero_spatial.yaml").read_text())
    (tmp_path / "syntax.yaml").write_text("name: syntax\nmax_steps: [1,\n")
    (tmp_path / "typo.yaml").write_text("name: typo\nlibero_benchmark: libero_goal\n"
                                        "max_steps: 22O\n")
    (tmp_path / "alist.yaml").write_text("- name: alist\n")
    monkeypatch.setenv("WORLDVLA_TASKS_DIR", str(tmp_path))
    assert load_suite("libero_spatial").max_steps == 220
    for name, message in (("syntax", "not valid YAML at line"),
                          ("typo", "max_steps must be an integer, got '22O'"),
                          ("alist", "expected a mapping of suite fields, got a list")):
        with pytest.raises(BenchError, match=message):
            load_suite(name)
    assert main(["suites"]) == 0
    captured = capsys.readouterr()
    assert "libero_spatial" in captured.out and captured.err.count("warning:") == 3


# -- errors on real (short) runs -----------------------------------------------------------------

def test_eval_exits_non_zero_when_episodes_ended_in_an_error(tmp_path, capsys):
    run = tmp_path / "bad"
    argv = ["eval", *SHORT, "--trials", "1", "--run", str(run), "--no-report",
            "--policy", "policies_for_tests:WrongShapePolicy"]
    assert main(argv) == 1
    assert "1 episode(s)" in capsys.readouterr().err
    assert main([*argv, "--allow-errors"]) == 0


def test_a_policy_that_cannot_be_built_stops_the_run_before_any_episode(tmp_path, capsys):
    run = tmp_path / "unbuildable"
    argv = ["eval", *SHORT, "--trials", "2", "--run", str(run), "--no-report",
            "--policy", "policies_for_tests:UnbuildablePolicy"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "could not be built" in err and "no weights at /nowhere" in err
    assert read_episodes(run) == []


def test_a_full_disk_stops_the_run_in_one_line(tmp_path, monkeypatch):
    import worldvla_bench.rollout as rollout

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rollout, "append_episode", full)
    with pytest.raises(RunDirectoryError, match="No space left on device; the run stopped"):
        run_evaluation(*split_config(suite="libero_spatial", policy="noop", tasks="0", trials=2,
                                     run_dir=tmp_path / "full", workers=1, progress=False,
                                     image_size=64, max_steps=5))


def test_retry_errors_keeps_errors_outside_the_selection(tmp_path):
    run = tmp_path / "retry"
    common = dict(suite="libero_spatial", policy="policies_for_tests:WrongShapePolicy",
                  tasks="0", run_dir=run, workers=1, progress=False, image_size=64, max_steps=5)
    run_evaluation(*split_config(trials=2, **common))
    assert sorted(r["trial"] for r in read_episodes(run) if r["error"]) == [0, 1]
    run_evaluation(*split_config(trials=1, retry_errors=True, **common))  # trial 0 only
    assert sorted(r["trial"] for r in read_episodes(run) if r["error"]) == [0, 1]


@pytest.mark.parametrize("once", [True, False])
def test_a_worker_death_is_charged_to_its_own_episode(tmp_path, once):
    run = tmp_path / "dies"
    kwargs = {"marker": str(tmp_path / "died")} if once else {}
    run_evaluation(*split_config(suite="libero_spatial", policy="policies_for_tests:"
                                 "DiesOnTrialZeroPolicy", policy_kwargs=kwargs, tasks="0",
                                 trials=3, run_dir=run, workers=2, progress=False, image_size=64,
                                 max_steps=5))
    records = {r["trial"]: r for r in read_episodes(run)}
    assert sorted(records) == [0, 1, 2]
    for trial in (1, 2):  # their workers were healthy: the pool's break is not their fault
        assert records[trial]["error"] is None and records[trial]["retries"] == 0
    assert records[0]["retries"] == 1 and records[0]["worker_exits"][0] == "exit code 1"
    if once:  # retried once, and recorded as such
        assert records[0]["error"] is None and records[0]["worker_exits"] == ["exit code 1"]
    else:
        assert records[0]["error"] == ("WorkerDied: the worker process died twice "
                                       "(exit code 1, then exit code 1)")



def test_a_dead_policy_server_stops_the_run_and_the_same_command_resumes(tmp_path, capsys):
    run = tmp_path / "dead"
    with PolicyServer("random", {"chunk_size": 5}, port=0) as server:
        port = server.port
        argv = ["eval", *SHORT, "--policy", "remote", "--policy-arg", f"port={port}",
                "--policy-arg", "retries=1", "--policy-arg", "backoff_s=0.1", "--run", str(run),
                "--no-report"]
        assert main([*argv, "--trials", "1"]) == 0
    capsys.readouterr()
    command = [*argv, "--trials", "3"]  # the server is gone: one line, not 2 error episodes
    assert main(command) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"worldvla-bench: error: policy server at 127.0.0.1:{port} "
                           f"unreachable: ") and "(2 attempts)" in line
    assert line.endswith("; resume with the same command when it is back")
    assert [(r["trial"], r["error"]) for r in read_episodes(run)] == [(0, None)]
    with PolicyServer("random", {"chunk_size": 5}, port=port):
        assert main(command) == 0
    records = read_episodes(run)
    assert sorted(r["trial"] for r in records) == [0, 1, 2]
    assert all(r["error"] is None and r["steps"] == 10 for r in records)


def test_a_server_lost_mid_episode_stops_the_run_without_recording_it(tmp_path):
    run = tmp_path / "lost"
    with pytest.raises(ServerUnreachableError, match=r"^policy server at 127.0.0.1:9 unreachable: "
                       r"ConnectionRefusedError: .* \(4 attempts\); resume with the same "
                       r"command when it is back$"):
        run_evaluation(*split_config(suite="libero_spatial", policy="policies_for_tests:"
                                     "ServerGoneOnTrialOnePolicy", tasks="0", trials=3,
                                     run_dir=run, workers=1, progress=False, image_size=64,
                                     max_steps=5))
    assert [(r["trial"], r["error"]) for r in read_episodes(run)] == [(0, None)]


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_slow_policy_call_is_warned_about_once_per_run(tmp_path, caplog, where):
    common = dict(suite="libero_spatial", tasks="0", trials=2, run_dir=tmp_path / where,
                  workers=1, progress=False, image_size=64, max_steps=3, slow_call_s=0.2)
    with contextlib.ExitStack() as stack, caplog.at_level(logging.WARNING):
        if where == "local":
            run_evaluation(*split_config(policy="policies_for_tests:SleepyPolicy",
                                         policy_kwargs={"sleep_s": 0.3}, **common))
        else:
            server = stack.enter_context(PolicyServer(SleepyPolicy, {"sleep_s": 0.3}, port=0))
            run_evaluation(*split_config(policy="remote", policy_kwargs={"port": server.port},
                                         **common))
    records = read_episodes(tmp_path / where)
    assert all(0.3 <= r["slowest_call_s"] < 5 and r["policy_calls"] == 3 for r in records)
    slow = [r.getMessage() for r in caplog.records if "slow policy call" in r.getMessage()]
    assert len(slow) == 1, slow  # 6 slow calls, one line
    assert re.fullmatch(r"slow policy call: 0\.\d s \(task 0 trial 0\), over 0\.2 s \(warned "
                        r"once per run\)", slow[0]), slow[0]
    if where == "local":
        caplog.clear()
        with caplog.at_level(logging.WARNING):  # under the default threshold (10 s): nothing
            run_evaluation(*split_config(**{**common, "run_dir": tmp_path / "fast",
                                            "slow_call_s": 10.0},
                                         policy="policies_for_tests:SleepyPolicy",
                                         policy_kwargs={"sleep_s": 0.3}))
        assert not [r for r in caplog.records if "slow policy call" in r.getMessage()]

def test_an_episode_over_its_timeout_is_an_error_and_the_run_goes_on(tmp_path):
    run = tmp_path / "hangs"
    started = time.time()
    run_evaluation(*split_config(suite="libero_spatial", policy="policies_for_tests:"
                                 "HangsOnTrialZeroPolicy", tasks="0", trials=2, run_dir=run,
                                 workers=1, progress=False, image_size=64, max_steps=5,
                                 episode_timeout=40))
    assert time.time() - started < 300
    records = {r["trial"]: r for r in read_episodes(run)}
    assert records[0]["error"].startswith("EpisodeTimeout: the episode ran longer than 40 s")
    assert records[1]["error"] is None and records[1]["steps"] == 5


def test_ctrl_c_prints_the_resume_hint_and_exits_130(tmp_path):
    run = tmp_path / "interrupted"
    command = [sys.executable, "-m", "worldvla_bench.cli", "eval", *SHORT, "--trials", "3",
               "--max-steps", "300", "--policy", "noop", "--run", str(run), "--no-report"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not (run / "manifest.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(8)  # the worker is running an episode
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    interrupted = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.time() - interrupted < 10, "the workers are stopped, not waited for"
    assert "re-run the same command to resume" in err and "Traceback" not in err
