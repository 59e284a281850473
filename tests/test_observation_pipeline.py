"""The engine applies a policy's observation profile: the frames it renders and hands over, the
images' preparation, the gripper mapping. Checked on a real LIBERO episode against the frames
the env rendered at every step (`save_frames`), and on the pipeline alone with known frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.observation_profiles import ObservationProfile, register_profile
from worldvla_bench.policy import EpisodeContext, Policy

register_profile(ObservationProfile(
    name="test_history3_invert", description="three frames of env-step history, OpenVLA gripper",
    cameras=("agentview",), history=3, history_step="env_step", gripper="normalize_invert",
    binarize_gripper=True), overwrite=True)


class SeeingPolicy(Policy):
    """Records what it is shown; chunks of `k` actions with gripper 0.2 (-> +1 after mapping)."""

    cameras = ("agentview",)

    def __init__(self, profile: str, k: int, image_size: int | None = None) -> None:
        self.observation_profile = profile
        self.image_size = image_size
        self.k = k
        self.seen: list[dict[str, Any]] = []

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        self.seen.append({key: np.array(value) for key, value in observation.items()
                          if key.startswith("agentview")})
        chunk = np.zeros((self.k, 7))
        chunk[:, 0] = 0.2
        chunk[:, 6] = 0.2
        return chunk


def frames(*values: int, size: int = 8) -> list[np.ndarray]:
    return [np.full((size, size, 3), v, np.uint8) for v in values]


def test_history_frames_come_from_consecutive_env_steps():
    pipeline = ObservationPipeline("test_history3_invert", ("agentview",))
    assert pipeline.render_steps(5) == {2, 3, 4}  # the last frame and the two before it
    assert pipeline.render_steps(1) == {0}
    first, a, b, c = frames(1, 2, 3, 4)
    pipeline.log_frame({"agentview_image": first})  # after reset
    shown = pipeline.observe({"agentview_image": first})
    assert shown["agentview_history"].shape == (0, 8, 8, 3)  # current_only: no earlier frame yet
    for frame in (a, b, c):
        pipeline.log_frame({"agentview_image": frame})
    shown = pipeline.observe({"agentview_image": c})
    assert [int(f[0, 0, 0]) for f in shown["agentview_history"]] == [2, 3]  # oldest first
    assert int(shown["agentview_image"][0, 0, 0]) == 4
    # OpenVLA's gripper: [0, 1] -> [-1, 1], sign, inverted: 0.2 -> -0.6 -> -1 -> +1
    np.testing.assert_array_equal(pipeline.to_env(np.full((2, 7), 0.2))[:, 6], [1.0, 1.0])


def test_policy_call_history_and_padding_and_resize():
    register_profile(ObservationProfile(
        name="test_calls_padded", description="two frames, previous call, padded",
        history=2, history_step="policy_call", first_history="repeat_current"), overwrite=True)
    pipeline = ObservationPipeline("test_calls_padded", ("agentview",), image_size=4)
    assert pipeline.render_steps(5) == {4}  # only the frame the policy reads
    a, b, c = frames(10, 20, 30)
    pipeline.log_frame({"agentview_image": a})  # not a policy call: moves nothing
    shown = pipeline.observe({"agentview_image": b})
    assert shown["agentview_image"].shape == (4, 4, 3)  # resized to the model's size
    assert [int(f[0, 0, 0]) for f in shown["agentview_history"]] == [20]  # padded with current
    pipeline.log_frame({"agentview_image": c})
    shown = pipeline.observe({"agentview_image": c})
    assert [int(f[0, 0, 0]) for f in shown["agentview_history"]] == [20]  # the previous call's


def test_the_plain_profile_changes_nothing():
    pipeline = ObservationPipeline("libero", ("agentview",))
    observation = {"agentview_image": frames(5)[0], "state": np.zeros(8)}
    assert pipeline.is_identity and pipeline.observe(observation) is observation
    chunk = np.full((3, 7), 0.3)
    assert pipeline.to_env(chunk) is chunk


@pytest.mark.parametrize("k", [4, 1])
def test_engine_shows_the_previous_env_steps_frames_of_a_real_episode(tmp_path, k):
    from worldvla_bench.envs.libero_env import LiberoEnv
    from worldvla_bench.episode import run_episode
    from worldvla_bench.records import load_episode_arrays

    env = LiberoEnv("libero_spatial", 0, image_size=64, cameras=("agentview",), max_steps=9)
    policy = SeeingPolicy("test_history3_invert", k)
    try:
        context = EpisodeContext("libero_spatial", 0, env.task.name, env.instruction, 0, 0, 9)
        record = run_episode(env, policy, context, "seeing", episode_path=tmp_path / "e.npz",
                             save_frames=True)
    finally:
        env.close()
    assert record.error is None and record.steps == 9
    assert record.policy_calls == -(-9 // k)  # one call per chunk, no split chunks
    arrays = load_episode_arrays(tmp_path / "e.npz")
    rendered = arrays["frames_agentview"]  # (T+1, 64, 64, 3): after reset and after each step
    for call, shown in enumerate(policy.seen):
        step = call * k  # env steps executed before this call
        np.testing.assert_array_equal(shown["agentview_image"], rendered[step])
        earlier = list(range(max(0, step - 2), step))
        np.testing.assert_array_equal(shown["agentview_history"], rendered[earlier])
    assert np.all(arrays["actions"][:, 6] == 1.0) and np.all(arrays["actions"][:, 0] == 0.2)


def test_engine_renders_history_steps_without_save_frames(tmp_path):
    """Without `save_frames`, the frames shown are still the ones rendered at those steps: the
    same episode with and without rendering every step shows identical frames."""
    from worldvla_bench.envs.libero_env import LiberoEnv
    from worldvla_bench.episode import run_episode

    shown = []
    for save_frames in (True, False):
        env = LiberoEnv("libero_spatial", 0, image_size=64, cameras=("agentview",), max_steps=8)
        policy = SeeingPolicy("test_history3_invert", 4)
        try:
            context = EpisodeContext("libero_spatial", 0, env.task.name, env.instruction, 0, 0, 8)
            run_episode(env, policy, context, "seeing",
                        episode_path=tmp_path / f"{save_frames}.npz", save_frames=save_frames)
        finally:
            env.close()
        shown.append(policy.seen)
    for with_all, sparse in zip(*shown, strict=True):
        np.testing.assert_array_equal(with_all["agentview_history"], sparse["agentview_history"])
        np.testing.assert_array_equal(with_all["agentview_image"], sparse["agentview_image"])
    assert len(shown[1]) == 2 and shown[1][1]["agentview_history"].shape == (2, 64, 64, 3)
    assert all(frame.any() for frame in shown[1][1]["agentview_history"])  # real frames
