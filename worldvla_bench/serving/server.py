"""A policy server: any registered policy over openpi's websocket + msgpack protocol, batched.

    worldvla-bench serve-policy random --port 8000 --policy-arg chunk_size=5
    python -m worldvla_bench.serving.serve_cli random --port 8000    # the same

(the command line is `worldvla_bench.serving.serve_cli`; this module is the library).

Each connection is a session with its own policy state: a policy without `act_batch` gets its own
instance per connection (built on first use, closed when the connection ends), and `reset`
messages reset that instance only. A policy with `act_batch(observations)` is built once and
shared: it must be a pure function of its inputs (one batch entry per session); if its signature
also takes `contexts`, it receives each session's current `EpisodeContext` (or None) alongside.
An entry of its list may be an `EndEpisode` instead of a chunk (as `act` may raise one): the
client is told to end the episode (see `worldvla_bench.serving`).

Requests from all connections go through one queue: a batcher collects what is pending (waiting up
to `batch_timeout_ms` for the other connected sessions, at most `max_batch`) and hands the batch to
one worker thread, so the event loop keeps accepting and answering while the policy computes.
Policy construction, `reset`, `act`, `act_batch` and `close` all run in that one thread: a policy
never sees two threads. The server binds 127.0.0.1 unless told otherwise; bad requests get a
one-line text error and the connection stays open; tracebacks go to the server's log only.
See `worldvla_bench.serving` for the wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import inspect
import itertools
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy, make_policy
from worldvla_bench.serving import (
    END_EPISODE_KEY,
    RESET_KEY,
    WIRE_FORMAT,
    error_line,
    from_openpi,
    pack,
    unpack,
)

logger = logging.getLogger("worldvla_bench.serving")

DEFAULT_MAX_BATCH = 16
DEFAULT_BATCH_TIMEOUT_MS = 5.0
DEFAULT_MAX_MESSAGE_MB = 64


class RequestError(BenchError):
    """A request the server cannot answer (bad message, or the policy failed on it)."""


@dataclass
class _Session:
    id: int
    peer: str
    policy: Policy | None = None
    context: EpisodeContext | None = None
    closed: bool = False


@dataclass
class _Request:
    session: _Session
    observation: dict[str, Any]
    future: asyncio.Future


def _is_batched(policy: Policy) -> bool:
    return callable(getattr(policy, "act_batch", None))


def _is_stateful(policy: Policy) -> bool:
    """Whether a session's answers depend on its history (clients then replay it on reconnect)."""
    declared = getattr(policy, "stateful", None)
    if declared is not None:
        return bool(declared)
    if _is_batched(policy):
        return False
    return type(policy).reset is not Policy.reset


def _takes_contexts(policy: Policy) -> bool:
    try:
        return "contexts" in inspect.signature(policy.act_batch).parameters
    except (TypeError, ValueError):
        return False


def _as_actions(output: Any) -> np.ndarray:
    """A policy's output as a numeric array (the client checks shape and NaN, as locally)."""
    try:
        array = np.asarray(output)
    except Exception as error:
        raise RequestError(f"policy returned a non-numeric action ({error})") from None
    if array.dtype.kind not in "biuf":
        raise RequestError(f"policy returned a non-numeric action (dtype {array.dtype})")
    return array


def _parse_context(value: Any) -> EpisodeContext:
    if not isinstance(value, dict):
        raise RequestError(f"{RESET_KEY} must be a map with the episode context")
    names = [f.name for f in fields(EpisodeContext)]
    missing = [name for name in names if name not in value]
    if missing:
        raise RequestError(f"{RESET_KEY} context misses {missing}")
    try:
        return EpisodeContext(
            suite=str(value["suite"]),
            task_id=int(value["task_id"]),
            task_name=str(value["task_name"]),
            instruction=str(value["instruction"]),
            trial=int(value["trial"]),
            seed=int(value["seed"]),
            max_steps=int(value["max_steps"]),
        )
    except (TypeError, ValueError) as error:
        raise RequestError(f"bad {RESET_KEY} context: {error}") from None


