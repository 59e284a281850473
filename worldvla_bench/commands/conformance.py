"""`worldvla-bench conformance`: our engine against OpenVLA's/openpi's evaluation loop on the
raw LIBERO env, on the same actions (see `worldvla_bench.conformance`); exit 1 on a
disagreement."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from worldvla_bench.commands import run_flags


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from worldvla_bench.envs.seeding import SEEDINGS

    parser = subparsers.add_parser(
        "conformance", help="our engine against OpenVLA's/openpi's loop on the raw LIBERO env, "
                            "same actions (exit 1: disagreement)")
    # the policies are the sequences'; the reference loop renders with the defaults, from
    # trial 0 in order, under a seeding it has
    run_flags.add_protocol_flags(
        parser, policy=False, fast_render=False, image_size_default=64,
        seed_help="run seed; also seeds the random sequences",
        seedings=tuple(name for name, seed in SEEDINGS.items() if seed is not None))
    run_flags.add_selection_flags(parser, tasks_default="0", trials_default=3, first_trial=False)
    run_flags.add_execution_flags(parser, workers_help="our engine's worker processes")
    parser.add_argument("--sequences", default="expert,random",
                        help="action sequences: expert (the scripted expert's), random (seeded)")
    parser.add_argument("--state-tol", type=float, default=0.0,
                        help="largest |state diff| agreeing")
    parser.add_argument("--pixel-tol", type=int, default=0, help="largest |pixel diff| agreeing")
    parser.add_argument("--out", default=None,
                        help="output directory (default: results/conformance/SUITE_SEEDING)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.conformance import ConformanceConfig, run_conformance, summary

    config = ConformanceConfig(
        protocol=run_flags.protocol_from_args(args), options=run_flags.options_from_args(args),
        sequences=tuple(s for s in args.sequences.split(",") if s),
        out=Path(args.out) if args.out else None, state_tol=args.state_tol,
        pixel_tol=args.pixel_tol)
    table = run_conformance(config)
    shown = table.assign(state_max_abs_diff=table["state_max_abs_diff"].map("{:.3g}".format),
                         frames_differing=table["frames_differing"].map("{:.2%}".format))
    print(shown.to_string(index=False))
    print()
    print(summary(table).to_string(index=False))
    print(f"written: {config.out_dir / 'conformance.csv'}, {config.out_dir / 'conformance.md'}")
    disagreements = int((~table["agrees"]).sum())
    if disagreements:
        print(f"{disagreements} of {len(table)} episodes disagree with the reference loop",
              file=sys.stderr)
        return 1
    return 0
