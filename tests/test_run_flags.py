"""Every command that runs episodes takes the run flags from one place
(`worldvla_bench.commands.run_flags`): each flag has the same dest, type and default in each
command (where a command fixes or defaults a value differently, the table below says so), and
the same command line gives the same `Protocol` and `RunOptions` in each."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from worldvla_bench.cli import build_parser, main
from worldvla_bench.commands import run_flags
from worldvla_bench.envs.seeding import DEFAULT_SEEDING, SEEDINGS
from worldvla_bench.errors import BenchError
from worldvla_bench.protocol import Protocol, RunOptions

#: flag -> (dest, type, default, takes a value): the meaning every command shares
SHARED = {
    "--suite": ("suite", None, None, True),
    "--policy": ("policy", None, "expert", True),
    "--policy-arg": ("policy_arg", None, None, True),
    "--seed": ("seed", int, 7, True),
    "--seeding": ("seeding", None, DEFAULT_SEEDING, True),
    "--image-size": ("image_size", int, None, True),
    "--max-steps": ("max_steps", int, None, True),
    "--fast-render": ("fast_render", None, False, False),
    "--tasks": ("tasks", None, None, True),
    "--trials": ("trials", int, None, True),
    "--first-trial": ("first_trial", int, 0, True),
    "--workers": ("workers", int, None, True),
    "--no-progress": ("no_progress", None, False, False),
    "--cameras": ("cameras", None, None, True),
}
PROTOCOL_FLAGS = ["--suite", "--seed", "--seeding", "--image-size", "--max-steps",
                  "--fast-render"]
SELECTION = ["--tasks", "--trials", "--first-trial", "--workers", "--no-progress"]
#: command -> (the shared flags it has, what it changes and why, the other required arguments)
COMMANDS = {
    "eval": (list(SHARED), {}, []),
    "record": (list(SHARED), {}, []),
    # the policies are the expert's and replayed random sequences; the reference loop renders
    # with the defaults, from trial 0 in order, under a seeding it has
    "conformance": ([f for f in PROTOCOL_FLAGS if f != "--fast-render"]
                    + [f for f in SELECTION if f != "--first-trial"],
                    {"--tasks": "0", "--trials": 3, "--image-size": 64}, []),
    # the panel names the policies
    "wm-rank": (PROTOCOL_FLAGS + SELECTION, {}, ["--panel", "p.yaml"]),
    # --train-seeds are the training seeds: the run seed is --eval-seed; each cell is a
    # checkpoint (--policy-arg: more arguments for every cell's policy)
    "ablation": ([f for f in PROTOCOL_FLAGS if f != "--seed"] + ["--policy-arg"] + SELECTION,
                 {"--tasks": "0"}, []),
}


def _parser(command: str) -> argparse.ArgumentParser:
    """The full parser of one command, as `worldvla-bench COMMAND` builds it."""
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _flag(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_has_the_shared_flags_with_the_same_meaning(command):
    flags, defaults, _ = COMMANDS[command]
    parser = _parser(command)
    for flag, (dest, kind, default, takes_value) in SHARED.items():
        action = _flag(parser, flag)
        if flag not in flags:
            assert action is None, (command, flag)
            continue
        assert action is not None, f"{command} has no {flag}"
        assert action.dest == dest and action.type is kind, (command, flag)
        assert action.default == defaults.get(flag, default), (command, flag)
        assert (action.nargs != 0) == takes_value, (command, flag)
    seeding = _flag(parser, "--seeding")
    assert DEFAULT_SEEDING in seeding.choices and set(seeding.choices) <= set(SEEDINGS)
    assert (_flag(parser, "--suite").required, _flag(parser, "--tasks").required) == (True, False)


@pytest.mark.parametrize("command", [*COMMANDS, "train-judge"])
def test_each_command_help_lists_its_shared_flags(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    flags = COMMANDS[command][0] if command in COMMANDS else ["--tasks"]
    assert all(flag in shown for flag in flags), command
    assert "'0-4'" in shown  # --tasks takes ranges everywhere


def test_train_judge_tasks_is_the_shared_selection_flag():
    action = _flag(_parser("train-judge"), "--tasks")
    assert (action.dest, action.type, action.default) == SHARED["--tasks"][:3]


def test_conformance_offers_only_the_seedings_with_a_reference_loop():
    choices = _flag(_parser("conformance"), "--seeding").choices
    assert set(choices) == {name for name, seed in SEEDINGS.items() if seed is not None}
    assert set(_flag(_parser("eval"), "--seeding").choices) == set(SEEDINGS)


def test_ablation_takes_the_run_seed_as_eval_seed_beside_the_training_seeds():
    parser = _parser("ablation")
    args = parser.parse_args(["--suite", "libero_goal", "--train-seeds", "1,4",
                              "--eval-seed", "3"])
    assert args.train_seeds == "1,4"  # training: one run per cell and seed
    assert run_flags.protocol_from_args(args).seed == 3
    assert parser.parse_args(["--suite", "libero_goal"]).train_seeds == "0,1"
    with pytest.raises(SystemExit):  # no --seed: it would name one training seed of several
        parser.parse_args(["--suite", "libero_goal", "--seed", "1"])


ARGV = ["--suite", "libero_goal", "--seed", "3", "--seeding", "openpi", "--image-size", "64",
        "--max-steps", "20", "--fast-render", "--tasks", "0-4", "--trials", "2",
        "--first-trial", "5", "--workers", "2", "--no-progress"]


def _argv(command: str) -> list[str]:
    """ARGV with the flags the command has (ablation: --eval-seed for --seed)."""
    flags, _, extra = COMMANDS[command]
    argv, pairs, i = [], [], 0
    while i < len(ARGV):
        flag = ARGV[i]
        takes_value = SHARED[flag][3]
        pairs.append(ARGV[i:i + 2] if takes_value else [flag])
        i += 2 if takes_value else 1
    for pair in pairs:
        if pair[0] in flags:
            argv += pair
        elif pair[0] == "--seed" and command == "ablation":
            argv += ["--eval-seed", pair[1]]
    return argv + extra


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_same_flags_give_the_same_protocol_and_options_in_every_command(command):
    args = _parser(command).parse_args(_argv(command))
    protocol = run_flags.protocol_from_args(args, policy="expert")
    options = run_flags.options_from_args(args)
    flags = COMMANDS[command][0]
    expected = Protocol("libero_goal", seed=3, seeding="openpi", image_size=64, max_steps=20,
                        fast_render="--fast-render" in flags)
    assert protocol == expected
    assert options == RunOptions(tasks="0-4", trials=2, workers=2, progress=False,
                                 first_trial=5 if "--first-trial" in flags else 0)


def test_eval_and_record_read_the_policy_and_its_arguments():
    for command in ("eval", "record"):
        args = _parser(command).parse_args(["--suite", "libero_goal", "--policy", "random",
                                            "--policy-arg", "scale=0.5"])
        assert run_flags.protocol_from_args(args) == Protocol(
            "libero_goal", policy="random", policy_kwargs={"scale": 0.5})
        assert run_flags.options_from_args(args, "x", save_frames=True) == RunOptions(
            run_dir="x", save_frames=True)


def test_all_tasks_is_no_task_list():
    args = _parser("ablation").parse_args(["--suite", "libero_goal", "--tasks", "all"])
    assert run_flags.options_from_args(args).tasks is None
    assert replace(run_flags.options_from_args(args), tasks="0") == RunOptions(tasks="0")


def test_task_keys_take_ids_ranges_and_suite_keys():
    assert run_flags.parse_task_keys(None) is None and run_flags.parse_task_keys("all") is None
    assert run_flags.parse_task_keys("1,4") == {1, 4}
    assert run_flags.parse_task_keys("0-4") == {0, 1, 2, 3, 4}
    assert run_flags.parse_task_keys("libero_goal/1-2,3") == {"libero_goal/1", "libero_goal/2",
                                                              3}
    for bad in ("x", "1,,2", "/3", "libero_goal/", "4-2", "-1"):
        with pytest.raises(BenchError, match="bad task"):
            run_flags.parse_task_keys(bad)


def _labelled_run(run_dir, task_ids):
    """A run recorded with frames: one 4-step episode (16 px frames) per task of libero_goal."""
    from worldvla_bench.records import EpisodeRecord, append_episode, save_episode_arrays

    run_dir.mkdir(parents=True)
    for task_id in task_ids:
        stem = f"libero_goal_t{task_id}_trial0"
        save_episode_arrays(run_dir / "episodes" / f"{stem}.npz",
                            frames_agentview=np.zeros((5, 16, 16, 3), np.uint8),
                            actions=np.zeros((4, 7)))
        append_episode(run_dir, EpisodeRecord(
            suite="libero_goal", task_id=task_id, task_name=f"t{task_id}", instruction="x",
            trial=0, init_state=0, seed=0, policy="noop", success=False, steps=4, max_steps=4,
            wall_time_s=1.0, policy_time_s=0.5, env_time_s=0.5, reset_time_s=0.1,
            policy_calls=4, actions_at_bound_frac=0.0, episode_file=f"episodes/{stem}.npz"))
    (run_dir / "manifest.json").write_text(json.dumps({"config": {"policy": "noop"}}))
    return run_dir


def test_train_judge_takes_task_ranges(tmp_path, capsys):
    from worldvla_bench.worldmodel.judge_data import read_labelled_runs

    run = _labelled_run(tmp_path / "run", [2, 7])
    data = read_labelled_runs([run], run_flags.parse_task_keys("0-4"), progress=False)
    assert set(data.task) == {"libero_goal/2"}
    common = ["train-judge", "--runs", str(run), "--out", str(tmp_path / "j.pt"), "--epochs",
              "1", "--hold-steps", "0", "--no-progress"]
    assert main([*common, "--tasks", "5-6"]) == 2
    assert "no episodes of tasks [5, 6]" in capsys.readouterr().err
    assert main([*common, "--tasks", "0-4"]) == 2  # one episode: none left to hold out
    assert "no episode held out" in capsys.readouterr().err


def test_cameras_choose_the_stored_frames_in_eval_and_record():
    for command in ("eval", "record"):
        args = _parser(command).parse_args(["--suite", "libero_goal", "--cameras", "agentview"])
        options = run_flags.options_from_args(args, "x", save_frames=True)
        assert options.frame_cameras == ("agentview",) and options.save_frames
    args = _parser("eval").parse_args(["--suite", "libero_goal", "--cameras", "agentview"])
    with pytest.raises(BenchError):  # frames are stored only with --save-frames
        run_flags.options_from_args(args, "x")
