"""A run never mixes two served models (issue 28): the served model's identity (policy,
arguments, checkpoint fingerprint) from the server's metadata is kept in every record and the
manifest; a resumed run against another model stops in one line naming both; a connection that
comes back to another model ends the episode as an error naming both."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import split_config

from worldvla_bench.errors import RunDirectoryError
from worldvla_bench.manifest import read_manifest
from worldvla_bench.policies.remote import RemotePolicy, RemotePolicyError, served_identity
from worldvla_bench.policy import EpisodeContext
from worldvla_bench.records import read_episodes
from worldvla_bench.rollout import run_evaluation
from worldvla_bench.serving.server import PolicyServer

REMOTE = "worldvla_bench.policies.remote:RemotePolicy"


def _obs() -> dict:
    return {"agentview_image": np.zeros((8, 8, 3), np.uint8),
            "robot0_eye_in_hand_image": np.zeros((8, 8, 3), np.uint8),
            "state": np.zeros(8), "instruction": "x"}


def test_identity_is_the_policy_its_arguments_and_checkpoint_not_the_session():
    ours = {"server": "worldvla_bench", "policy": "random", "policy_kwargs": {"chunk_size": 3},
            "session": 7, "max_batch": 8, "checkpoint": "sha256:ab"}
    assert served_identity(ours) == {"policy": "random", "policy_kwargs": {"chunk_size": 3},
                                     "checkpoint": "sha256:ab"}
    assert served_identity({"model": "pi0", "session": 1}) == {"model": "pi0"}


def test_a_connection_that_comes_back_to_another_model_ends_the_episode():
    with PolicyServer("random", {"chunk_size": 3}, port=0) as first:
        port = first.port
        remote = RemotePolicy(port=port, backoff_s=0.2, retries=5)
        remote.reset(EpisodeContext("libero_spatial", 0, "t", "x", 0, 1, 12))
        assert remote.act(_obs()).shape == (3, 7)
        assert remote.served_model() == {"policy": "random", "policy_kwargs": {"chunk_size": 3}}
    with PolicyServer("random", {"chunk_size": 2}, port=port):
        with pytest.raises(RemotePolicyError, match=r"came back serving .*chunk_size': 2.* not "
                                                    r".*chunk_size': 3"):
            remote.act(_obs())
        assert remote.served_model()["policy_kwargs"] == {"chunk_size": 3}  # what it began with
        remote.reset(EpisodeContext("libero_spatial", 0, "t", "x", 1, 1, 12))
        assert remote.served_model()["policy_kwargs"] == {"chunk_size": 2}  # the next: the new
    remote.close()


def test_a_run_resumed_against_another_served_model_stops_naming_both(tmp_path):
    run = tmp_path / "served"
    common = dict(suite="libero_spatial", policy=REMOTE, tasks="0", run_dir=run, workers=1,
                  progress=False, image_size=64, max_steps=5)
    with PolicyServer("random", {"chunk_size": 3}, port=0) as first:
        port = first.port
        run_evaluation(*split_config(trials=1, policy_kwargs={"port": port}, **common))
    [record] = read_episodes(run)
    model = {"policy": "random", "policy_kwargs": {"chunk_size": 3}}
    assert record["served_model"] == model and read_manifest(run)["served_model"] == model
    with PolicyServer("random", {"chunk_size": 2}, port=port):
        with pytest.raises(RunDirectoryError, match=r"serves policy='random', policy_kwargs="
                                                    r"\{'chunk_size': 2\} but .* holds episodes "
                                                    r"of .*'chunk_size': 3"):
            run_evaluation(*split_config(trials=2, policy_kwargs={"port": port}, **common))
    assert len(read_episodes(run)) == 1  # nothing of the other model was recorded


def test_a_served_worldvla_names_its_checkpoint_file_by_sha256():
    """`serve-policy worldvla`: the served identity carries what a local run records per episode
    (`WorldVLAPolicy.served_model`: file, sha256, step), so a server restarted on a changed
    checkpoint file under the same name is another model to its clients."""
    from worldvla_bench.integrations.worldvla.checkpoints import file_sha256
    from worldvla_bench.integrations.worldvla.shipped import shipped_path

    with PolicyServer("worldvla", {"checkpoint": "tiny-libero-goal-early"}, port=0) as server:
        remote = RemotePolicy(port=server.port)
        served = remote.served_model()
        remote.close()
    path = shipped_path("tiny-libero-goal-early")
    assert served["checkpoint"]["sha256"] == file_sha256(path)
    assert served["checkpoint"]["file"] == path.name and served["checkpoint"]["step"] == 500
