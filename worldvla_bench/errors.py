"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""

import difflib
from typing import Self


class BenchError(Exception):
    """Base class for errors caused by user input or the machine, not by a bug."""


class UnknownChoiceError(BenchError, ValueError):
    """A name (suite, task, policy, ...) that is not among the valid choices; `close` (default:
    the choices that `difflib` finds close to `value`) is offered as "did you mean"."""

    def __init__(self, kind: str, value: object, choices: list[str] | str,
                 close: list[str] | None = None) -> None:
        listed = choices if isinstance(choices, str) else ", ".join(map(str, choices))
        if close is None and not isinstance(choices, str):
            close = difflib.get_close_matches(str(value), list(map(str, choices)), n=3,
                                              cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        super().__init__(f"unknown {kind} {value!r}; {hint}valid: {listed}")


class RenderingUnavailableError(BenchError, RuntimeError):
    """MuJoCo's offscreen renderer could not start."""


class PolicyOutputError(BenchError, ValueError):
    """A policy returned an action chunk of the wrong shape or with non-finite values."""


class RunDirectoryError(BenchError, OSError):
    """The results directory cannot be used (not writable, or holds a different run)."""


class PolicyBuildError(BenchError, RuntimeError):
    """A worker could not build the policy (its constructor raised: bad argument values, an
    unreachable server, missing weights): the run stops, every episode would fail the same."""


class ServerUnreachableError(BenchError, RuntimeError):
    """A policy server that stayed unreachable through its client's retries: every following
    episode would fail the same, so the run stops (the episode is not recorded; the same command
    resumes). A client raises it with one line naming the server (`after`)."""

    @classmethod
    def after(cls, address: str, attempts: int, last: BaseException | None) -> Self:
        """'policy server at HOST:PORT unreachable: <last error> (N attempts)'."""
        return cls(f"policy server at {address} unreachable: {type(last).__name__}: {last} "
                   f"({attempts} attempts)")
