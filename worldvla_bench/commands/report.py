"""`worldvla-bench report`: success rates of runs (report.md, report.csv, results.json), and
their static HTML page; or the page of a wm-rank output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worldvla_bench.commands.common import existing_run_path, print_report, run_path
from worldvla_bench.errors import BenchError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", help="success rates of a run (writes report.md, report.csv and results.json)")
    parser.add_argument("run", nargs="+", help="run name under results/, or a path (several: "
                        "each gets its report; --html compares each with the first), or one "
                        "wm-rank output directory (with --html)")
    parser.add_argument("--html", default=None, metavar="DIR",
                        help="also write a static page (DIR/index.html, videos copied beside it)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.html_report import is_rank_output

    ranks = [p for p in (run_path(args.run[0]), Path(args.run[0])) if is_rank_output(p)]
    if len(args.run) == 1 and ranks:  # a wm-rank output (under results/ or here): its page
        if not args.html:
            raise BenchError(f"{ranks[0]} is a wm-rank output (see its ranking.md); give "
                             "--html DIR for its page")
        from worldvla_bench.html_report import write_rank_html

        print(f"written: {write_rank_html(ranks[0], Path(args.html))}")
        return 0
    run_dirs = [existing_run_path(name) for name in args.run]
    status = max(print_report(run_dir) for run_dir in run_dirs)
    if args.html:
        from worldvla_bench.html_report import write_html_report

        print(f"written: {write_html_report(run_dirs, Path(args.html))} (open it in a browser)")
    return status
