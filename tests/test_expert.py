"""The scripted expert: its privileged channel, its planner on real tasks, one real rollout."""

from __future__ import annotations

import numpy as np
import pytest

from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.policies.expert import ExpertPolicy, Step, plan
from worldvla_bench.policies.expert.planner import PlanningError, articulation_is
from worldvla_bench.policy import EpisodeContext, Policy


def _state(suite: str, task_id: int, init_state: int = 0) -> dict:
    env = LiberoEnv(suite, task_id, image_size=64, max_steps=10)
    try:
        env.reset(seed=0, options={"init_state": init_state})
        return env.privileged_state()
    finally:
        env.close()


@pytest.fixture(scope="module")
def goal_drawer_state():
    return _state("libero_goal", 3)  # "open the top drawer and put the bowl inside"


def test_privileged_state_schema_and_frames(goal_drawer_state):
    s = goal_drawer_state
    assert s["goal"] == [["in", "akita_black_bowl_1", "wooden_cabinet_1_top_region"]]
    assert "akita_black_bowl_1" in s["obj_of_interest"]
    bowl = s["objects"]["akita_black_bowl_1"]
    assert bowl["pos"].shape == (3,) and bowl["quat"].shape == (4,)
    assert np.isclose(np.linalg.norm(bowl["quat"]), 1.0)
    assert np.all(bowl["aabb_min"] < bowl["aabb_max"])
    assert 0.85 < bowl["aabb_min"][2] < 0.95  # resting on the table top (world frame, metres)
    cabinet = s["fixtures"]["wooden_cabinet_1"]
    top = cabinet["joints"]["wooden_cabinet_1_top_level"]
    assert top["type"] == "slide" and abs(top["qpos"]) < 0.01  # closed at the start
    assert np.isclose(np.linalg.norm(top["axis"]), 1.0)
    assert top["handle_pos"].shape == (3,)
    region = s["sites"]["wooden_cabinet_1_top_region"]
    assert region["parent"] == "wooden_cabinet_1"
    assert region["joints"] == ["wooden_cabinet_1_top_level"]
    assert region["xmat"].shape == (3, 3) and region["size"].shape == (3,)
    robot = s["robot"]
    assert robot["eef_pos"].shape == (3,) and robot["gripper_qpos"].shape == (2,)
    assert robot["gripper_qpos"][0] > 0.03  # open at the start
    assert not articulation_is(s, "wooden_cabinet_1_top_level", "open")


def test_planner_adds_the_drawer_precondition(goal_drawer_state):
    steps = plan(goal_drawer_state)
    assert steps == [
        Step("open", ("wooden_cabinet_1_top_level",)),
        Step("pick_place", ("akita_black_bowl_1", "wooden_cabinet_1_top_region", "in")),
    ]


def test_planner_on_top_of_a_cabinet_needs_no_drawer(goal_drawer_state):
    state = dict(goal_drawer_state)
    state["goal"] = [["on", "wine_bottle_1", "wooden_cabinet_1_top_side"]]
    assert plan(state) == [Step("pick_place", ("wine_bottle_1", "wooden_cabinet_1_top_side", "on"))]
    state["goal"] = [["open", "wooden_cabinet_1_middle_region"]]
    assert plan(state) == [Step("open", ("wooden_cabinet_1_middle_level",))]
    state["goal"] = [["turnon", "flat_stove_1"]]
    assert plan(state) == [Step("turn", ("flat_stove_1_button", True))]
    state["goal"] = [["stack", "wine_bottle_1", "plate_1"]]
    with pytest.raises(PlanningError):
        plan(state)


def test_planner_chains_multi_goal_tasks():
    # libero_long task 3: "put the black bowl in the bottom drawer of the cabinet and close it"
    steps = plan(_state("libero_long", 3))
    skills = [step.skill for step in steps]
    assert skills == ["open", "pick_place", "close"]
    assert steps[1].args == ("akita_black_bowl_1", "white_cabinet_1_bottom_region", "in")
    assert steps[0].args == steps[2].args == ("white_cabinet_1_bottom_level",)


