"""The `worldvla-bench` subcommands: one module per command, each registered in `COMMANDS`.

A command is a `Command(help=..., add_parser="module:function")`: `function(subparsers)` adds
its argparse parser, whose `func(args)` returns the exit code. The core's commands are
registered below; an installed package adds its own through the `worldvla_bench.commands`
entry points (WorldVLA's train, ablation and export-checkpoint), the same way. A command's
module is imported only when that command runs, so listing the commands imports nothing heavy.

Shared pieces: `commands.run_flags` (the flags of every command that runs episodes, turned into
a `Protocol` and a `RunOptions`) and `commands.common` (run names, printing a report).
"""

from __future__ import annotations

from worldvla_bench.registry import Command, Registry

COMMANDS: Registry[Command] = Registry("command", group="worldvla_bench.commands",
                                       check=lambda obj: isinstance(obj, Command))

#: The core's commands, in the order `worldvla-bench --help` lists them.
BUILTIN: dict[str, Command] = {
    "eval": Command(help="run (or resume) an evaluation",
                    add_parser="worldvla_bench.commands.eval:add_parser"),
    "record": Command(help="record demonstrations as LIBERO/robomimic HDF5 files",
                      add_parser="worldvla_bench.commands.record:add_parser"),
    "conformance": Command(help="our engine against OpenVLA's/openpi's loop on the raw LIBERO "
                                "env, same actions (exit 1: disagreement)",
                           add_parser="worldvla_bench.commands.conformance:add_parser"),
    "report": Command(help="success rates of a run (writes report.md, report.csv and "
                           "results.json)",
                      add_parser="worldvla_bench.commands.report:add_parser"),
    "compare": Command(help="compare two runs with significance tests",
                       add_parser="worldvla_bench.commands.compare:add_parser"),
    "wm-eval": Command(help="score a world model's predicted frames",
                       add_parser="worldvla_bench.commands.wm_eval:add_parser"),
    "export-lerobot": Command(
        help="write a run recorded with --save-frames as a LeRobot v3 dataset",
        add_parser="worldvla_bench.commands.export_lerobot:add_parser"),
    "serve-policy": Command(
        help="serve a policy over websocket + msgpack (openpi or vla-eval protocol)",
        add_parser="worldvla_bench.serving.serve_cli:add_serve_parser"),
    "train-judge": Command(
        help="train the success judge (a small CNN) on frames of recorded runs",
        add_parser="worldvla_bench.commands.train_judge:add_parser"),
    "wm-rank": Command(
        help="rank a panel of policies in LIBERO and in world models, and compare the rankings",
        add_parser="worldvla_bench.commands.wm_rank:add_parser"),
    "suites": Command(help="list the suites",
                      add_parser="worldvla_bench.commands.listings:add_suites_parser"),
    "policies": Command(help="list the built-in policies",
                        add_parser="worldvla_bench.commands.listings:add_policies_parser"),
}
for _name, _command in BUILTIN.items():
    COMMANDS.register(_name, _command)
del _name, _command
