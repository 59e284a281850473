"""Any of our policies served over vla-eval's protocol, so `vla-eval run` drives it.

    worldvla-bench serve-policy random --protocol vla-eval --port 8000
    vla-eval run --no-docker -c libero_spatial.yaml --server-url ws://127.0.0.1:8000

`VlaEvalPolicyServer` is `PolicyServer` (same sessions, batching across connections, policy
thread, 127.0.0.1 by default) with vla-eval's conversation (`worldvla_bench.serving.vla_eval_wire`):

- `hello` is answered with `hello`: the action spec (ours: LIBERO's 7-d delta action,
  `vla_eval_specs.OUR_ACTION_SPEC`), the observation spec, and `observation_params` telling
  vla-eval's LIBERO benchmark to send the state (`send_state`) and the wrist camera when the
  policy reads it (`send_wrist_image`);
- `episode_start` resets the session's policy with an `EpisodeContext`: the one our `remote`
  client sends (`payload["context"]`), else built from the task vla-eval's benchmark sends
  (`{"name", "suite", "task_id", "episode_idx"}`): instruction = name, trial = episode_idx, seed =
  our engine's episode seed for run seed 7, max_steps from our suite file (0 if unknown);
- `observation` (`{"images": {"agentview", "wrist"}, "task_description", "states"}`, images
  upright as ours) is renamed to our keys, prepared as the policy's observation profile says
  (`ObservationPipeline`, as our engine does: crop, resize, history of the previous env steps'
  frames, gripper mapping of the chunk) and answered with one `action` `{"actions": (7,)}`:
  vla-eval steps once per observation, so the policy's (K, 7) chunk is kept per session and
  served one action per observation (a new policy call when it is used up, and at every
  `episode_start`), which executes the chunk open loop as our engine does;
- a policy that ends the episode (`EndEpisode`) has its last actions served, then every further
  observation of that episode is answered with an `error` (vla-eval's protocol has no way to end
  an episode from the server);
- anything wrong (not msgpack, unknown type, an observation without images, the policy raising)
  is answered with one `error` message `{"error": "<one line>"}`; the connection stays open.

The scripted expert is refused: it needs the simulator's privileged state, which no vla-eval
benchmark sends.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EndEpisode, EpisodeContext
from worldvla_bench.serving.server import PolicyServer, RequestError, _parse_context, _Session
from worldvla_bench.serving.vla_eval_specs import OUR_ACTION_SPEC, observation_spec
from worldvla_bench.serving.vla_eval_wire import (
    WireError,
    hello_payload,
    pack_message,
    unpack_message,
)

logger = logging.getLogger("worldvla_bench.serving")

#: The wire format's name and version, sent as the metadata's `protocol` value.
WIRE_FORMAT = "vla-eval/1"
#: vla-eval's LIBERO camera names (`LIBEROBenchmark.make_obs`) -> our observation keys.
CAMERA_KEYS = {"agentview": "agentview_image", "wrist": "robot0_eye_in_hand_image"}
#: The run seed our engine defaults to (`Protocol.seed`), also vla-eval's LIBERO default seed.
DEFAULT_RUN_SEED = 7


def native_observation(payload: dict[str, Any], needs_images: bool = True) -> dict[str, Any]:
    """A vla-eval observation with our keys: cameras as `<camera>_image`, `state`, `instruction`.

    `needs_images`: refuse an observation without images (the policy reads a camera)."""
    images = payload.get("images", {})
    if not isinstance(images, dict) or (needs_images and not images):
        raise RequestError("an observation needs 'images': a map of camera name to HxWx3 uint8")
    out: dict[str, Any] = {}
    for name, image in images.items():
        array = np.asarray(image)
        if array.ndim != 3 or array.dtype != np.uint8:
            raise RequestError(
                f"image {name!r} must be HxWxC uint8, got {array.dtype} {array.shape}"
            )
        key = CAMERA_KEYS.get(name, name if name.endswith("_image") else f"{name}_image")
        out[key] = array
    state = payload.get("states", payload.get("state"))
    if state is not None:
        out["state"] = np.asarray(state, dtype=np.float64).reshape(-1)
    out["instruction"] = str(payload.get("task_description", ""))
    return out


def episode_context(payload: dict[str, Any]) -> EpisodeContext:
    """The `EpisodeContext` of an `episode_start` payload (see the module doc)."""
    if isinstance(payload.get("context"), dict):
        return _parse_context(payload["context"])
    task = payload.get("task")
    if not isinstance(task, dict):
        raise RequestError("episode_start needs 'task': {name, suite, task_id, episode_idx}")
    from worldvla_bench.envs.seeding import episode_seed

    try:
        suite, task_id = str(task.get("suite", "")), int(task.get("task_id", 0))
        trial, name = int(task.get("episode_idx", 0)), str(task.get("name", ""))
    except (TypeError, ValueError) as error:
        raise RequestError(f"bad episode_start task: {error}") from None
    return EpisodeContext(
        suite=suite,
        task_id=task_id,
        task_name=name,
        instruction=name,
        trial=trial,
        seed=episode_seed(DEFAULT_RUN_SEED, suite, task_id, trial),
        max_steps=_suite_max_steps(suite),
    )


def _suite_max_steps(suite: str) -> int:
    from worldvla_bench.tasks import load_suite

    try:
        return int(load_suite(suite).max_steps)
    except Exception:  # not one of our suites: the policy is told 0 (unknown)
        return 0


class VlaEvalPolicyServer(PolicyServer):
    """`PolicyServer` speaking vla-eval's protocol (see the module doc)."""

    #: No keepalive pings, as vla-eval's `serve_async` (`ping_interval=None`): its client's event
    #: loop blocks while it builds a simulator, and would miss them.
    ping_interval_s = None

    def _build_first(self) -> None:
        super()._build_first()
        if self.metadata.get("requires_privileged_state"):
            raise BenchError(
                f"policy {self.policy_name!r} needs the simulator's privileged state, which "
                "vla-eval's benchmarks do not send: serve a policy that reads images and state"
            )
        cameras = self.metadata.get("cameras")
        agentview = cameras is None or "agentview" in cameras
        wrist = cameras is None or "robot0_eye_in_hand" in cameras
        self._needs_images = cameras is None or len(cameras) > 0
        self.metadata["protocol"] = WIRE_FORMAT
        self.hello = hello_payload(
            model_server=f"worldvla_bench:{self.policy_name}",
            capabilities={},
            observation_params={"send_state": True, "send_wrist_image": wrist},
            action_spec=OUR_ACTION_SPEC,
            observation_spec=observation_spec(agentview, wrist),
            worldvla_bench=self.metadata,
        )

    def _process_request(self, connection: Any, request: Any) -> Any:
        """vla-eval's readiness probe (GET /health) and ours (GET /healthz)."""
        if request.path == "/health":
            response = connection.respond(http.HTTPStatus.OK, json.dumps({"status": "ok"}) + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        return super()._process_request(connection, request)

    def _pipeline(self) -> ObservationPipeline:
        """A new episode's observation pipeline for the served policy (as `run_episode` builds)."""
        cameras = self.metadata.get("cameras")
        ours = tuple(
            c for c in ("agentview", "robot0_eye_in_hand") if cameras is None or c in cameras
        )
        profile = self.metadata.get("observation_profile") or "libero"
        return ObservationPipeline(profile, ours, self.metadata.get("image_size"))

    async def _serve_connection(self, connection: Any, session: _Session) -> None:
        episode = _Episode(self._pipeline())
        async for frame in connection:
            reply = await self._reply(session, episode, frame)
            if reply is not None:
                await connection.send(reply)

    async def _reply(self, session: _Session, episode: _Episode, frame: Any) -> bytes | None:
        """The answer to one frame (None when vla-eval expects none)."""
        seq = 0
        try:
            if isinstance(frame, str):
                raise RequestError("text frames are not messages: send msgpack in binary frames")
            try:
                message = unpack_message(frame)
            except WireError as error:
                raise RequestError(str(error)) from None
            seq = message.seq
            if message.type == "hello":
                return pack_message("hello", {**self.hello, "session": session.id}, seq)
            if message.type == "episode_start":
                episode.chunk.clear()
                episode.ended = None
                episode.pipeline = self._pipeline()
                await self._start_episode(session, episode_context(message.payload))
                return None
            if message.type == "episode_end":
                episode.chunk.clear()
                return None
            if message.type == "error":
                logger.warning("session %d: client error %s", session.id, message.payload)
                return None
            if message.type != "observation":
                raise RequestError(f"a client does not send {message.type!r} messages")
            # checked, and its frames recorded, even when the answer is buffered
            observation = native_observation(message.payload, self._needs_images)
            episode.pipeline.log_frame(observation)
            if not episode.chunk and episode.ended is not None:
                raise RequestError(f"the policy ended the episode: {episode.ended}")
            if not episode.chunk:
                prepared = episode.pipeline.observe(observation)
                try:
                    actions, _ = await self._submit(session, prepared)
                except EndEpisode as end:  # its actions first, then errors (vla-eval has no end)
                    episode.ended, actions = end.reason, end.actions
                    if not np.asarray(actions).size:
                        raise RequestError(f"the policy ended the episode: {end.reason}") from None
                episode.chunk.extend(episode.pipeline.to_env(_checked_chunk(actions)))
            return pack_message("action", {"actions": episode.chunk.popleft()}, seq)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            text = self._error_text(session, error).removeprefix("error: ")
            return pack_message("error", {"error": text}, seq)


@dataclass
class _Episode:
    """A connection's current episode: its observation pipeline and the rest of its chunk."""

    pipeline: ObservationPipeline
    chunk: deque = field(default_factory=deque)
    ended: str | None = None  # the reason of a policy that ended the episode (`EndEpisode`)


def _checked_chunk(actions: np.ndarray) -> np.ndarray:
    """A policy's (K, 7) chunk (or one (7,) action) as (K, 7) float64, checked."""
    array = np.asarray(actions, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 7 or len(array) == 0:
        raise RequestError(f"policy returned actions of shape {np.shape(actions)}, not (K, 7)")
    if not np.all(np.isfinite(array)):
        raise RequestError("policy returned a non-finite action")
    return array