def test_expert_is_a_privileged_closed_loop_policy():
    assert issubclass(ExpertPolicy, Policy)
    assert ExpertPolicy.requires_privileged_state is True


def _expert_episode(suite: str, task_id: int):
    """(record, policy, step limit) of one expert episode: trial 0, seed 7, 64 px."""
    from worldvla_bench.episode import run_episode

    env = LiberoEnv(suite, task_id, image_size=64)
    policy = ExpertPolicy()
    context = EpisodeContext(
        suite=suite,
        task_id=task_id,
        task_name=env.task.name,
        instruction=env.instruction,
        trial=0,
        seed=7,
        max_steps=env.max_steps,
    )
    try:
        record = run_episode(env, policy, context, "expert")
    finally:
        env.close()
    return record, policy, env.max_steps


def test_expert_solves_the_easiest_task_within_its_step_limit():
    record, policy, max_steps = _expert_episode("libero_object", 0)
    assert record.error is None
    assert record.success, policy.results
    assert record.steps < max_steps
    assert record.policy_calls == record.steps  # closed loop: one action per call


def test_is_hollow_matches_whole_category_words():
    from worldvla_bench.policies.expert.skills import is_hollow

    hollow = ["akita_black_bowl", "plate", "glazed_rim_porcelain_ramekin", "basket"]
    hollow += ["porcelain_mug", "white_yellow_mug", "chefmate_8_frypan"]
    for category in hollow:
        assert is_hollow({"category": category}), category
    for category in ["moka_pot", "yellow_moka_pot", "alphabet_soup", "cream_cheese", "wine_bottle"]:
        assert not is_hollow({"category": category}), category  # "pot" inside "moka_pot"


def _stove_state(qpos: float) -> dict:
    joint = {
        "type": "hinge",
        "qpos": qpos,
        "range": np.array([-0.005, 2.1]),
        "axis": np.array([0.0, 0.0, 1.0]),
        "anchor": np.array([-0.42, 0.21, 0.905]),
        "handle_pos": np.array([-0.47, 0.21, 0.91]),
    }
    stove = {
        "joints": {"flat_stove_1_button": joint},
        "articulation": {
            "default_turnon_ranges": [0.5, 2.1],
            "default_turnoff_ranges": [-0.005, 0.0],
        },
        "aabb_max": np.array([-0.17, 0.3, 0.955]),
    }
    return {"fixtures": {"flat_stove_1": stove}, "objects": {}}


def test_turn_knob_is_done_at_once_when_already_in_the_wanted_state():
    from worldvla_bench.policies.expert import skills

    ctx = skills.Context()
    ctx.state = _stove_state(1.44)  # on (libero_long task 8 starts so)
    gen = skills.turn_knob(ctx, "flat_stove_1_button", True)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value is True
    ctx.state = _stove_state(-0.003)  # off is qpos < 0 for LIBERO: at its lower stop
    gen = skills.turn_knob(ctx, "flat_stove_1_button", False)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value is True
    assert skills._knob_goal(ctx, "flat_stove_1_button", True) > 0.5
    assert skills._knob_goal(ctx, "flat_stove_1_button", False) < 0.0


def test_expert_turns_the_stove_on():
    # libero_goal task 7 "turn on the stove": pinch the knob's fin, yaw the hand (~110 steps)
    record, policy, _ = _expert_episode("libero_goal", 7)
    assert record.error is None
    assert record.success, policy.results


