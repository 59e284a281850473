"""Scene seedings: the reference loop's scene of trial i, in any env, whatever ran before.

The LIBERO tests use libero_10 task 9 (the microwave: an articulated fixture whose property
sampler LIBERO registers again on every model load) and libero_goal task 3 (cabinet, stove,
rack), 64 px, 3 trials of 4 steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.reference_loop import run_reference_task
from worldvla_bench.envs.seeding import (
    SEEDINGS,
    SceneSeed,
    episode_seed,
    scene_of,
    scene_seed,
)
from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.protocol import Protocol
from worldvla_bench.tasks import load_suite

STEPS = 4
TRIALS = 3


def test_reference_seedings_are_the_peers_env_seeds():
    # OpenVLA and WorldVLA libero_utils.get_libero_env: env.seed(0); openpi main.py: args.seed 7
    assert SEEDINGS == {"openvla": 0, "openpi": 7, "hashed": None}
    assert Protocol("libero_spatial").seeding == "openvla"


def test_scene_seeds_per_seeding_and_policy_seeds_stay_hashed():
    assert scene_seed("openvla", 7, "libero_goal", 3, 4) == SceneSeed("openvla", 0, 4)
    assert scene_seed("openpi", 9, "libero_goal", 3, 4) == SceneSeed("openpi", 7, 4)
    assert scene_seed("hashed", 7, "libero_goal", 3, 4) == SceneSeed(
        "hashed", episode_seed(7, "libero_goal", 3, 4), 0)
    # unchanged since runs were first recorded: sha256(b"7/libero_spatial/0/0"), first 4 bytes
    # little-endian, 31 bits (computed with hashlib apart from the package)
    assert episode_seed(7, "libero_spatial", 0, 0) == 204055316


def test_records_without_a_seeding_read_as_hashed_with_their_seed():
    assert scene_of({"seed": 123}) == SceneSeed("hashed", 123, 0)
    scene = SceneSeed("openpi", 7, 5)
    assert scene_of({"seed": 1, **scene.to_record()}) == scene


def test_bad_seedings_are_named():
    with pytest.raises(UnknownChoiceError, match="openvla"):
        Protocol("libero_spatial", seeding="openvla2")
    with pytest.raises(BenchError, match="resets"):
        SceneSeed("hashed", 1, 2)


def _actions(trials: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.uniform(-1, 1, (STEPS, 7)) for _ in range(trials)]


def _episode(env: LiberoEnv, trial: int, actions: np.ndarray, scene: SceneSeed):
    obs, _ = env.reset(options={"init_state": trial, "scene": scene})
    frames = {c: [obs[f"{c}_image"]] for c in env.cameras}
    for action in actions:
        obs, *_ = env.step(action)
        for camera in env.cameras:
            frames[camera].append(obs[f"{camera}_image"])
    return {c: np.stack(f) for c, f in frames.items()}, env.get_sim_state()


@pytest.fixture(scope="module", params=[
    pytest.param(("libero_10", 9), id="libero_10-9"),
    pytest.param(("libero_goal", 3), id="libero_goal-3", marks=pytest.mark.slow),
])
def reference(request):
    suite, task_id = request.param
    actions = _actions(TRIALS)
    episodes = run_reference_task(load_suite(suite), task_id, 0, actions, 64, STEPS)
    return suite, task_id, actions, episodes


def _assert_same(ours, ref) -> None:
    frames, state = ours
    for camera, expected in ref.frames.items():
        np.testing.assert_array_equal(frames[camera], expected, err_msg=camera)
    np.testing.assert_array_equal(state, ref.final_state)


def test_any_trial_alone_and_in_any_order_is_the_reference_loops(reference):
    """Trial 2 first in a fresh env (replays resets 0 and 1), then 0, 1 and 2 in order (from the
    kept RNG state, no replay), then 1 again (back to env.seed): each equals the reference."""
    suite, task_id, actions, episodes = reference
    env = LiberoEnv(suite, task_id, image_size=64, max_steps=STEPS)
    try:
        for trial in (2, 0, 1, 2, 1):
            np.random.seed(trial + 100)  # whatever else draws from the global RNG
            before = np.random.get_state()[1].copy()
            ours = _episode(env, trial, actions[trial], SceneSeed("openvla", 0, trial))
            _assert_same(ours, episodes[trial])
            # the env's resets give numpy's global RNG back its state
            np.testing.assert_array_equal(np.random.get_state()[1], before)
    finally:
        env.close()


def test_trials_in_order_replay_nothing(reference, monkeypatch):
    suite, task_id, actions, _ = reference
    env = LiberoEnv(suite, task_id, image_size=64, max_steps=1, wait_steps=0)
    replays = []
    real = LiberoEnv._reference_reset

    def counting(self, loads, replay):
        replays.append(replay)
        return real(self, loads, replay)

    monkeypatch.setattr(LiberoEnv, "_reference_reset", counting)
    try:
        for trial in range(TRIALS):
            env.reset(options={"init_state": trial, "scene": SceneSeed("openvla", 0, trial)})
        assert replays == [False] * TRIALS
        replays.clear()
        env.reset(options={"init_state": 2, "scene": SceneSeed("openvla", 0, 2)})
        assert replays == [True, True, False]  # back to env.seed(0): resets 0 and 1 replayed
    finally:
        env.close()


def test_the_seed_and_the_trial_move_fixtures_the_state_does_not_hold(reference):
    """The scenes differ between trials (the draws of earlier resets) and seeds: a seeding that
    ignored either would fail the equality tests above."""
    suite, task_id, _, _ = reference
    env = LiberoEnv(suite, task_id, image_size=64, max_steps=1, wait_steps=0)
    try:
        def fixtures(scene):
            env.reset(options={"init_state": 0, "scene": scene})
            inner = env.robosuite_env
            ids = [inner.sim.model.body_name2id(f.root_body) for f in inner.fixtures_dict.values()]
            return inner.sim.model.body_pos[ids].copy()

        first = fixtures(SceneSeed("openvla", 0, 0))
        assert not np.array_equal(first, fixtures(SceneSeed("openvla", 0, 2)))
        assert not np.array_equal(first, fixtures(SceneSeed("openpi", 7, 0)))
        np.testing.assert_array_equal(first, fixtures(SceneSeed("openvla", 0, 0)))
    finally:
        env.close()


def test_hard_reset_gives_the_same_reference_scenes(reference):
    suite, task_id, actions, episodes = reference
    env = LiberoEnv(suite, task_id, image_size=64, max_steps=STEPS, hard_reset=True)
    try:
        ours = _episode(env, 2, actions[2], SceneSeed("openvla", 0, 2))
        _assert_same(ours, episodes[2])
    finally:
        env.close()


def _old_manifest(run_dir) -> dict:
    """A manifest written before seedings existed: its config has no `seeding`."""
    import json

    from worldvla_bench.manifest import build_manifest

    config = Protocol("libero_spatial").resolved(load_suite("libero_spatial")).to_dict()
    del config["seeding"]
    manifest = build_manifest(config, load_suite("libero_spatial").to_dict())
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_old_manifests_read_as_hashed_for_resume_and_compare(tmp_path):
    from worldvla_bench.errors import RunDirectoryError
    from worldvla_bench.manifest import write_or_check_manifest
    from worldvla_bench.manifest_diff import manifest_differences

    old = _old_manifest(tmp_path / "old")
    suite = load_suite("libero_spatial")
    hashed = Protocol("libero_spatial", seeding="hashed").resolved(suite).to_dict()
    write_or_check_manifest(tmp_path / "old", hashed, suite.to_dict(), {})  # resumes
    with pytest.raises(RunDirectoryError, match="seeding='hashed', not 'openvla'"):
        write_or_check_manifest(tmp_path / "old", Protocol("libero_spatial").resolved(suite)
                                .to_dict(), suite.to_dict(), {})
    new = {**old, "config": {**old["config"], "seeding": "openvla"}}
    differences = {d.what: d for d in manifest_differences(old, new)}
    assert (differences["protocol.seeding"].a, differences["protocol.seeding"].b) == (
        "hashed", "openvla")
    assert differences["protocol.seeding"].moves_numbers is True


@pytest.mark.slow
def test_the_openpi_seeding_is_openpis_loop_with_seed_7():
    """openpi examples/libero/main.py: the same loop, env.seed(7): trial 1 alone agrees."""
    actions = _actions(2)
    episodes = run_reference_task(load_suite("libero_spatial"), 0, 7, actions, 64, STEPS)
    env = LiberoEnv("libero_spatial", 0, image_size=64, max_steps=STEPS)
    try:
        _assert_same(_episode(env, 1, actions[1], SceneSeed("openpi", 7, 1)), episodes[1])
    finally:
        env.close()


def test_first_trial_selects_the_same_episodes_as_a_longer_run():
    """`--first-trial K --trials N` plans trials K..K+N-1 with the seeds a run of all K+N trials
    gives them (the held-out episodes of one split are the same episodes in any run)."""
    from worldvla_bench.protocol import RunOptions
    from worldvla_bench.rollout import plan_episodes

    protocol = Protocol(suite="libero_goal")
    _, whole = plan_episodes(protocol, RunOptions(tasks="1,4", trials=6))
    _, tail = plan_episodes(protocol, RunOptions(tasks="1,4", trials=2, first_trial=4))
    assert [(j.task_id, j.trial) for j in tail] == [(1, 4), (1, 5), (4, 4), (4, 5)]
    assert tail == [j for j in whole if j.trial >= 4]
