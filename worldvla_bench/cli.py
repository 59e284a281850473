"""`worldvla-bench`: the dispatcher. Every subcommand, the core's (`worldvla_bench.commands`)
and those installed packages add (entry points of group `worldvla_bench.commands`), is a
registered `Command`; only the module of the command being run is imported."""

from __future__ import annotations

import argparse
import os
import sys

from worldvla_bench.commands import BUILTIN, COMMANDS
from worldvla_bench.errors import BenchError
from worldvla_bench.registry import import_target


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser: the full parser of the command `argv` names (default: sys.argv's), a help
    line for each other one. The core's commands come first, then the installed ones by name."""
    parser = argparse.ArgumentParser(
        prog="worldvla-bench", description="Evaluate robot policies and world models on LIBERO."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = (argv if argv is not None else sys.argv[1:])[:1]
    names = [n for n in BUILTIN] + [n for n in COMMANDS.names() if n not in BUILTIN]
    for name in names:
        command = COMMANDS.load(name)
        if name in wanted:
            import_target(command.add_parser)(sub)
        else:
            sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as error:
        print(f"worldvla-bench: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print("worldvla-bench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