def test_wrist_safe_yaw_takes_the_other_half_turn_near_the_wrist_limit():
    from worldvla_bench.policies.expert import skills

    ctx = skills.Context()
    ctx.state = {"robot": {"eef_xmat": skills.DOWN.copy()}}  # top-down hand at yaw 0
    ctx.base_xy = np.array([-0.66, 0.0])
    # libero_spatial task 1 trial 3: bowl far left, rim grasp at yaw -pi/2 -> q7 ~ 2.97 (> 2.9)
    assert np.isclose(skills.wrist_safe_yaw(ctx, -np.pi / 2, np.array([-0.19, 0.33])), np.pi / 2)
    for yaw in (-1.0, 0.0, 1.2):  # comfortable: unchanged
        assert skills.wrist_safe_yaw(ctx, yaw, np.array([0.0, 0.1])) == yaw
    # both comfortable: the one closest to the hand's yaw (no half turn between two grasps)
    ctx.state["robot"]["eef_xmat"] = skills._rot_z(-1.5) @ skills.DOWN
    assert np.isclose(skills.hand_yaw(ctx), -1.5)
    assert np.isclose(skills.wrist_safe_yaw(ctx, 1.55, np.array([0.0, -0.1])), 1.55 - np.pi)
    ctx.base_xy = None  # unknown base: unchanged
    assert skills.wrist_safe_yaw(ctx, -np.pi / 2, np.array([-0.19, 0.33])) == -np.pi / 2


def test_drawer_push_frame_tips_the_fingers_towards_the_push():
    from worldvla_bench.policies.expert import skills

    frame = skills.pushing(np.array([0.0, 1.0]))
    assert np.allclose(frame @ frame.T, np.eye(3))
    pointing = frame[:, 2]  # the grasp frame's z: from the wrist to the fingertips
    tilt = skills.PUSH_TILT
    assert np.allclose(pointing, [0.0, np.sin(tilt), -np.cos(tilt)])


def test_two_objects_on_one_region_get_side_by_side_slots():
    from worldvla_bench.policies.expert import skills

    def pot(x: float) -> dict:
        return {
            "aabb_min": np.array([x - 0.04, -0.07, 0.9]),
            "aabb_max": np.array([x + 0.04, 0.07, 1.05]),
        }

    site = {"pos": np.array([-0.05, -0.2, 0.905]), "size": np.array([0.075, 0.075, 0.0025])}
    site["xmat"] = np.eye(3)
    ctx = skills.Context()
    ctx.state = {
        "goal": [["on", "pot_1", "cook_region"], ["on", "pot_2", "cook_region"]],
        "objects": {"pot_1": pot(0.0), "pot_2": pot(0.2)},
        "fixtures": {},
        "sites": {"cook_region": site},
    }
    xy1, _ = skills.place_target(ctx, "pot_1", "cook_region", "on")
    xy2, _ = skills.place_target(ctx, "pot_2", "cook_region", "on")
    assert np.isclose(xy1[1], -0.2) and np.isclose(xy2[1], -0.2)  # spread along x (narrower)
    assert xy2[0] - xy1[0] > 0.08 and abs(xy1[0] + 0.05) < 0.075 and abs(xy2[0] + 0.05) < 0.075
    ctx.state["goal"] = ctx.state["goal"][:1]  # alone: the centre
    assert np.allclose(skills.place_target(ctx, "pot_1", "cook_region", "on")[0], [-0.05, -0.2])


def _actions(policy: ExpertPolicy, state: dict, seed: int, calls: int = 40) -> np.ndarray:
    """(calls, 7) actions of `policy` fed the same privileged state `calls` times."""
    policy.reset(EpisodeContext(suite="libero_goal", task_id=3, task_name="t", instruction="i",
                                trial=0, seed=seed, max_steps=300))
    return np.concatenate([policy.act({"privileged": state}) for _ in range(calls)])


def test_expert_action_noise_is_gaussian_on_the_arm_and_a_function_of_the_episode_seed(
        goal_drawer_state):
    clean = _actions(ExpertPolicy(), goal_drawer_state, seed=5)
    noisy = _actions(ExpertPolicy(action_noise=0.3), goal_drawer_state, seed=5)
    again = _actions(ExpertPolicy(action_noise=0.3), goal_drawer_state, seed=5)
    other = _actions(ExpertPolicy(action_noise=0.3), goal_drawer_state, seed=6)
    np.testing.assert_array_equal(noisy, again)  # same seed: the same episode
    assert not np.allclose(noisy[:, :6], other[:, :6])
    np.testing.assert_array_equal(noisy[:, 6], clean[:, 6])  # the gripper is not noised
    # the documented rule: one normal(0, std, 6) draw per call from default_rng(seed), clipped
    rng = np.random.default_rng(5)
    expected = np.clip(clean[:, :6] + np.stack([rng.normal(0, 0.3, 6) for _ in clean]), -1, 1)
    np.testing.assert_allclose(noisy[:, :6], expected, rtol=0, atol=1e-12)
    assert np.all(np.abs(noisy) <= 1.0)


