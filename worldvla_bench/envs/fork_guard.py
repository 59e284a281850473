"""A clear error instead of a silent hang: a process forked from one that already rendered.

MuJoCo's EGL (and OSMesa) contexts do not survive `fork`: a child forked after its parent built
a LIBERO simulator hangs forever, with no message, the first time it renders (measured with
`gymnasium.make_vec(..., vectorization_mode="async")`, whose default start method on Linux is
fork; DESIGN 6). The env notes when its process first builds a renderer; a process forked after
that refuses to build one and says how to start it instead.
"""

from __future__ import annotations

import os

from worldvla_bench.errors import RenderingUnavailableError

_rendering_pid: int | None = None  # the process that built a renderer (inherited across fork)

FORK_MESSAGE = (
    "this process was forked from process {parent} after that one had built a LIBERO renderer; "
    "EGL/OSMesa contexts do not survive fork and rendering would hang. Start it with the spawn "
    "method instead: gymnasium.make_vec(..., vectorization_mode='async', "
    "vector_kwargs={{'context': 'spawn'}}), or multiprocessing.get_context('spawn')"
)


def note_renderer_built() -> None:
    """Record that this process now holds a GL context (call after building a simulator)."""
    global _rendering_pid
    if _rendering_pid is None:
        _rendering_pid = os.getpid()


def check_not_forked_after_rendering() -> None:
    """Raise `RenderingUnavailableError` in a child forked from a process that had rendered."""
    if _rendering_pid is not None and _rendering_pid != os.getpid():
        raise RenderingUnavailableError(FORK_MESSAGE.format(parent=_rendering_pid))
