"""One writer per run directory: an exclusive lock held for as long as a run appends to it (and
per training directory, for as long as a training writes its checkpoints).

The lock is `fcntl.flock` on `<run>/.lock`, so the kernel releases it when its holder exits in any
way (SIGKILL and power loss included): a stale lock from a dead process is never in the way, and
the next run simply takes it. The file holds the holder's pid, host and start time, for the
message a second writer gets. Reading a run (report, compare) takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from worldvla_bench.errors import RunDirectoryError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, what: str = "run directory", user: str = "run",
                 other: str = "another RUN name") -> Iterator[None]:
    """Hold the directory's lock for the block; `RunDirectoryError` (one line naming the holder)
    if another process holds it. `what`, `user` and `other` word that line: 'WHAT DIR is in use
    by another USER (holder); wait for it to end, or choose OTHER'."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirectoryError(f"cannot lock {what} {run_dir}: "
                                f"{error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"{what} {run_dir} is in use by another {user} ({_holder(fd)}); wait for it "
                f"to end, or choose {other}"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """'pid P on HOST since T', from the lock file ('holder unknown' if unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
