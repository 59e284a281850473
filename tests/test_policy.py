import numpy as np
import pytest

from worldvla_bench.errors import BenchError, PolicyOutputError, UnknownChoiceError
from worldvla_bench.policies.noop import NoopPolicy
from worldvla_bench.policies.random import RandomPolicy
from worldvla_bench.policy import (
    EpisodeContext,
    make_policy,
    parse_key_values,
    policy_names,
    resolve_policy_class,
    validate_chunk,
)


def _context(seed: int = 1, trial: int = 0) -> EpisodeContext:
    return EpisodeContext("libero_spatial", 0, "t", "do it", trial, seed, 10)


def test_builtins_are_found_by_name():
    assert {"noop", "random", "replay"} <= set(policy_names())
    assert resolve_policy_class("random") is RandomPolicy
    assert isinstance(make_policy("noop", chunk_size=4), NoopPolicy)


def test_user_policies_are_found_by_module_path():
    cls = resolve_policy_class("policies_for_tests:WrongShapePolicy")
    assert cls.__name__ == "WrongShapePolicy"


@pytest.mark.parametrize(
    "name,error,match",
    [
        ("nope", UnknownChoiceError, "expert, noop, random, remote, replay, worldvla, worldvla_hf"),
        ("no_such_module:X", BenchError, "cannot import"),
        ("policies_for_tests:Missing", BenchError, "has no class"),
        ("policies_for_tests:NotAPolicy", BenchError, "not a subclass"),
    ],
)
def test_bad_policy_names_say_what_is_wrong(name, error, match):
    with pytest.raises(error, match=match):
        resolve_policy_class(name)


def test_bad_policy_arguments_are_reported():
    with pytest.raises(BenchError, match="bad arguments"):
        make_policy("random", chunk=3)


def test_validate_chunk_accepts_k_by_7_and_a_single_action():
    assert validate_chunk(np.zeros((5, 7))).shape == (5, 7)
    assert validate_chunk([0.0] * 7).shape == (1, 7)


@pytest.mark.parametrize(
    "chunk,match",
    [
        (np.zeros((2, 6)), r"shape \(2, 6\)"),
        (np.zeros((0, 7)), r"shape \(0, 7\)"),
        (np.zeros((1, 2, 7)), "shape"),
        (np.full((2, 7), np.nan), "non-finite"),
        ([["a"] * 7], "non-numeric"),
    ],
)
def test_validate_chunk_rejects_bad_output(chunk, match):
    with pytest.raises(PolicyOutputError, match=match):
        validate_chunk(chunk)


def test_random_policy_is_reproducible_per_episode_seed():
    policy = RandomPolicy(chunk_size=3)
    policy.reset(_context(seed=5))
    first = policy.act({})
    policy.reset(_context(seed=5))
    np.testing.assert_array_equal(policy.act({}), first)
    policy.reset(_context(seed=6))
    assert not np.array_equal(policy.act({}), first)
    assert first.shape == (3, 7) and np.all(np.abs(first) <= 1)


@pytest.mark.parametrize("observe, cameras", [
    (False, ()), (True, None), (1, None), ("agentview", ("agentview",)),
    ("agentview, robot0_eye_in_hand", ("agentview", "robot0_eye_in_hand")),
    (["robot0_eye_in_hand"], ("robot0_eye_in_hand",)),
])
def test_random_policy_reads_the_cameras_it_is_told_to(observe, cameras):
    assert RandomPolicy(observe=observe).cameras == cameras


def test_noop_holds_still_with_the_gripper_open():
    chunk = NoopPolicy(chunk_size=2).act({})
    np.testing.assert_array_equal(chunk, [[0, 0, 0, 0, 0, 0, -1]] * 2)


def test_parse_key_values_reads_yaml_scalars():
    assert parse_key_values(["chunk_size=5", "scale=0.5", "run=results/x", "flag=true"]) == {
        "chunk_size": 5, "scale": 0.5, "run": "results/x", "flag": True}
    with pytest.raises(BenchError):
        parse_key_values(["novalue"])
