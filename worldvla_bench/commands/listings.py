"""`worldvla-bench suites` and `worldvla-bench policies`: what can be evaluated."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_suites_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("suites", help="list the suites")
    parser.set_defaults(func=run_suites)
    return parser


def add_policies_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("policies", help="list the built-in policies")
    parser.set_defaults(func=run_policies)
    return parser


def run_suites(args: argparse.Namespace) -> int:
    from worldvla_bench.tasks import available_suites, load_suite, unreadable_suite_files

    for name in available_suites():
        spec = load_suite(name)
        print(f"{name:32s} max_steps={spec.max_steps:<4d} trials={spec.trials_per_task:<3d} "
              f"{spec.description}")
    for message in unreadable_suite_files().values():
        print(f"worldvla-bench: warning: {message}", file=sys.stderr)
    return 0


def run_policies(args: argparse.Namespace) -> int:
    from worldvla_bench.policy import POLICIES

    for entry in POLICIES.entries():
        print(f"{entry.name:12s} {entry.target_text}")
    print("or any 'package.module:Class' subclassing worldvla_bench.policy.Policy")
    return 0