class PolicyServer:
    """Serves one policy (a registered name or 'module:Class', or a factory) over websockets.

    `serve_forever()` blocks; `start()` serves from a background thread and returns once the
    socket is bound (`port` is then the bound port, useful with port=0); `stop()` ends it.
    `stats()` counts requests, batches and their sizes.
    """

    #: Seconds between keepalive pings (websockets' default); None sends none.
    ping_interval_s: float | None = 20.0
    #: Seconds a stop waits for a running policy call (and the policies' close) before it leaves
    #: them behind: a hung model must not keep the server from stopping.
    stop_grace_s: float = 10.0

    def __init__(
        self,
        policy: str | Callable[[], Policy],
        policy_kwargs: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_batch: int = DEFAULT_MAX_BATCH,
        batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
        max_message_mb: float = DEFAULT_MAX_MESSAGE_MB,
    ) -> None:
        if int(max_batch) < 1:
            raise BenchError(f"max_batch must be >= 1, got {max_batch}")
        if float(batch_timeout_ms) < 0:
            raise BenchError(f"batch_timeout_ms must be >= 0, got {batch_timeout_ms}")
        self.policy_name = (
            policy
            if isinstance(policy, str)
            else getattr(policy, "__name__", type(policy).__name__)
        )
        self.policy_kwargs = dict(policy_kwargs or {})
        if isinstance(policy, str):
            self._factory: Callable[[], Policy] = lambda: make_policy(policy, **self.policy_kwargs)
        else:
            self._factory = lambda: policy(**self.policy_kwargs)
        self.host = host
        self.port = int(port)
        self.max_batch = int(max_batch)
        self.batch_timeout = float(batch_timeout_ms) / 1000.0
        self.max_message_bytes = int(float(max_message_mb) * 2**20)
        self.metadata: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._connections: set[Any] = set()
        self._sessions: dict[int, _Session] = {}
        self._pending: list[_Request] = []
        self._in_flight: list[_Request] = []
        self._stats: Counter = Counter()
        self._batch_sizes: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None
        self._shared: Policy | None = None  # the instance of a batched policy
        self._spare: Policy | None = None  # the instance built at start, for the first session
        self._batched = False
        self._with_contexts = False
        #: True once a stop left a policy call still running (see `stop_grace_s`)
        self.abandoned_call = False

    # -- life cycle ------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM)."""
        in_main_thread = threading.current_thread() is threading.main_thread()
        asyncio.run(self._main(install_signals=in_main_thread))

    def start(self, timeout: float = 120.0) -> PolicyServer:
        """Serve from a daemon thread; returns once listening (raises if the start failed)."""
        self._thread = threading.Thread(target=self._thread_main, name="policy-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise BenchError(f"policy server did not start within {timeout:.0f} s")
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving: close every connection, then every policy instance."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> PolicyServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        """Counts so far: requests, resets, errors, batches, batch sizes, sessions."""
        return {
            **dict(self._stats),
            "batch_sizes": dict(sorted(self._batch_sizes.items())),
            "max_batch_size": max(self._batch_sizes, default=0),
            "sessions_active": len(self._connections),
        }

    def close_connections(self) -> None:
        """Drop every client connection (clients reconnect and restore their session)."""
        loop = self._loop
        if loop is None:
            return
        for connection in list(self._connections):
            asyncio.run_coroutine_threadsafe(connection.close(1012, "server restart"), loop)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main(install_signals=False))
        except BaseException as error:
            self._startup_error = error
            self._ready.set()

    # -- the event loop --------------------------------------------------------------------
    async def _main(self, install_signals: bool) -> None:
        from websockets.asyncio.server import serve

        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_event = asyncio.Event()
        self._wakeup = asyncio.Event()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self._executor = executor
        try:
            await loop.run_in_executor(executor, self._build_first)
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, self._stop_event.set)
            async with serve(
                self._handler,
                self.host,
                self.port,
                compression=None,
                max_size=self.max_message_bytes,
                ping_interval=self.ping_interval_s,
                process_request=self._process_request,
            ) as server:
                self.port = int(next(iter(server.sockets)).getsockname()[1])
                batcher = asyncio.create_task(self._batcher())
                logger.info("serving %s on %s", self.policy_name, self.url)
                self._ready.set()
                try:
                    await self._stop_event.wait()
                finally:
                    batcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await batcher
                    for request in [*self._pending, *self._in_flight]:
                        if not request.future.done():
                            request.future.set_exception(RequestError("server shutting down"))
                    self._pending, self._in_flight = [], []
                    for connection in list(self._connections):
                        await connection.close(1001, "server shutting down")
        finally:
            # the policy thread may be stuck in a call that never returns: wait a grace period
            close = loop.run_in_executor(executor, self._close_all)
            done, _ = await asyncio.wait([close], timeout=self.stop_grace_s)
            if not done:
                self.abandoned_call = True
                logger.warning("a policy call is still running %.0f s after the stop: left "
                               "behind", self.stop_grace_s)
            executor.shutdown(wait=bool(done), cancel_futures=True)

    def _process_request(self, connection: Any, request: Any) -> Any:
        """Answer openpi's health check (GET /healthz); everything else opens a websocket."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async def _handler(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = connection.remote_address
        session = _Session(id=next(self._ids), peer=f"{peer[0]}:{peer[1]}" if peer else "?")
        self._connections.add(connection)
        self._sessions[session.id] = session
        self._stats["sessions_opened"] += 1
        logger.info("session %d opened by %s", session.id, session.peer)
        try:
            await self._serve_connection(connection, session)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(connection)
            session.closed = True
            logger.info("session %d closed", session.id)
            with contextlib.suppress(RuntimeError):  # the executor is already shut down
                self._loop.run_in_executor(self._executor, self._close_session, session)

    async def _serve_connection(self, connection: Any, session: _Session) -> None:
        """openpi's protocol: our metadata first, then one reply per request."""
        await connection.send(pack({**self.metadata, "session": session.id}))
        async for message in connection:
            reply = await self._answer(session, message)
            await connection.send(reply)

    async def _answer(self, session: _Session, message: Any) -> bytes | str:
        """Bytes (msgpack) for a good request; a one-line text frame for a bad one."""
        try:
            if isinstance(message, str):
                raise RequestError("text frames are not requests: send msgpack in binary frames")
            try:
                request = unpack(message)
            except Exception as error:
                raise RequestError(f"cannot decode the request as msgpack ({error})") from None
            if not isinstance(request, dict):
                raise RequestError(
                    f"a request must be a map (an observation, or {{{RESET_KEY!r}: context}}), "
                    f"got {type(request).__name__}"
                )
            if RESET_KEY in request:
                await self._start_episode(session, _parse_context(request[RESET_KEY]))
                return pack({"reset": True, "session": session.id})
            actions, timing = await self._submit(session, from_openpi(request))
            return pack({"actions": actions, "server_timing": timing})
        except EndEpisode as end:
            return pack({"actions": end.actions, END_EPISODE_KEY: end.reason})
        except asyncio.CancelledError:
            raise
        except Exception as error:
            return self._error_text(session, error)

    def _error_text(self, session: _Session, error: Exception) -> str:
        """The one line that reports `error` to the client (a traceback only to the log)."""
        self._stats["errors"] += 1
        if isinstance(error, RequestError):
            return f"error: {error}"[:500]
        if not isinstance(error, BenchError):
            logger.warning("session %d: %s", session.id, error_line(error), exc_info=error)
        return error_line(error)

    async def _start_episode(self, session: _Session, context: EpisodeContext) -> None:
        """Reset `session`'s policy for a new episode (in the policy thread)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._reset, session, context)
        self._stats["resets"] += 1

    async def _submit(
        self, session: _Session, observation: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """One observation through the batcher: the chunk and the server's timing (ms)."""
        started = time.perf_counter()
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(session, observation, future))
        self._wakeup.set()
        actions, timing = await future
        self._stats["requests"] += 1
        timing["total_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        return actions, timing

    async def _batcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                continue
            # a batched policy waits (bounded) for the other connected sessions to share the
            # batch; one that acts per session gains nothing from waiting and takes what is there
            deadline = loop.time() + (self.batch_timeout if self._batched else 0.0)
            while len(self._pending) < min(self.max_batch, len(self._connections)):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
                self._wakeup.clear()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if self._pending:
                self._wakeup.set()
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            self._stats["batches"] += 1
            self._batch_sizes[len(live)] += 1
            self._in_flight = live
            results = await loop.run_in_executor(self._executor, self._infer, live)
            self._in_flight = []
            for request, result in zip(live, results, strict=True):
                if request.future.done():
                    continue
                if isinstance(result, BaseException):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(result)

    # -- the policy thread -----------------------------------------------------------------
    def _build_first(self) -> None:
        try:
            policy = self._factory()
        except BenchError:
            raise
        except Exception as error:
            raise BenchError(
                f"cannot build policy {self.policy_name!r}: {error_line(error)[len('error: ') :]}"
            ) from None
        self._batched = _is_batched(policy)
        self._with_contexts = self._batched and _takes_contexts(policy)
        if self._batched:
            self._shared = policy
        else:
            self._spare = policy
        cameras = getattr(policy, "cameras", None)
        self.metadata = {
            "server": "worldvla_bench",
            "protocol": WIRE_FORMAT,
            "extensions": ["reset", "batch", "healthz"],
            "policy": self.policy_name,
            "policy_kwargs": self.policy_kwargs,
            **({"checkpoint": policy.served_model()}  # what a local run records per episode
               if callable(getattr(policy, "served_model", None)) else {}),
            "cameras": None if cameras is None else list(cameras),
            "observation_profile": getattr(policy, "observation_profile", None),
            "image_size": getattr(policy, "image_size", None),
            "requires_privileged_state": bool(getattr(policy, "requires_privileged_state", False)),
            "stateful": _is_stateful(policy),
            "batched": self._batched,
            "max_batch": self.max_batch,
            "action_dim": 7,
        }

    def _session_policy(self, session: _Session) -> Policy:
        if self._batched:
            return self._shared  # type: ignore[return-value]
        if session.policy is None:
            if self._spare is not None:
                session.policy, self._spare = self._spare, None
            else:
                session.policy = self._factory()
        return session.policy

    def _reset(self, session: _Session, context: EpisodeContext) -> None:
        session.context = context
        if not self._batched and not session.closed:
            self._session_policy(session).reset(context)

    def _infer(self, batch: list[_Request]) -> list[Any]:
        started = time.perf_counter()
        results: list[Any] = []
        if self._batched:
            observations = [r.observation for r in batch]
            try:
                if self._with_contexts:
                    contexts = [r.session.context for r in batch]
                    outputs = self._shared.act_batch(observations, contexts=contexts)
                else:
                    outputs = self._shared.act_batch(observations)
                outputs = list(outputs)
                if len(outputs) != len(batch):
                    raise RequestError(
                        f"act_batch returned {len(outputs)} chunks for {len(batch)} observations"
                    )
                results = [out if isinstance(out, EndEpisode) else self._checked(out)
                           for out in outputs]
            except Exception as error:
                results = [self._failure(error)] * len(batch)
        else:
            for request in batch:
                if request.session.closed:
                    results.append(RequestError("session closed"))
                    continue
                try:
                    output = self._session_policy(request.session).act(request.observation)
                    results.append(self._checked(output))
                except EndEpisode as end:
                    results.append(end)
                except Exception as error:
                    results.append(self._failure(error))
        infer_ms = round((time.perf_counter() - started) * 1000.0, 3)
        timing = {"infer_ms": infer_ms, "batch_size": len(batch)}
        return [r if isinstance(r, BaseException) else (r, dict(timing)) for r in results]

    def _checked(self, output: Any) -> np.ndarray:
        try:
            return _as_actions(output)
        except RequestError as error:
            return self._failure(error)  # type: ignore[return-value]

    def _failure(self, error: BaseException) -> BaseException:
        if not isinstance(error, BenchError):
            logger.warning("policy failed: %s", error_line(error), exc_info=error)
        if isinstance(error, BenchError) and not isinstance(error, RequestError):
            return RequestError(error_line(error)[len("error: ") :])
        return (
            error
            if isinstance(error, RequestError)
            else RequestError(error_line(error)[len("error: ") :])
        )

    def _close_session(self, session: _Session) -> None:
        self._sessions.pop(session.id, None)
        policy, session.policy = session.policy, None
        if policy is not None:
            with contextlib.suppress(Exception):
                policy.close()

    def _close_all(self) -> None:
        for session in list(self._sessions.values()):
            self._close_session(session)
        for policy in (self._shared, self._spare):
            if policy is not None:
                with contextlib.suppress(Exception):
                    policy.close()
        self._shared = self._spare = None
