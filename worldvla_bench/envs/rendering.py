"""Headless OpenGL set-up for MuJoCo, and a clear error when the renderer cannot start."""

from __future__ import annotations

import os

from worldvla_bench.errors import RenderingUnavailableError

VALID_BACKENDS = ("egl", "osmesa", "glfw")
DEBIAN_PACKAGES = "libegl1 libgl1-mesa-dri libosmesa6"


def configure_gl(backend: str | None = None) -> str:
    """Select the MuJoCo GL backend (default `egl`) before mujoco/robosuite are imported.

    Honours an existing `MUJOCO_GL`; sets `PYOPENGL_PLATFORM` to match. Returns the backend.
    """
    chosen = (backend or os.environ.get("MUJOCO_GL") or "egl").lower()
    if chosen not in VALID_BACKENDS:
        raise RenderingUnavailableError(
            f"unknown MUJOCO_GL backend {chosen!r}; valid: {', '.join(VALID_BACKENDS)}"
        )
    os.environ["MUJOCO_GL"] = chosen
    if chosen in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    _preload_triton()
    return chosen


def _preload_triton() -> None:
    """Load triton's LLVM before Mesa's: importing triton (torchvision does, through
    torch._dynamo) after an EGL/OSMesa context exists segfaults, as both carry LLVM."""
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        try:
            import triton  # noqa: F401
        except Exception:  # a broken triton must not stop the simulator
            pass


def rendering_error(backend: str, cause: BaseException) -> RenderingUnavailableError:
    """A one-line error that says which packages to install or which backend to try."""
    other = "osmesa" if backend == "egl" else "egl"
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:200]
    return RenderingUnavailableError(
        f"MuJoCo renderer {backend!r} could not start ({type(cause).__name__}: {first_line}). "
        f"Install the Debian packages: apt-get install -y {DEBIAN_PACKAGES}; "
        f"or try MUJOCO_GL={other}"
    )


def looks_like_gl_failure(error: BaseException) -> bool:
    """Whether an exception raised while building a LIBERO env came from OpenGL/EGL/OSMesa."""
    text = f"{type(error).__name__} {error}".lower()
    return any(k in text for k in ("egl", "osmesa", "opengl", "glfw", "gl context", "libgl"))


def check_renderer() -> str:
    """Open and free a tiny offscreen GL context with the chosen backend, or raise a clear error.

    Run before workers start, so a machine without working OpenGL fails once, up front.
    """
    backend = configure_gl()
    try:
        import mujoco

        context = mujoco.GLContext(32, 32)
        context.make_current()
        context.free()
    except Exception as error:  # ImportError, RuntimeError, EGL/OSMesa errors alike
        raise rendering_error(backend, error) from error
    return backend
