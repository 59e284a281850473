"""`worldvla-bench serve-policy`: the command line over the policy servers.

    worldvla-bench serve-policy random --port 8000                       # openpi's protocol
    worldvla-bench serve-policy random --port 8000 --protocol vla-eval   # vla-eval's protocol
    python -m worldvla_bench.serving.serve_cli random --port 8000        # the same, as a module

`--protocol openpi` (the default) serves `PolicyServer` (`worldvla_bench.serving.server`);
`--protocol vla-eval` serves `VlaEvalPolicyServer` (`worldvla_bench.serving.vla_eval_server`),
which `vla-eval run` drives on its benchmarks. Both batch across connections, answer bad
requests with one line, and bind 127.0.0.1 unless `--host` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from typing import Any

from worldvla_bench.errors import BenchError
from worldvla_bench.serving.server import (
    DEFAULT_BATCH_TIMEOUT_MS,
    DEFAULT_MAX_BATCH,
    PolicyServer,
)

logger = logging.getLogger("worldvla_bench.serving")

WIRE_FORMATS = ("openpi", "vla-eval")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _server_class(wire_format: str) -> type[PolicyServer]:
    if wire_format == "vla-eval":
        from worldvla_bench.serving.vla_eval_server import VlaEvalPolicyServer

        return VlaEvalPolicyServer
    return PolicyServer


def cmd_serve_policy(args: argparse.Namespace) -> int:
    from worldvla_bench.policy import parse_key_values

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    kwargs = parse_key_values(args.policy_arg)
    server = _server_class(args.protocol)(
        args.name,
        kwargs,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
    )
    if not args.stop_grace >= 0:
        raise BenchError(f"--stop-grace must be >= 0 seconds, got {args.stop_grace}")
    server.stop_grace_s = float(args.stop_grace)
    if args.host not in _LOOPBACK:
        logger.warning(
            "binding %s: no authentication; expose it only to a trusted network", args.host
        )
    try:
        asyncio.run(_serve_and_announce(server))
    except KeyboardInterrupt:
        pass
    except OSError as error:  # the port is taken, or the host is not an address of this machine
        raise BenchError(
            f"cannot serve on {args.host}:{args.port}: {error.strerror or error}"
        ) from None
    if server.abandoned_call:
        # Python joins every executor thread at exit, the stuck call's too: leave without it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


async def _serve_and_announce(server: PolicyServer) -> None:
    """Serve in this thread; print the bound address once listening (for scripts and tests)."""
    install = threading.current_thread() is threading.main_thread()
    task = asyncio.create_task(server._main(install_signals=install))
    while not server._ready.is_set() and not task.done():
        await asyncio.sleep(0.02)
    if server._ready.is_set():
        print(f"serving {server.policy_name} on {server.url}", flush=True)
    await task


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `serve-policy NAME --port P --host H --protocol P --policy-arg k=v`."""
    sp = subparsers.add_parser(
        "serve-policy", help="serve a policy over websockets (openpi or vla-eval protocol, batched)"
    )
    sp.add_argument("name", help="policy name or module:Class")
    sp.add_argument(
        "--protocol",
        choices=WIRE_FORMATS,
        default="openpi",
        help="wire protocol: openpi's (default; our `remote` policy and openpi "
        "clients) or vla-eval's (`vla-eval run` drives it)",
    )
    sp.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it, unauthenticated)",
    )
    sp.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    sp.add_argument(
        "--policy-arg",
        action="append",
        metavar="KEY=VALUE",
        help="policy constructor argument (repeatable)",
    )
    sp.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help="most requests answered in one batch",
    )
    sp.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=DEFAULT_BATCH_TIMEOUT_MS,
        help="how long a request waits for the other sessions' requests",
    )
    sp.add_argument(
        "--stop-grace",
        type=float,
        default=PolicyServer.stop_grace_s,
        metavar="SECONDS",
        help="on Ctrl-C/SIGTERM, how long a running policy call may take before the server "
        "exits without it",
    )
    sp.set_defaults(func=cmd_serve_policy)
    return sp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldvla_bench.serving.serve_cli")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve-policy", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except BenchError as error:
        print(f"worldvla-bench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
