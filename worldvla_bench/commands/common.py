"""What several commands share: where a run name points, and printing a run's report."""

from __future__ import annotations

import sys
from pathlib import Path

from worldvla_bench.errors import BenchError
from worldvla_bench.protocol import Protocol
from worldvla_bench.run_dir import EPISODES_FILE, RunDir

RESULTS_ROOT = Path("results")


def run_path(name: str) -> Path:
    """A run name ('myrun', 'examples/x') lives under results/; an absolute path, or one that
    starts with 'results/' or './', is taken as is."""
    path = Path(name)
    if path.is_absolute() or name.startswith(("./", "results/")):
        return path
    return RESULTS_ROOT / path


def existing_run_path(name: str) -> Path:
    """A run to read: under results/ as `run_path` says or, if no run is there, the directory
    of that name relative to the working directory. Neither: one error naming both places."""
    resolved = run_path(name)
    here = Path(name)
    if RunDir(resolved).is_run() or resolved == here:
        return resolved
    if RunDir(here).is_run():
        return here
    raise BenchError(f"no run named {name!r}: neither {resolved} nor ./{here} holds "
                     f"{EPISODES_FILE}")


def print_report(run_dir: Path) -> int:
    """Write and print the report of a run; 1 if its files could not be written, else 0."""
    from worldvla_bench.report import write_report

    result = write_report(run_dir)
    print(result["markdown"])
    if result["write_error"]:
        print(f"worldvla-bench: error: {result['write_error']}", file=sys.stderr)
        return 1
    print(f"written: {run_dir / 'report.md'}, {run_dir / 'report.csv'}, "
          f"{run_dir / 'results.json'}")
    return 0


def default_run_name(protocol: Protocol) -> str:
    """'<suite>_<policy>', the policy's ':' and '.' as '_' (a run name without --run)."""
    return f"{protocol.suite}_{protocol.policy.replace(':', '_').replace('.', '_')}"
