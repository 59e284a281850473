"""The `remote` policy's vla-eval side: a vla-eval model server driven from our engine.

    vla-eval serve -c configs/model_servers/openvla/libero_spatial.yaml      # any vla-eval server
    worldvla-bench eval --suite libero_spatial --policy remote \\
        --policy-arg protocol=vla-eval --policy-arg port=8000

`VlaEvalClient` holds what `vla_eval.connection.Connection` and vla-eval's LIBERO benchmark do,
in our engine's terms (wire format: `worldvla_bench.serving.vla_eval_wire`):

- connect: `hello` out, `hello` back with the server's action spec, observation spec and
  `observation_params`; the action spec is turned into a converter to our 7-d convention
  (`vla_eval_specs.ActionConversion`), or refused with one line naming it;
- `reset(context)`: `episode_end` for the previous episode, then `episode_start` with the task
  as vla-eval's LIBERO benchmark sends it (`{"task": {"name": instruction, "suite", "task_id",
  "episode_idx": trial}}`) plus our whole `context` (our server uses it; others ignore it);
- `act(observation)`: one `observation` as `LIBEROBenchmark.make_obs` builds it: `images`
  `{"agentview": ...}` (upright, as ours), `"wrist"` when the server asks (`send_wrist_image`, or
  a `wrist`/`wrist_image` entry in its observation spec), `task_description`, and `states` (our
  8-d state: eef position, axis-angle, gripper qpos) when it asks (`send_state`, or `state`);
  the `action` back, (7,) or a (K, 7) chunk in the server's convention, comes back as (K, 7) in
  ours. A server that buffers chunks (vla-eval's `PredictModelServer` with `chunk_size`) answers
  one action per observation: the engine then calls it every step, as vla-eval does.

vla-eval's LIBERO benchmark also sends `controller_states` with the state; ours has no
controller reading, so servers that need it (X-VLA) are not served here. A dropped connection is
retried like openpi's (`retries`, backoff): reconnect, `hello`, the episode's `episode_start`,
then the request again; a server's `error` message ends the episode with its one line. The
served model's identity is the server's `hello` (`served.served_identity`): a connection that
comes back to a server serving another model ends the episode naming both.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError, ServerUnreachableError
from worldvla_bench.policy import EpisodeContext
from worldvla_bench.serving import open_websocket
from worldvla_bench.serving.vla_eval_specs import ActionConversion, UnsupportedActionSpec
from worldvla_bench.serving.vla_eval_wire import (
    WireError,
    hello_payload,
    pack_message,
    unpack_message,
)

from .served import served_identity, switch_message

logger = logging.getLogger("worldvla_bench.remote")

AGENTVIEW, WRIST = "agentview", "robot0_eye_in_hand"


class VlaEvalClient:
    """One connection to a vla-eval model server (see the module doc).

    `errors` is the exception type raised for an `error` reply, `unreachable` the one raised for
    a server still unreachable after the retries.
    """

    def __init__(
        self,
        uri: str,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        resize: int | None,
        errors: type[BenchError],
        unreachable: type[ServerUnreachableError] = ServerUnreachableError,
    ) -> None:
        self.uri = uri
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.resize = resize
        self.errors = errors
        self.unreachable = unreachable
        self.server_info: dict[str, Any] | None = None
        self.conversion: ActionConversion | None = None
        self.reconnects = 0
        self._ws: Any = None
        self._seq = 0
        self._episode: dict[str, Any] | None = None  # the open episode's episode_start payload
        #: the model this episode began with, when the server came back serving another one
        self._switched_from: dict[str, Any] | None = None

    # -- what the server declares ----------------------------------------------------------
    def info(self) -> dict[str, Any]:
        if self.server_info is None:
            self._call(None)
        return self.server_info or {}

    def wants(self, what: str) -> bool:
        """Whether the server asks for the `"agentview"` or `"wrist"` image, or the `"state"`.

        As vla-eval's LIBERO benchmark decides (`send_wrist_image`, `send_state`), and from the
        observation spec: a `wrist`/`wrist_image`/`state` entry asks for it; a spec without any
        image entry (format `rgb_hwc_uint8`) asks for no agentview image either."""
        info = self.info()
        params = info.get("observation_params") or {}
        spec = info.get("observation_spec") or {}
        if what == "agentview":
            images = [k for k, v in spec.items() if (v or {}).get("format") == "rgb_hwc_uint8"]
            return not spec or bool(images)
        if what == "wrist":
            asked = bool(params.get("send_wrist_image"))
            return asked or bool({"wrist", "wrist_image"} & set(spec))
        return bool(params.get("send_state")) or "state" in spec

    @property
    def cameras(self) -> tuple[str, ...]:
        """Our cameras the server reads (only these are rendered).

        A server whose action spec we refuse reads agentview here: the engine asks before the
        episode starts, and the refusal (one line) then ends the episode at `reset`."""
        try:
            wanted = ((AGENTVIEW, self.wants("agentview")), (WRIST, self.wants("wrist")))
        except UnsupportedActionSpec:
            return (AGENTVIEW,)
        return tuple(camera for camera, wants in wanted if wants)

    def served_model(self) -> dict[str, Any]:
        """The served model's identity (`served_identity` of the server's `hello`); an episode
        ended by a switch of model names the model it began with (its error names both)."""
        if self._switched_from is not None:
            return self._switched_from
        return served_identity(self.info())

    # -- the episode -----------------------------------------------------------------------
    def reset(self, context: EpisodeContext) -> None:
        self.end_episode()
        self._switched_from = None
        payload = {
            "task": {
                "name": context.instruction,
                "suite": context.suite,
                "task_id": context.task_id,
                "episode_idx": context.trial,
            },
            "context": context.to_dict(),
        }
        self._call(("episode_start", payload))
        self._episode = payload

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        reply = self._call(("observation", self._observation(observation)))
        assert self.conversion is not None
        if not isinstance(reply, dict) or "actions" not in reply:
            raise self.errors(f"policy server {self.uri} sent an action without 'actions'")
        return self.conversion(reply["actions"])

    def end_episode(self) -> None:
        if self._episode is not None and self._ws is not None:
            with contextlib.suppress(Exception):
                self._send("episode_end", {})
        self._episode = None

    def close(self) -> None:
        self.end_episode()
        self._disconnect()

    def _observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        images = {}
        if self.wants("agentview"):
            images["agentview"] = observation[f"{AGENTVIEW}_image"]
        if self.wants("wrist"):
            images["wrist"] = observation[f"{WRIST}_image"]
        if self.resize:
            from worldvla_bench.serving import resize_with_pad

            images = {k: resize_with_pad(v, self.resize, self.resize) for k, v in images.items()}
        out: dict[str, Any] = {
            "images": images,
            "task_description": str(observation.get("instruction", "")),
        }
        if self.wants("state"):
            out["states"] = np.asarray(observation["state"], dtype=np.float64)
        return out

    # -- the wire --------------------------------------------------------------------------
    def _send(self, kind: str, payload: dict[str, Any]) -> int:
        self._seq += 1
        self._ws.send(pack_message(kind, payload, self._seq))
        return self._seq

    def _recv(self) -> Any:
        frame = self._ws.recv(timeout=self.timeout_s)
        if isinstance(frame, str):
            raise self.errors(f"policy server {self.uri}: {frame.strip()[:300]}")
        try:
            return unpack_message(frame)
        except WireError as error:
            raise self.errors(f"policy server {self.uri} sent a bad message: {error}") from None

    def _exchange(self, kind: str, payload: dict[str, Any]) -> Any:
        """Send one message; for an observation, wait for its action (an error raises)."""
        seq = self._send(kind, payload)
        if kind != "observation":
            return None
        reply = self._recv()
        if reply.type == "error":
            text = str(reply.payload.get("error", reply.payload)).strip().splitlines()
            raise self.errors(f"policy server {self.uri}: {text[-1] if text else 'error'}")
        if reply.type != "action":
            raise self.errors(
                f"policy server {self.uri} answered an observation with "
                f"{reply.type!r}, not 'action'"
            )
        if reply.seq != seq:
            logger.warning("vla-eval seq mismatch: sent %d, received %d", seq, reply.seq)
        return reply.payload

    def _call(self, message: tuple[str, dict[str, Any]] | None) -> Any:
        """Send one message (None: only connect), retrying drops with backoff."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(5.0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                if self._ws is None:
                    self._connect_and_restore()
                return None if message is None else self._exchange(*message)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as error:
                last = error
                self._disconnect()
        raise self.unreachable.after(self.uri.removeprefix("ws://"), self.retries + 1, last)

    def _connect_and_restore(self) -> None:
        self._ws = open_websocket(self.uri, self.timeout_s)
        try:
            self._send("hello", hello_payload(benchmark="worldvla_bench"))
            reply = self._recv()
            if reply.type != "hello":
                raise self.errors(
                    f"policy server {self.uri} answered hello with {reply.type!r} ({reply.payload})"
                )
            conversion = ActionConversion(reply.payload.get("action_spec"))
        except BaseException:
            self._disconnect()
            raise
        if self.server_info is not None:
            before, now = served_identity(self.server_info), served_identity(reply.payload)
            if before != now:
                self._disconnect()
                self._episode = None  # the new model's server never saw this episode start
                self.server_info, self.conversion = reply.payload, conversion  # the next
                self._switched_from = before  # episode is the new model's (the engine stops)
                raise self.errors(switch_message(self.uri, before, now))
            self.reconnects += 1
        self.server_info, self.conversion = reply.payload, conversion
        if self._episode is not None:  # a new session: the episode starts again there
            self._send("episode_start", self._episode)

    def _disconnect(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
