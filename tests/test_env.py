"""The Gymnasium env on real LIBERO, at 64 px and a few steps."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import worldvla_bench.envs  # noqa: F401  (registers the env id)
from worldvla_bench.envs import ENV_ID, LiberoEnv
from worldvla_bench.envs.libero_env import quat_to_axis_angle_robosuite
from worldvla_bench.errors import UnknownChoiceError


@pytest.fixture(scope="module")
def env():
    env = LiberoEnv("libero_spatial", 0, image_size=64, max_steps=5)
    yield env
    env.close()


def test_reset_and_step_follow_the_declared_spaces(env):
    obs, info = env.reset(seed=0, options={"init_state": 2})
    assert env.observation_space.contains(obs)
    assert info["init_state"] == 2 and info["wait_steps"] == 10
    assert obs["agentview_image"].shape == (64, 64, 3)
    assert obs["agentview_image"].dtype == np.uint8
    assert obs["instruction"].startswith("pick up the black bowl")
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert info["success"] is False and reward == 0.0 and not terminated and not truncated


def test_images_are_upright_rotations_of_the_raw_render(env):
    env.reset(seed=0, options={"init_state": 0})
    env.step(np.zeros(7))
    raw = env.robosuite_env._get_observations(force_update=True)
    obs = env._convert(raw)
    for camera in env.cameras:
        np.testing.assert_array_equal(obs[f"{camera}_image"], raw[f"{camera}_image"][::-1, ::-1])
    # upright: the table (bright, lower half) is below the dark background of the room
    image = obs["agentview_image"].astype(float)
    assert image[48:].mean() > image[:16].mean()


def test_state_is_eef_pos_axis_angle_and_gripper(env):
    env.reset(seed=0, options={"init_state": 0})
    raw = env.robosuite_env._get_observations(force_update=True)
    obs = env._convert(raw)
    np.testing.assert_allclose(obs["state"][:3], raw["robot0_eef_pos"])
    np.testing.assert_allclose(obs["state"][6:], raw["robot0_gripper_qpos"])
    from robosuite.utils.transform_utils import quat2axisangle

    np.testing.assert_allclose(obs["state"][3:6], quat2axisangle(raw["robot0_eef_quat"]))


def test_quat_to_axis_angle_matches_robosuite():
    from robosuite.utils.transform_utils import quat2axisangle

    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(quat_to_axis_angle_robosuite(q), quat2axisangle(q.copy()),
                                   atol=1e-12)
    assert np.all(quat_to_axis_angle_robosuite(np.array([0, 0, 0, 1.0])) == 0)


def test_truncates_at_the_step_limit(env):
    env.reset(seed=0, options={"init_state": 0})
    flags = [env.step(np.zeros(7))[3] for _ in range(5)]
    assert flags == [False, False, False, False, True]


def test_bad_init_state_and_options_are_named(env):
    with pytest.raises(UnknownChoiceError, match=r"0\.\.49"):
        env.reset(options={"init_state": 50})
    with pytest.raises(UnknownChoiceError, match="bogus"):
        env.reset(options={"bogus": 1})


def test_gymnasium_make_builds_the_env():
    env = gymnasium.make(ENV_ID, suite="libero_goal", task_id=1, image_size=32, max_steps=3)
    obs, _ = env.reset(seed=1)
    assert obs["robot0_eye_in_hand_image"].shape == (32, 32, 3)
    env.close()


_FRAME_SCRIPT = """
import json, sys, hashlib, numpy as np
from worldvla_bench.envs import LiberoEnv
env = LiberoEnv("libero_spatial", 0, image_size=64)
obs, _ = env.reset(seed=3, options={"init_state": 1})
actions = np.random.default_rng(0).uniform(-1, 1, size=(4, 7))
for a in actions:
    obs, *_ = env.step(a)