class _ScriptedPlan(ExpertPolicy):
    """The expert with its planner replaced by a fixed sequence of planned actions."""

    def __init__(self, planned: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.planned = planned
        self.calls = 0

    def _plan_action(self, observation: dict) -> np.ndarray:
        self.calls += 1
        return self.planned[self.calls - 1][None, :].copy()


def test_expert_gripper_delay_lags_the_gripper_command_and_starts_open():
    planned = np.random.default_rng(0).uniform(-0.5, 0.5, (12, 7))
    planned[:, 6] = [1, 1, -1, 1, -1, -1, 1, 1, 1, -1, 1, -1]  # close, open, ... as planned
    late = _actions(_ScriptedPlan(planned, gripper_delay=3), {}, seed=5, calls=12)
    np.testing.assert_array_equal(late[:3, 6], -1.0)  # the hand starts open
    np.testing.assert_array_equal(late[3:, 6], planned[:-3, 6])
    np.testing.assert_array_equal(late[:, :6], planned[:, :6])  # the arm is not delayed
    policy = _ScriptedPlan(planned, gripper_delay=3)
    _actions(policy, {}, seed=5, calls=12)
    policy.calls = 0
    np.testing.assert_array_equal(_actions(policy, {}, seed=5, calls=12), late)  # reset: anew


def test_expert_reports_the_action_it_meant_when_it_executes_another():
    """`intended_actions()`: the planned action, before noise and gripper delay (DART labels);
    None when the action returned is the planned one."""
    planned = np.random.default_rng(2).uniform(-0.9, 0.9, (8, 7))
    planned[:, 6] = [1, 1, -1, -1, 1, -1, 1, 1]
    for kwargs in ({"action_noise": 0.3}, {"gripper_delay": 2},
                   {"action_noise": 0.3, "gripper_delay": 2}):
        policy = _ScriptedPlan(planned, **kwargs)
        policy.reset(EpisodeContext(suite="libero_goal", task_id=3, task_name="t",
                                    instruction="i", trial=0, seed=5, max_steps=300))
        for step in range(8):
            executed = policy.act({})
            np.testing.assert_array_equal(policy.intended_actions(), planned[step][None])
            if "action_noise" in kwargs:
                assert not np.array_equal(executed, planned[step][None])
    clean = _ScriptedPlan(planned)
    clean.reset(None)
    np.testing.assert_array_equal(clean.act({}), planned[:1])
    assert clean.intended_actions() is None
    cut = _ScriptedPlan(planned, action_noise=0.3, stop_after=1)
    cut.reset(None)
    cut.act({})
    cut.act({})  # holds still as it means to: nothing else was meant
    assert cut.intended_actions() is None


def test_expert_stop_after_holds_still_open_from_that_step():
    planned = np.random.default_rng(1).uniform(-0.5, 0.5, (10, 7))
    cut = _actions(_ScriptedPlan(planned, stop_after=4), {}, seed=5, calls=10)
    np.testing.assert_array_equal(cut[:4], planned[:4])
    np.testing.assert_array_equal(cut[4:], np.tile([0, 0, 0, 0, 0, 0, -1.0], (6, 1)))


def test_expert_rejects_negative_noise_and_delay():
    from worldvla_bench.errors import BenchError

    with pytest.raises(BenchError, match="action_noise"):
        ExpertPolicy(action_noise=-0.1)
    with pytest.raises(BenchError, match="gripper_delay"):
        ExpertPolicy(gripper_delay=-1)
    with pytest.raises(BenchError, match="stop_after"):
        ExpertPolicy(stop_after=-1)
