"""A renderer that cannot start is one clear line naming the Debian packages, before any work."""

import os
import subprocess
import sys

import pytest

from worldvla_bench.envs.rendering import check_renderer, configure_gl
from worldvla_bench.errors import RenderingUnavailableError


def _eval(tmp_path, **env):
    command = [sys.executable, "-m", "worldvla_bench.cli", "eval", "--suite", "libero_goal",
               "--tasks", "0", "--trials", "1", "--max-steps", "2", "--image-size", "32",
               "--run", str(tmp_path / "run"), "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_broken_egl_stops_the_run_with_install_advice(tmp_path):
    # libglvnd finds no EGL vendor library: the same failure as a machine without Mesa's EGL
    result = _eval(tmp_path, MUJOCO_GL="egl", __EGL_VENDOR_LIBRARY_FILENAMES="/nonexistent.json")
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    assert "apt-get install -y libegl1 libgl1-mesa-dri libosmesa6" in error_lines[0]
    assert "MUJOCO_GL=osmesa" in error_lines[0]
    assert not (tmp_path / "run").exists()


def test_unknown_backend_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "vulkan")
    with pytest.raises(RenderingUnavailableError, match="valid: egl, osmesa, glfw"):
        configure_gl()


def test_the_default_backend_renders():
    assert check_renderer() in ("egl", "osmesa")