digest = hashlib.sha256(obs["agentview_image"].tobytes() + env.get_sim_state().tobytes())
print(json.dumps({"digest": digest.hexdigest()}))
env.close()
"""


def test_seeded_episodes_render_identical_frames_in_two_processes():
    procs = [
        subprocess.Popen([sys.executable, "-c", _FRAME_SCRIPT], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    digests = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1])["digest"]
               for p in procs]
    assert digests[0] == digests[1]


def test_async_vector_env_runs_two_libero_envs():
    def make(task_id):
        return lambda: LiberoEnv("libero_object", task_id, image_size=32, max_steps=3)

    vec = gymnasium.vector.AsyncVectorEnv(
        [make(0), make(1)], context="spawn", shared_memory=False
    )
    try:
        obs, _ = vec.reset(seed=[0, 1])
        assert obs["agentview_image"].shape == (2, 32, 32, 3)
        obs, _, _, truncated, _ = vec.step(np.zeros((2, 7), dtype=np.float32))
        assert obs["state"].shape == (2, 8) and not truncated.any()
    finally:
        vec.close()


def test_render_on_demand_gives_the_same_pixels_and_physics():
    actions = np.random.default_rng(0).uniform(-1, 1, size=(8, 7))

    def rollout(on_demand: bool):
        env = LiberoEnv("libero_spatial", 0, image_size=48)
        if on_demand:
            env.set_render_cameras([])
        obs, info = env.reset(seed=3, options={"init_state": 1})
        frames, rendered = [], []
        for i, action in enumerate(actions):
            if on_demand:
                env.set_render_cameras(["agentview"] if i % 4 == 3 else [])
            obs, *_, info = env.step(action)
            rendered.append(info["rendered"])
            if i % 4 == 3:
                frames.append(obs["agentview_image"].copy())
        state = env.get_sim_state()
        env.close()
        return frames, state, rendered

    frames_all, state_all, rendered_all = rollout(False)
    frames_gated, state_gated, rendered_gated = rollout(True)
    assert rendered_all[0] == ["agentview", "robot0_eye_in_hand"]
    assert rendered_gated == [[], [], [], ["agentview"]] * 2
    for a, b in zip(frames_all, frames_gated, strict=True):
        assert a.std() > 0  # a real picture, not the black placeholder
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state_all, state_gated)


def test_fast_render_is_opt_in_and_changes_pixels_only_slightly():
    actions = np.random.default_rng(1).uniform(-1, 1, size=(3, 7))
    frames, states = {}, {}
    for fast in (False, True):
        env = LiberoEnv("libero_spatial", 0, image_size=48, fast_render=fast)
        env.reset(seed=2, options={"init_state": 0})
        for action in actions:
            obs, *_ = env.step(action)
        frames[fast], states[fast] = obs["agentview_image"].astype(float), env.get_sim_state()
        env.close()
    assert LiberoEnv("libero_spatial", 0).fast_render is False
    difference = np.abs(frames[True] - frames[False]).mean()
    assert 0 < difference < 10  # measured ~3/255: no MSAA, no reflections
    np.testing.assert_array_equal(states[True], states[False])  # physics untouched


@pytest.mark.parametrize("suite,task_id", [("libero_spatial", 0), ("libero_goal", 0),
                                           ("libero_long", 9)])
def test_reset_in_place_gives_the_rebuilt_states_and_pixels(suite, task_id):
    """libero_long 9 opens the microwave in its initial state: before we registered LIBERO's
    property samplers once, each rebuild moved the microwave (episodes 0 and 3 differed)."""
    actions = np.random.default_rng(2).uniform(-1, 1, size=(6, 7))
    results = {}
    for fast in (False, True):
        env = LiberoEnv(suite, task_id, image_size=32, hard_reset=not fast, wait_steps=2)
        episodes = []
        for init_state in (0, 1, 2, 0):  # episodes after the first are where state carries over
            env.reset(seed=4, options={"init_state": init_state})
            for action in actions:
                obs, *_ = env.step(action)
            episodes.append((env.get_sim_state(), obs["agentview_image"]))
        env.close()
        results[fast] = episodes
    assert LiberoEnv(suite, task_id).hard_reset is False  # the default: reset in place
    for (state_h, image_h), (state_s, image_s) in zip(results[False], results[True], strict=True):
        np.testing.assert_array_equal(state_h, state_s)
        np.testing.assert_array_equal(image_h, image_s)
    for episodes in results.values():  # same seed and init state: the same scene, every time
        np.testing.assert_array_equal(episodes[0][1], episodes[3][1])
