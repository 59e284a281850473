"""gymnasium's async vector env forks by default: after the parent rendered, that used to hang
forever with no message (EGL does not survive fork). Now the child refuses with one line that
says to use spawn, and spawn works."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, gymnasium
import worldvla_bench.envs
kwargs = dict(suite="libero_spatial", task_id=0, image_size=64, max_steps=3)
env = gymnasium.make("worldvla_bench/LIBERO-v0", **kwargs)
env.reset(seed=0, options={"init_state": 0})
vector_kwargs = {"context": sys.argv[1]} if sys.argv[1] != "default" else {}
vec = gymnasium.make_vec("worldvla_bench/LIBERO-v0", num_envs=1, vectorization_mode="async",
                         vector_kwargs=vector_kwargs, **kwargs)
try:
    obs, _ = vec.reset(seed=0, options={"init_state": 0})
    print("RESET", obs["agentview_image"].shape)
except Exception as error:
    print("ERROR", type(error).__name__, error)
vec.close()
env.close()
"""


def _run(context: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, context], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_fork_after_rendering_fails_with_one_line_instead_of_hanging():
    out = _run("default")
    assert "ERROR RenderingUnavailableError" in out and "forked from process" in out
    assert "vector_kwargs={'context': 'spawn'}" in out


def test_spawned_vector_envs_render_after_the_parent_did():
    assert "RESET (1, 64, 64, 3)" in _run("spawn")
