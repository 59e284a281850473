"""vla-eval's protocol, tested against vla-eval's own code (vla-eval 0.8.0, a dev dependency).

Our engine drives a model server built on vla-eval's `PredictModelServer` for a real LIBERO
episode; vla-eval's own LIBERO benchmark loop (in-process, no docker) drives our server; the wire
format round-trips through vla-eval's encoder and decoder; the handshake declares specs vla-eval's
checker accepts; malformed messages get one-line errors and the connection stays open.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from conftest import split_config
from vla_eval import api as vla_eval_api
from vla_eval import rotation as vla_eval_rotation
from vla_eval.benchmarks.libero import benchmark as libero_benchmark
from vla_eval.benchmarks.libero.benchmark import LIBEROBenchmark
from vla_eval.model_servers.predict import PredictModelServer
from vla_eval.protocol import numpy_codec
from vla_eval.protocol.messages import Message, MessageType, pack_message, unpack_message
from vla_eval.specs import (
    GRIPPER_01,
    IMAGE_RGB,
    LANGUAGE,
    POSITION_ABSOLUTE,
    POSITION_DELTA,
    ROTATION_EULER,
    STATE_EEF_POS_AA_GRIP,
    DimSpec,
    check_specs,
)

from worldvla_bench.errors import BenchError, RunDirectoryError
from worldvla_bench.manifest import read_manifest
from worldvla_bench.policies.remote import RemotePolicy, RemotePolicyError
from worldvla_bench.policy import EpisodeContext, Policy
from worldvla_bench.records import load_episode_arrays, read_episodes
from worldvla_bench.rollout import episode_seed, run_evaluation
from worldvla_bench.serving import vla_eval_wire as wire
from worldvla_bench.serving.vla_eval_server import VlaEvalPolicyServer
from worldvla_bench.serving.vla_eval_specs import ActionConversion, UnsupportedActionSpec

INSTRUCTION_0 = "pick up the black bowl between the plate and the ramekin and place it on the plate"


# -- the wire format ---------------------------------------------------------------------------
def test_messages_round_trip_through_vla_evals_own_codec():
    arrays = {
        "f4": np.arange(6, dtype=np.float32).reshape(2, 3),
        "i8": np.arange(3),
        "b": np.array([True, False]),
        "img": np.full((4, 5, 3), 9, np.uint8),
    }
    ours = wire.pack_message("observation", {"a": arrays, "n": np.float32(2.5), "s": "x"}, 7, 1.5)
    theirs = unpack_message(ours)
    assert (theirs.type, theirs.seq, theirs.timestamp) == (MessageType.OBSERVATION, 7, 1.5)
    for key, value in arrays.items():
        assert theirs.payload["a"][key].dtype == value.dtype
        np.testing.assert_array_equal(theirs.payload["a"][key], value)
    assert theirs.payload["n"] == 2.5 and theirs.payload["s"] == "x"
    # vla-eval's client sends images as PNG by default, and raw on request: we read both
    for image_format in ("png", "raw"):
        numpy_codec.set_image_format(image_format)
        try:
            data = pack_message(Message(MessageType.ACTION, {"a": arrays}, seq=3))
        finally:
            numpy_codec.set_image_format("png")
        back = wire.unpack_message(data)
        assert (back.type, back.seq) == ("action", 3)
        for key, value in arrays.items():
            assert back.payload["a"][key].dtype == value.dtype
            np.testing.assert_array_equal(back.payload["a"][key], value)
    with pytest.raises(wire.WireError, match="unsupported dtype"):
        wire.unpack_message(
            msgpack.packb(
                {
                    "type": "action",
                    "seq": 1,
                    "timestamp": 0.0,
                    "payload": {
                        "x": {"__ndarray__": True, "data": b"", "dtype": "|O", "shape": [0]}
                    },
                }
            )
        )


def test_action_specs_convert_as_vla_evals_rotations_say():
    rng = np.random.default_rng(0)
    chunk = np.concatenate(
        [rng.uniform(-1, 1, (4, 3)), rng.uniform(-0.4, 0.4, (4, 3)), [[0.0], [1.0], [0.3], [0.8]]],
        axis=1,
    )
    euler = ActionConversion(
        {
            "position": POSITION_DELTA.to_dict(),
            "rotation": ROTATION_EULER.to_dict(),
            "gripper": GRIPPER_01.to_dict(),
        }
    )
    out = euler(chunk)
    for row, converted in zip(chunk, out, strict=True):
        matrix = vla_eval_rotation.euler_xyz_to_matrix(row[3:6])
        expected = vla_eval_rotation.quat_to_axisangle(vla_eval_rotation.matrix_to_quat(matrix))
        np.testing.assert_allclose(converted[3:6], expected, atol=1e-6)
        np.testing.assert_allclose(
            vla_eval_rotation.axisangle_to_matrix(converted[3:6]), matrix, atol=1e-6
        )
    np.testing.assert_array_equal(out[:, :3], chunk[:, :3])
    assert out[:, 6].tolist() == [1.0, -1.0, 1.0, -1.0]  # 0 = close, 1 = open (GR00T's)
    quat = ActionConversion(
        {"rotation": {"name": "rotation", "dims": 4, "format": "quaternion_xyzw"}}
    )
    q = vla_eval_rotation.matrix_to_quat(vla_eval_rotation.euler_xyz_to_matrix([0.1, -0.2, 0.3]))
    np.testing.assert_allclose(
        quat(np.r_[0, 0, 0, q, -1.0])[0, 3:6], vla_eval_rotation.quat_to_axisangle(q), atol=1e-6
    )
    assert ActionConversion({"actions": {"name": "raw", "dims": 0, "format": "raw"}}).identity
    for bad, named in (
        ({"position": POSITION_ABSOLUTE.to_dict()}, "position: 'absolute_xyz'"),
        (
            {"joints": {"name": "joints", "dims": 14, "format": "joint_positions"}},
            "joints: 'joint_positions' (14-d)",
        ),
        ({"rotation": {"name": "rotation", "dims": 6, "format": "rot6d_interleaved"}}, "rotation"),
    ):
        with pytest.raises(UnsupportedActionSpec, match=re.escape(named)) as caught:
            ActionConversion(bad)
        assert "\n" not in str(caught.value)


# -- our engine with a vla-eval model server -----------------------------------------------------
class EulerChunkServer(PredictModelServer):
    """A vla-eval model server with Euler rotations and a 0-close/1-open gripper, (5, 7) chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.observations: list[dict[str, Any]] = []
        self.episodes: list[dict[str, Any]] = []
        self.ended: list[dict[str, Any]] = []

    def get_observation_params(self) -> dict[str, Any]:
        return {"send_wrist_image": True, "send_state": True}

    def get_action_spec(self) -> dict[str, DimSpec]:
        return {"position": POSITION_DELTA, "rotation": ROTATION_EULER, "gripper": GRIPPER_01}

    def get_observation_spec(self) -> dict[str, DimSpec]:
        return {
            "image": IMAGE_RGB,
            "wrist": IMAGE_RGB,
            "state": STATE_EEF_POS_AA_GRIP,
            "language": LANGUAGE,
        }

    async def on_episode_start(self, config: dict[str, Any], ctx: Any) -> None:
        self.episodes.append(config)

    async def on_episode_end(self, result: dict[str, Any], ctx: Any) -> None:
        self.ended.append(result)

    def predict(self, obs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        self.observations.append(obs)
        return {"actions": euler_chunk(len(self.observations))}


def euler_chunk(call: int) -> np.ndarray:
    rng = np.random.default_rng(call)
    return np.concatenate(
        [rng.uniform(-0.5, 0.5, (5, 3)), rng.uniform(-0.2, 0.2, (5, 3)), rng.uniform(0, 1, (5, 1))],
        axis=1,
    )


def test_our_engine_drives_a_vla_eval_model_server(tmp_path: Path):
    model = EulerChunkServer()
    with vla_eval_api.serve_background(model, host="127.0.0.1", port=0) as handle:
        run_dir = run_evaluation(
            *split_config(
                suite="libero_spatial",
                policy="remote",
                tasks="0",
                trials=1,
                workers=1,
                progress=False,
                image_size=64,
                max_steps=20,
                run_dir=tmp_path / "run",
                policy_kwargs={"protocol": "vla-eval", "port": handle.port},
            )
        )
    [record] = read_episodes(run_dir)
    assert record["error"] is None and record["steps"] == 20 and record["policy_calls"] == 4
    executed = load_episode_arrays(run_dir / record["episode_file"])["actions"]
    spec = {k: v.to_dict() for k, v in model.get_action_spec().items()}
    expected = ActionConversion(spec)(np.concatenate([euler_chunk(c) for c in range(1, 5)]))
    np.testing.assert_allclose(executed, expected, atol=1e-6)
    assert set(np.unique(executed[:, 6])) <= {-1.0, 1.0}
    # what vla-eval's LIBERO benchmark sends: the task, then images by camera, language, state
    assert model.episodes[0]["task"] == {
        "name": INSTRUCTION_0,
        "suite": "libero_spatial",
        "task_id": 0,
        "episode_idx": 0,
    }
    first = model.observations[0]
    assert sorted(first["images"]) == ["agentview", "wrist"]
    assert first["images"]["agentview"].shape == (64, 64, 3)
    assert first["images"]["agentview"].dtype == np.uint8
    assert first["task_description"] == INSTRUCTION_0 and first["states"].shape == (8,)
    assert len(model.ended) == 1  # the episode was closed when the worker closed the policy


def test_an_unconvertible_action_spec_is_refused_in_one_line():
    class AbsoluteServer(EulerChunkServer):
        def get_action_spec(self) -> dict[str, DimSpec]:
            return {"position": POSITION_ABSOLUTE, "gripper": GRIPPER_01}

    with vla_eval_api.serve_background(AbsoluteServer(), host="127.0.0.1", port=0) as handle:
        remote = RemotePolicy(port=handle.port, protocol="vla-eval", retries=0)
        assert remote.cameras == ("agentview",)  # asked before the episode: no raise yet
        with pytest.raises(UnsupportedActionSpec, match="position: 'absolute_xyz' \\(3-d\\)") as e:
            remote.reset(EpisodeContext("libero_spatial", 0, "t", "x", 0, 1, 5))
        assert "\n" not in str(e.value)
        remote.close()



# -- the served model's identity (issue 28), as with an openpi server (test_served_model.py) ------
class OtherModelServer(EulerChunkServer):
    """Another model behind the same specs: vla-eval's hello names it by its class."""


def _observation() -> dict[str, Any]:
    return {"agentview_image": np.zeros((8, 8, 3), np.uint8),
            "robot0_eye_in_hand_image": np.zeros((8, 8, 3), np.uint8),
            "state": np.zeros(8), "instruction": "x"}


def test_a_vla_eval_connection_that_comes_back_to_another_model_ends_the_episode():
    with vla_eval_api.serve_background(EulerChunkServer(), host="127.0.0.1", port=0) as first:
        port = first.port
        remote = RemotePolicy(port=port, protocol="vla-eval", backoff_s=0.2, retries=5)
        remote.reset(EpisodeContext("libero_spatial", 0, "t", "x", 0, 1, 12))
        assert remote.act(_observation()).shape == (5, 7)
        served = remote.served_model()
        assert served["model_server"] == "EulerChunkServer" and "harness_version" not in served
    with vla_eval_api.serve_background(EulerChunkServer(), host="127.0.0.1", port=port):
        assert remote.act(_observation()).shape == (5, 7)  # the same model: the episode goes on
        assert remote.reconnects == 1 and remote.served_model() == served
    with vla_eval_api.serve_background(OtherModelServer(), host="127.0.0.1", port=port):
        with pytest.raises(RemotePolicyError, match=r"came back serving model_server="
                                                    r"'OtherModelServer'.* not model_server="
                                                    r"'EulerChunkServer'") as caught:
            remote.act(_observation())
        assert "\n" not in str(caught.value)
        assert remote.served_model() == served  # the episode's record: what it began with
        remote.reset(EpisodeContext("libero_spatial", 0, "t", "x", 1, 1, 12))
        assert remote.served_model()["model_server"] == "OtherModelServer"  # the next: the new
        assert remote.act(_observation()).shape == (5, 7)
        remote.close()


def test_a_run_resumed_against_another_vla_eval_model_stops_naming_both(tmp_path: Path):
    run = tmp_path / "served"
    common = dict(suite="libero_spatial", policy="remote", tasks="0", run_dir=run, workers=1,
                  progress=False, image_size=64, max_steps=5)
    with vla_eval_api.serve_background(EulerChunkServer(), host="127.0.0.1", port=0) as first:
        port = first.port
        kwargs = {"protocol": "vla-eval", "port": port}
        run_evaluation(*split_config(trials=1, policy_kwargs=kwargs, **common))
    [record] = read_episodes(run)
    assert record["error"] is None
    assert record["served_model"]["model_server"] == "EulerChunkServer"
    assert read_manifest(run)["served_model"] == record["served_model"]
    with vla_eval_api.serve_background(OtherModelServer(), host="127.0.0.1", port=port):
        with pytest.raises(RunDirectoryError, match=r"serves .*model_server='OtherModelServer'.* "
                                                    r"but .* holds episodes of .*model_server="
                                                    r"'EulerChunkServer'") as caught:
            run_evaluation(*split_config(trials=2, policy_kwargs=kwargs, **common))
    assert "\n" not in str(caught.value)
    assert len(read_episodes(run)) == 1  # nothing of the other model was recorded

# -- vla-eval's LIBERO benchmark with our server -------------------------------------------------
class RecordingPolicy(Policy):
    """Reads agentview and the state; answers 5-step chunks; remembers what it saw."""

    cameras = ("agentview",)
    seen: list[tuple[str, Any]] = []

    def reset(self, context: EpisodeContext) -> None:
        RecordingPolicy.seen.append(("reset", context))

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        RecordingPolicy.seen.append(("act", observation))
        chunk = np.zeros((5, 7))
        chunk[:, 6] = -1.0
        return chunk


def test_vla_evals_libero_benchmark_drives_our_server(tmp_path: Path, caplog, monkeypatch):
    # vla-eval renders both LIBERO cameras at 256 px every step; 64 px keeps this test short
    # (the module constant is read at every reset and observation)
    monkeypatch.setattr(libero_benchmark, "LIBERO_ENV_RESOLUTION", 64)
    RecordingPolicy.seen = []
    config = {
        "server": {"url": "ws://unused", "timeout": 60},
        "output_dir": str(tmp_path),
        "benchmarks": [
            {
                "benchmark": "vla_eval.benchmarks.libero.benchmark:LIBEROBenchmark",
                "episodes_per_task": 1,
                "max_tasks": 1,
                "max_steps": 20,
                "params": {"suite": "libero_spatial", "seed": 7, "num_steps_wait": 10},
            }
        ],
    }
    with VlaEvalPolicyServer(RecordingPolicy, port=0) as server, caplog.at_level(logging.WARNING):
        [result] = vla_eval_api.run(config, server_url=server.url, docker=False, no_save=True)
        stats = server.stats()
    assert not [r for r in caplog.records if "Spec mismatch" in r.getMessage()]
    [task] = result["tasks"]
    [episode] = task["episodes"]
    assert task["task"] == INSTRUCTION_0 and result["num_errors"] == 0
    assert episode["steps"] == 20 and "failure_reason" not in episode, episode
    assert (stats["requests"], stats["resets"], stats.get("errors", 0)) == (4, 1, 0)
    kinds = [kind for kind, _ in RecordingPolicy.seen]
    assert kinds == ["reset"] + ["act"] * 4  # 20 steps in chunks of 5
    context = RecordingPolicy.seen[0][1]
    assert context == EpisodeContext(
        "libero_spatial",
        0,
        INSTRUCTION_0,
        INSTRUCTION_0,
        0,
        episode_seed(7, "libero_spatial", 0, 0),
        220,
    )
    observation = RecordingPolicy.seen[1][1]
    assert sorted(observation) == ["agentview_image", "instruction", "state"]  # no wrist asked
    assert observation["agentview_image"].shape == (64, 64, 3)
    assert observation["state"].shape == (8,) and observation["instruction"] == INSTRUCTION_0


# -- the handshake and errors --------------------------------------------------------------------
def test_handshake_declares_libero_specs_and_bad_messages_get_one_line_errors():
    from websockets.sync.client import connect

    with VlaEvalPolicyServer("random", {"chunk_size": 2, "observe": True}, port=0) as server:
        ws = connect(server.url, proxy=None).__enter__()
        ws.send(pack_message(Message(MessageType.HELLO, {"harness_version": "x"}, seq=1)))
        hello = unpack_message(ws.recv(timeout=10))
        assert (hello.type, hello.seq, hello.payload["protocol_version"]) == (
            MessageType.HELLO,
            1,
            1,
        )
        bench = LIBEROBenchmark(
            suite="libero_spatial",
            send_state=True,
            send_wrist_image=hello.payload["observation_params"]["send_wrist_image"],
        )
        server_action = {k: DimSpec.from_dict(v) for k, v in hello.payload["action_spec"].items()}
        server_obs = {k: DimSpec.from_dict(v) for k, v in hello.payload["observation_spec"].items()}
        assert server_action == bench.get_action_spec()
        assert (
            check_specs(
                server_action, bench.get_action_spec(), server_obs, bench.get_observation_spec()
            )
            == []
        )

        def error_for(frame: bytes | str) -> str:
            ws.send(frame)
            reply = unpack_message(ws.recv(timeout=10))
            assert reply.type == MessageType.ERROR
            text = reply.payload["error"]
            assert "\n" not in text and "Traceback" not in text
            return text

        assert "msgpack" in error_for(b"\xc1\x00garbage")
        assert "text frames" in error_for("hello")
        assert "misses ['type'" in error_for(msgpack.packb({"payload": {}}))
        assert "unknown message type 'reset'" in error_for(
            msgpack.packb({"type": "reset", "payload": {}, "seq": 2, "timestamp": 0.0})
        )
        assert "needs 'images'" in error_for(
            pack_message(Message(MessageType.OBSERVATION, {"task_description": "x"}, seq=3))
        )
        # the connection is still usable: a good observation gets an action
        ws.send(
            pack_message(
                Message(
                    MessageType.OBSERVATION,
                    {
                        "images": {"agentview": np.zeros((8, 8, 3), np.uint8)},
                        "task_description": "x",
                        "states": np.zeros(8),
                    },
                    seq=4,
                )
            )
        )
        action = unpack_message(ws.recv(timeout=10))
        assert action.type == MessageType.ACTION and action.seq == 4
        assert action.payload["actions"].shape == (7,)
        ws.close()
        assert server.stats()["errors"] == 5
    with pytest.raises(BenchError, match="privileged state"):
        VlaEvalPolicyServer("expert", port=0).start()


def test_our_client_sends_the_cameras_our_server_declares():
    context = EpisodeContext("libero_spatial", 0, "t", "x", 0, 3, 5)
    for kwargs, cameras in (({"observe": False}, ()), ({"observe": "agentview"}, ("agentview",))):
        with VlaEvalPolicyServer("random", {"chunk_size": 2, **kwargs}, port=0) as server:
            remote = RemotePolicy(port=server.port, protocol="vla-eval")
            assert remote.cameras == cameras
            remote.reset(context)
            observation = {f"{c}_image": np.zeros((8, 8, 3), np.uint8) for c in cameras}
            observation.update(state=np.zeros(8), instruction="x")
            # vla-eval steps once per observation: our server hands out its chunk of 2 one by one
            assert [remote.act(observation).shape for _ in range(2)] == [(1, 7), (1, 7)]
            remote.close()
            assert server.stats()["requests"] == 1


class HistoryPolicy(Policy):
    """WorldVLA's observation profile at 16 px: remembers the prepared frames it was shown."""

    observation_profile = "worldvla"
    cameras = ("agentview",)
    image_size = 16
    shown: list[dict[str, Any]] = []

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        HistoryPolicy.shown.append(observation)
        return np.zeros((2, 7))


def test_our_server_prepares_observations_as_the_policys_profile_says():
    HistoryPolicy.shown = []
    with VlaEvalPolicyServer(HistoryPolicy, port=0) as server:
        remote = RemotePolicy(port=server.port, protocol="vla-eval")
        remote.reset(EpisodeContext("libero_spatial", 0, "t", "x", 0, 3, 5))
        for value in (10, 20, 30):  # one observation per env step, as vla-eval sends them
            remote.act(
                {
                    "agentview_image": np.full((64, 64, 3), value, np.uint8),
                    "state": np.zeros(8),
                    "instruction": "x",
                }
            )
        remote.close()
    first, second = HistoryPolicy.shown  # chunks of 2: calls at the 1st and 3rd step
    assert first["agentview_image"].shape == (16, 16, 3) and first["agentview_image"].max() == 10
    assert first["agentview_history"].shape == (0, 16, 16, 3)  # none at the first call
    assert second["agentview_image"].max() == 30
    # the earlier frame is the previous env step's (20), which the policy was never shown
    assert second["agentview_history"].shape == (1, 16, 16, 3)
    assert second["agentview_history"].max() == second["agentview_history"].min() == 20


class EndsAfterTwoActionsPolicy(Policy):
    """Ends every episode at its first call, handing over two actions to run first."""

    def act(self, observation):
        from worldvla_bench.policy import EndEpisode

        raise EndEpisode("broken answer", np.full((2, 7), 0.5))


def test_a_policy_ending_the_episode_gets_its_actions_then_one_line_errors():
    """vla-eval's protocol cannot end an episode from the server: the handed-over actions are
    served, then each observation of that episode gets an error naming the reason, until the
    next episode_start."""
    from websockets.sync.client import connect

    obs = {"images": {"agentview": np.zeros((8, 8, 3), np.uint8)}, "task_description": "x",
           "states": np.zeros(8)}
    with VlaEvalPolicyServer(EndsAfterTwoActionsPolicy, port=0) as server:
        ws = connect(server.url, proxy=None).__enter__()

        def reply(seq: int) -> Message:
            ws.send(pack_message(Message(MessageType.OBSERVATION, obs, seq=seq)))
            return unpack_message(ws.recv(timeout=10))

        for start in (0, 10):  # a new episode starts over
            ws.send(pack_message(Message(MessageType.EPISODE_START, {
                "task": {"name": "x", "suite": "libero_spatial", "task_id": 0,
                         "episode_idx": 0}}, seq=start)))
            answers = [reply(start + i) for i in (1, 2, 3)]
            assert [a.type for a in answers] == [MessageType.ACTION] * 2 + [MessageType.ERROR]
            np.testing.assert_allclose(answers[0].payload["actions"], np.full(7, 0.5))
            assert answers[2].payload["error"] == "the policy ended the episode: broken answer"
        ws.close()
