"""The policy server and the `remote` policy, on 127.0.0.1 only (ephemeral ports).

A remote run equals the local run; concurrent clients are batched and never share state; bad
requests get one-line errors; dropped connections and a restarted server are survived.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from conftest import split_config

from worldvla_bench.policies.remote import RemotePolicy, RemotePolicyError
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy, make_policy
from worldvla_bench.records import load_episode_arrays, read_episodes
from worldvla_bench.rollout import run_evaluation
from worldvla_bench.serving import RESET_KEY, pack, resize_with_pad, unpack
from worldvla_bench.serving.serve_cli import add_serve_parser
from worldvla_bench.serving.server import PolicyServer

REMOTE = "worldvla_bench.policies.remote:RemotePolicy"


def _context(trial: int = 0, seed: int = 1234) -> EpisodeContext:
    return EpisodeContext("libero_spatial", 0, "task", "pick up the bowl", trial, seed, 12)


def _obs(value: float = 0.0, size: int = 8) -> dict[str, Any]:
    return {
        "agentview_image": np.full((size, size, 3), 7, np.uint8),
        "robot0_eye_in_hand_image": np.zeros((size, size, 3), np.uint8),
        "state": np.full(8, value),
        "instruction": "pick up the bowl",
    }


class EchoBatchPolicy(Policy):
    """Batched: each answer encodes its own request (state, image size, the session's seed)."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = float(delay_s)

    def act(self, observation):
        return self.act_batch([observation], contexts=[None])[0]

    def act_batch(self, observations, contexts):
        time.sleep(self.delay_s)  # a GPU forward pass: requests pile up meanwhile
        chunks = []
        for obs, context in zip(observations, contexts, strict=True):
            chunk = np.zeros((2, 7))
            chunk[:, 0] = obs["state"][0]
            chunk[:, 1] = obs["agentview_image"].shape[0]
            chunk[:, 2] = -1 if context is None else context.seed
            chunk[:, 3] = "instruction" in obs
            chunks.append(chunk)
        return chunks


class EndingBatchPolicy(EchoBatchPolicy):
    """Batched: an observation with a negative state ends its episode after one action."""

    def act_batch(self, observations, contexts):
        chunks = super().act_batch(observations, contexts)
        return [EndEpisode("broken answer", np.full((1, 7), 0.25)) if obs["state"][0] < 0
                else chunk for obs, chunk in zip(observations, chunks, strict=True)]


class EndingPolicy(Policy):
    """Per session: ends the episode, with nothing more to run, when the state is negative."""

    def act(self, observation):
        if observation["state"][0] < 0:
            raise EndEpisode("no block")
        return np.zeros((2, 7))


def test_a_served_policy_ends_the_episode_as_it_does_locally():
    """`EndEpisode` crosses the wire: the client raises it with the actions to run first."""
    for policy, reason, actions in ((EndingBatchPolicy, "broken answer", np.full((1, 7), 0.25)),
                                    (EndingPolicy, "no block", np.zeros((0, 7)))):
        with PolicyServer(policy, port=0, max_batch=4) as server:
            remote = RemotePolicy(port=server.port)
            remote.reset(_context())
            assert remote.act(_obs(1.0)).shape == (2, 7)
            with pytest.raises(EndEpisode) as ended:
                remote.act(_obs(-1.0))
            assert ended.value.reason == reason
            np.testing.assert_array_equal(ended.value.actions.reshape(-1, 7), actions)
            assert remote.act(_obs(2.0)).shape == (2, 7)  # the session goes on serving
            remote.close()
            assert server.stats().get("errors", 0) == 0


class FailingPolicy(Policy):
    def act(self, observation):
        raise RuntimeError("boom\n  with a second line that must not be sent")


@pytest.fixture(scope="module")
def random_server():
    with PolicyServer("random", {"chunk_size": 3, "observe": True}, port=0) as server:
        yield server


def test_wire_format_is_openpi_msgpack_numpy():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack.unpackb(pack({"a": array, "s": np.float32(2.5)}), raw=False)
    assert raw["a"] == {
        b"__ndarray__": True,
        b"data": array.tobytes(),
        b"dtype": "<f4",
        b"shape": [2, 3],
    }
    assert raw["s"] == {b"__npgeneric__": True, b"data": 2.5, b"dtype": "<f4"}
    back = unpack(pack({"a": array, "img": np.zeros((4, 4, 3), np.uint8), "t": "x"}))
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], array)
    assert back["img"].flags.writeable and back["t"] == "x"
    with pytest.raises(ValueError, match="unsupported dtype"):
        pack({"o": np.array([object()])})


