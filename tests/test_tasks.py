from pathlib import Path

import pytest

from worldvla_bench.envs.libero_tasks import init_states, libero_task, n_tasks
from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.tasks import available_suites, load_suite, parse_index_list

OFFICIAL = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300,
            "libero_long": 520, "libero_90": 400}


@pytest.mark.parametrize("name,max_steps", sorted(OFFICIAL.items()))
def test_official_suites_carry_the_published_protocol(name, max_steps):
    spec = load_suite(name)
    assert spec.max_steps == max_steps
    assert spec.wait_steps == 10
    assert spec.trials_per_task == 50
    assert spec.wait_action == (0, 0, 0, 0, 0, 0, -1)
    assert spec.cameras == ("agentview", "robot0_eye_in_hand")
    tasks = n_tasks(spec)
    assert tasks == (90 if name == "libero_90" else 10)
    assert init_states(spec, tasks - 1).shape[0] == 50


def test_libero_10_is_an_alias_of_libero_long():
    assert load_suite("libero_10").name == "libero_long"


def test_libero_pro_suites_come_from_yaml_alone():
    assert {"libero_spatial_object", "libero_long_swap"} <= set(available_suites())
    swap = load_suite("libero_long_swap")
    task = libero_task(swap, 0)
    assert task.n_init_states == 50 and task.bddl_file.endswith(".bddl")


def test_a_new_yaml_file_adds_a_suite(tmp_path: Path, monkeypatch):
    (tmp_path / "mine.yaml").write_text(
        "name: goal_lan\nlibero_benchmark: libero_goal_lan\nmax_steps: 300\n"
    )
    monkeypatch.setenv("WORLDVLA_TASKS_DIR", str(tmp_path))
    spec = load_suite("goal_lan")
    assert libero_task(spec, 3).instruction


def test_unknown_suite_lists_the_choices():
    with pytest.raises(UnknownChoiceError, match="libero_spatial"):
        load_suite("libero_spacial")


def test_bad_yaml_keys_are_named(tmp_path, monkeypatch):
    (tmp_path / "bad.yaml").write_text("name: x\nlibero_benchmark: libero_goal\nmax_step: 3\n")
    monkeypatch.setenv("WORLDVLA_TASKS_DIR", str(tmp_path))
    with pytest.raises(BenchError, match="max_step"):
        load_suite("x")


def test_unknown_task_id_names_the_valid_range():
    with pytest.raises(UnknownChoiceError, match=r"0\.\.9"):
        libero_task(load_suite("libero_goal"), 10)


@pytest.mark.parametrize(
    "text,expected",
    [(None, [0, 1, 2, 3]), ("", [0, 1, 2, 3]), ("all", [0, 1, 2, 3]), ("3,0", [0, 3]),
     ("1-2", [1, 2]), ("0, 2-3", [0, 2, 3])],
)
def test_parse_index_list(text, expected):
    assert parse_index_list(text, 4, "task") == expected


@pytest.mark.parametrize("text", ["4", "-1", "a", "1-x"])
def test_parse_index_list_rejects_bad_values(text):
    with pytest.raises(BenchError):
        parse_index_list(text, 4, "task")
