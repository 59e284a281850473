"""`worldvla-bench eval`: run (or resume) an evaluation, print its report."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worldvla_bench.commands import run_flags
from worldvla_bench.commands.common import default_run_name, print_report, run_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="run (or resume) an evaluation")
    run_flags.add_protocol_flags(parser)
    run_flags.add_selection_flags(parser)
    parser.add_argument("--run", default=None, help="run name under results/, or a path")
    run_flags.add_execution_flags(parser)
    parser.add_argument("--video", action="store_true", help="save an mp4 per episode")
    parser.add_argument("--video-every", type=int, default=1, help="keep every n-th video frame")
    parser.add_argument("--save-frames", action="store_true",
                        help="store every camera frame and sim state per step (world-model "
                             "track)")
    run_flags.add_frame_flags(parser)
    run_flags.add_engine_flags(parser)
    parser.add_argument("--allow-errors", action="store_true",
                        help="exit 0 even if episodes ended in an error (default: exit 1)")
    parser.add_argument("--no-report", action="store_true",
                        help="do not print the report at the end")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.records import read_episodes
    from worldvla_bench.rollout import run_evaluation

    protocol = run_flags.protocol_from_args(args)
    options = run_flags.options_from_args(
        args, run_path(args.run or default_run_name(protocol)), video=args.video,
        video_every=args.video_every, save_frames=args.save_frames)
    run_dir = run_evaluation(protocol, options)
    status = 0 if args.no_report else print_report(run_dir)
    errors = sum(1 for r in read_episodes(run_dir) if r.get("error"))
    if errors and not args.allow_errors:
        print(f"worldvla-bench: {errors} episode(s) of {run_dir} ended in an error: re-run with "
              f"--retry-errors (--allow-errors exits 0 all the same)", file=sys.stderr)
        return status or 1
    return status