def test_remote_run_equals_local_run(random_server: PolicyServer, tmp_path: Path):
    common = dict(
        suite="libero_spatial",
        tasks="0",
        trials=2,
        workers=1,
        progress=False,
        image_size=64,
        max_steps=12,
    )
    local = run_evaluation(
        *split_config(
            policy="random",
            run_dir=tmp_path / "local",
            policy_kwargs={"chunk_size": 3, "observe": True},
            **common,
        )
    )
    remote = run_evaluation(
        *split_config(
            policy=REMOTE,
            run_dir=tmp_path / "remote",
            policy_kwargs={"port": random_server.port},
            **common,
        )
    )
    a = {(r["task_id"], r["trial"]): r for r in read_episodes(local)}
    b = {(r["task_id"], r["trial"]): r for r in read_episodes(remote)}
    assert sorted(a) == sorted(b) == [(0, 0), (0, 1)]
    for key, ra in a.items():
        rb = b[key]
        assert rb["error"] is None and ra["error"] is None
        for field in ("seed", "success", "steps", "policy_calls", "actions_at_bound_frac"):
            assert ra[field] == rb[field], field
        xa, xb = (
            load_episode_arrays(local / ra["episode_file"]),
            load_episode_arrays(remote / rb["episode_file"]),
        )
        np.testing.assert_array_equal(xa["actions"], xb["actions"])
        np.testing.assert_array_equal(xa["final_state"], xb["final_state"])
    stats = random_server.stats()
    assert stats["resets"] >= 2 and stats["requests"] >= 8  # 12 steps in chunks of 3, x2


