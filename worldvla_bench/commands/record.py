"""`worldvla-bench record`: record demonstrations as LIBERO/robomimic HDF5 files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worldvla_bench.commands import run_flags
from worldvla_bench.commands.common import default_run_name


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "record", help="record demonstrations as LIBERO/robomimic HDF5 files")
    run_flags.add_protocol_flags(parser)
    run_flags.add_selection_flags(parser)
    parser.add_argument("--out", default="results/demos", help="output directory")
    run_flags.add_execution_flags(parser)
    parser.add_argument("--all-episodes", action="store_true", help="keep failed episodes too")
    run_flags.add_frame_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.demos import run_to_hdf5
    from worldvla_bench.report import write_report
    from worldvla_bench.rollout import run_evaluation

    protocol = run_flags.protocol_from_args(args)
    out = Path(args.out)
    run_dir = out / f"_run_{default_run_name(protocol)}"
    run_evaluation(protocol, run_flags.options_from_args(args, run_dir, save_frames=True))
    paths = run_to_hdf5(run_dir, out, successful_only=not args.all_episodes)
    table = write_report(run_dir)["table"]
    total = table[table["task_id"] == "all"]
    print(total[["suite", "trials", "successes", "success_rate"]].to_string(index=False))
    for path, rewritten in paths.items():
        print(f"{'written' if rewritten else 'up to date'}: {path}")
    if not paths:
        print("no episode qualified (use --all-episodes to keep failures too)")
    return 0
