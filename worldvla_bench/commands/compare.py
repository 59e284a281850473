"""`worldvla-bench compare`: two runs, paired significance tests, their manifests' differences."""

from __future__ import annotations

import argparse
from typing import Any

from worldvla_bench.commands.common import existing_run_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("compare", help="compare two runs with significance tests")
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--output", default=None, help="also write the table as CSV here")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.compare import compare_runs, format_comparison, format_differences

    run_a, run_b = existing_run_path(args.run_a), existing_run_path(args.run_b)
    result = compare_runs(run_a, run_b, alpha=args.alpha)
    print(f"A = {run_a}, B = {run_b}; delta = B - A in points; "
          f"* = p < {args.alpha} (exact McNemar on paired trials, else Fisher)")
    table = result["table"]
    print(format_comparison(table).to_markdown(index=False, disable_numparse=True))
    tasks = table[table["task_id"] != "all"]
    unpaired = int(tasks["unpaired"].fillna(0).sum()) if "unpaired" in tasks else 0
    if unpaired:
        print(f"{unpaired} episodes have no partner (same suite, task and trial) in the other "
              "run: where a task has pairs, its success, delta and test are over the pairs only")
    differences = result["differences"]
    moving = sum(d.moves_numbers is not False for d in differences)
    if differences:
        print(f"\n{len(differences)} differences between the manifests; {moving} can move the "
              f"numbers or cannot be checked:")
        print(format_differences(differences).to_markdown(index=False, disable_numparse=True))
    else:
        print("\nthe manifests agree on protocol, options, versions, revision and renderer")
    if args.output:
        result["table"].to_csv(args.output, index=False)
        print(f"written: {args.output}")
    return 0