def test_concurrent_clients_are_batched_and_keep_their_own_state():
    results: dict[int, list] = {}

    def client(index: int, port: int) -> None:
        policy = RemotePolicy(port=port)
        policy.reset(_context(trial=index, seed=100 + index))
        results[index] = [policy.act(_obs(value=index + 0.5 * step)) for step in range(8)]
        policy.close()

    with PolicyServer(EchoBatchPolicy, port=0, max_batch=8, batch_timeout_ms=20) as server:
        threads = [threading.Thread(target=client, args=(i, server.port)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stats = server.stats()
    assert sorted(results) == list(range(6))
    for index, chunks in results.items():
        for step, chunk in enumerate(chunks):
            assert chunk.shape == (2, 7)
            assert chunk[0, 0] == index + 0.5 * step  # its own observation came back
            assert chunk[0, 2] == 100 + index  # its own session's context
    assert stats["requests"] == 48 and stats["max_batch_size"] >= 3, stats
    assert stats["batches"] < 48, stats

    # a stateful policy (seeded RNG, one instance per connection): interleaved sessions each
    # draw exactly what a local instance draws
    with PolicyServer("random", {"chunk_size": 2}, port=0) as server:
        remotes = [RemotePolicy(port=server.port) for _ in range(3)]
        locals_ = [make_policy("random", chunk_size=2) for _ in range(3)]
        for i, (remote, local) in enumerate(zip(remotes, locals_, strict=True)):
            remote.reset(_context(trial=i, seed=10 + i))
            local.reset(_context(trial=i, seed=10 + i))
        for _ in range(4):
            for remote, local in zip(remotes, locals_, strict=True):
                np.testing.assert_array_equal(remote.act(_obs()), local.act(_obs()))
        for remote in remotes:
            remote.close()


def _raw_error(ws, payload) -> str:
    ws.send(payload)
    reply = ws.recv(timeout=10)
    assert isinstance(reply, str), "errors are text frames"
    assert "\n" not in reply and "Traceback" not in reply and reply.startswith("error: ")
    return reply


def test_bad_requests_get_one_line_errors_and_the_connection_stays_usable():
    from websockets.sync.client import connect

    with PolicyServer(EchoBatchPolicy, {"delay_s": 0.0}, port=0) as server:
        with connect(server.url, compression=None, proxy=None) as ws:
            metadata = unpack(ws.recv(timeout=10))
            assert metadata["protocol"] == "worldvla-remote/1" and "reset" in metadata["extensions"]
            assert "msgpack" in _raw_error(ws, b"\xc1\xc1")
            assert "must be a map" in _raw_error(ws, pack([1, 2, 3]))
            assert "text frames" in _raw_error(ws, "hello")
            assert "misses" in _raw_error(ws, pack({RESET_KEY: {"suite": "x"}}))
            assert "KeyError" in _raw_error(ws, pack({"instruction": "no state"}))
            ws.send(pack(_obs(value=3.0)))  # a good request still works afterwards
            assert unpack(ws.recv(timeout=10))["actions"][0, 0] == 3.0
        # openpi's health check
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    with PolicyServer(FailingPolicy, port=0) as server:
        policy = RemotePolicy(port=server.port, retries=0)
        policy.reset(_context())
        with pytest.raises(RemotePolicyError, match=r"RuntimeError: boom$"):
            policy.act(_obs())
        policy.close()


def test_dropped_connection_is_retried_with_the_session_restored(random_server: PolicyServer):
    remote = RemotePolicy(port=random_server.port, backoff_s=0.05)
    local = make_policy("random", chunk_size=3, observe=True)
    remote.reset(_context(seed=77))
    local.reset(_context(seed=77))
    for step in range(6):
        if step in (2, 4):
            random_server.close_connections()  # the server drops every client
            time.sleep(0.1)
        np.testing.assert_array_equal(remote.act(_obs()), local.act(_obs()))
    assert remote.reconnects == 2
    remote.close()


def _start_server_process(port: int) -> tuple[subprocess.Popen, int]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worldvla_bench.serving.serve_cli",
            "random",
            "--port",
            str(port),
            "--policy-arg",
            "chunk_size=2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
    assert match, f"server did not start: {line!r}"
    return proc, int(match.group(1))


def test_a_killed_and_restarted_server_process_is_survived():
    proc, port = _start_server_process(0)
    try:
        remote = RemotePolicy(port=port, retries=6, backoff_s=0.2, timeout_s=10)
        local = make_policy("random", chunk_size=2)
        remote.reset(_context(seed=5))
        local.reset(_context(seed=5))
        for _ in range(3):
            np.testing.assert_array_equal(remote.act(_obs()), local.act(_obs()))
        proc.kill()
        proc.wait(10)
        restart: dict[str, Any] = {}
        # the server comes back on the same port while the client is retrying
        thread = threading.Thread(
            target=lambda: restart.update(proc=_start_server_process(port)[0])
        )
        thread.start()
        for _ in range(3):
            np.testing.assert_array_equal(remote.act(_obs()), local.act(_obs()))
        thread.join(30)
        proc = restart["proc"]
        assert remote.reconnects == 1
        remote.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_openpi_format_and_an_openpi_style_server():
    # our server accepts openpi's keys; images are resized with pad to 224 as openpi's example does
    with PolicyServer(EchoBatchPolicy, {"delay_s": 0.0}, port=0) as server:
        policy = RemotePolicy(port=server.port, obs_format="openpi", replan_steps=1)
        policy.reset(_context(seed=9))
        chunk = policy.act(_obs(value=2.0, size=64))
        assert chunk.shape == (1, 7)
        assert tuple(chunk[0, :4]) == (2.0, 224.0, 9.0, 1.0)
        policy.close()
    image = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    padded = resize_with_pad(image, 224, 224)
    assert padded.shape == (224, 224, 3) and padded[:, :16].max() == 0  # black side bands

    # a server like openpi's: empty metadata, no reset, a traceback text frame on errors
    from websockets.sync.server import serve

    seen: list[dict] = []

    def handler(ws):
        ws.send(pack({}))
        for message in ws:
            obs = unpack(message)
            seen.append(obs)
            if "prompt" not in obs:
                ws.send("Traceback (most recent call last):\n  File ...\nKeyError: 'prompt'")
                continue
            ws.send(pack({"actions": np.ones((10, 7)), "server_timing": {"infer_ms": 1.0}}))

    with serve(handler, "127.0.0.1", 0, compression=None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        client = RemotePolicy(port=port, obs_format="openpi", replan_steps=5)
        client.reset(_context())
        assert client.act(_obs(size=32)).shape == (5, 7)
        assert sorted(seen[0]) == [
            "observation/image",
            "observation/state",
            "observation/wrist_image",
            "prompt",
        ]
        assert seen[0]["observation/image"].shape == (224, 224, 3)
        native = RemotePolicy(port=port)
        native.reset(_context())
        with pytest.raises(RemotePolicyError, match="KeyError: 'prompt'"):
            native.act(_obs())
        client.close()
        native.close()
        server.shutdown()
    assert len(seen) == 2  # no reset message reached a server that does not announce it


def test_serve_policy_parser():
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["serve-policy", "random", "--port", "9000", "--policy-arg", "chunk_size=5"]
    )
    assert (args.name, args.port, args.host, args.policy_arg) == (
        "random",
        9000,
        "127.0.0.1",
        ["chunk_size=5"],
    )
    assert callable(args.func)


def test_a_server_stops_on_sigterm_while_a_policy_call_hangs():
    """A hung model must not keep the server alive: SIGTERM waits --stop-grace, then exits."""
    import signal

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parent.parent),
         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worldvla_bench.serving.serve_cli",
         "policies_for_tests:SleepyPolicy", "--policy-arg", "sleep_s=3600", "--port", "0",
         "--stop-grace", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", proc.stdout.readline())
        assert match, proc.stderr.read()
        remote = RemotePolicy(port=int(match.group(1)), retries=0, timeout_s=60)
        remote.reset(_context(seed=1))
        threading.Thread(target=lambda: _swallow(remote.act, _obs()), daemon=True).start()
        time.sleep(1.0)  # the call is now inside the policy's sleep
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - started < 15
        assert "left behind" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)


def _swallow(call, *args):
    with contextlib.suppress(Exception):
        call(*args)
