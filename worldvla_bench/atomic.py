"""Files written whole or not at all: through a temporary sibling, fsynced, then renamed, so that a
reader (or a resumed run after a crash) never sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends, removed
    if it raises. `suffix` keeps the extension writers infer the format from (a video's, an
    array archive's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a finished file reads like any other
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
