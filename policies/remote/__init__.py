"""`remote`: a policy served by another process or machine, over a websocket.

    worldvla-bench serve-policy random --port 8000                      # on the GPU machine
    worldvla-bench eval --suite libero_spatial --policy remote \\
        --policy-arg host=127.0.0.1 --policy-arg port=8000                # on the env machines

Two protocols (`protocol`):

- `openpi` (the default): our `serve-policy` server and, unchanged, an openpi policy server
  (`scripts/serve_policy.py`, pi0 / pi0.5) or anything else that speaks that protocol (see
  `worldvla_bench.serving` for the wire format); the rest of this docstring is about it;
- `vla-eval`: a vla-eval model server (`vla-eval serve ...`, OpenVLA, OFT, pi0, GR00T, ...) or our
  `serve-policy --protocol vla-eval`; see `vla_eval_client` (hello, episode start/end, the
  observation as vla-eval's LIBERO benchmark sends it, the server's action spec converted to
  ours). `obs_format` does not apply; `resize`, `replan_steps`, `timeout_s`, `retries` do.

Observation formats (`obs_format`):

| ours (`native`, the env's keys)  | openpi's LIBERO example (`openpi`)      |
|----------------------------------|-----------------------------------------|
| `agentview_image` uint8 HxWx3    | `observation/image` (resized with pad)  |
| `robot0_eye_in_hand_image`       | `observation/wrist_image` (resized)     |
| `state` (8,): eef pos, axis-angle, gripper qpos | `observation/state` (same 8 numbers) |
| `instruction`                    | `prompt`                                |

Both formats carry upright images (LIBERO's frames rotated by 180 degrees, which openpi's example
does too) and the same 8-d state openpi's example builds. `resize` (default 224 with `openpi`,
none with `native`) resizes images on the client as openpi's example does (`resize_with_pad`,
bilinear). `replan_steps` executes only the first N actions of each returned chunk (openpi's
LIBERO example uses 5 of pi0's 10).

Episodes: with our server, `reset(context)` sends the episode context (suite, task, trial, seed,
...), so a seeded policy such as `random` draws exactly what it draws locally. openpi servers have
no reset (their policies keep no episode state); the client then skips it.

Failures: a dropped connection, a refused connect or a reply slower than `timeout_s` is retried
up to `retries` times with backoff: reconnect, resend the episode's reset and, when the server
says its policy is stateful, replay the episode's observations so far (answers discarded), then
resend the request; the policy's state is then what it was, so the episode goes on unchanged. A
server still unreachable after them stops the run (`RemotePolicyUnreachable`): the episode is
not recorded, and the same command resumes. A one-line error from the server (a bad request) is
not retried: it ends the episode as an error.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError, ServerUnreachableError
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy
from worldvla_bench.serving import (
    END_EPISODE_KEY,
    RESET_KEY,
    open_websocket,
    pack,
    to_openpi,
    unpack,
)

from .served import served_identity, switch_message
from .vla_eval_client import VlaEvalClient

OBS_FORMATS = ("native", "openpi")
WIRE_FORMATS = ("openpi", "vla-eval")


class RemotePolicyError(BenchError):
    """The policy server could not be reached, or answered with an error."""


class RemotePolicyUnreachable(RemotePolicyError, ServerUnreachableError):
    """The policy server stayed unreachable through the client's retries: the run stops there
    (`ServerUnreachableError`) instead of recording every next episode as an error."""


class RemotePolicy(Policy):
    """A policy behind a websocket policy server (ours or openpi's)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        timeout_s: float = 60.0,
        retries: int = 3,
        obs_format: str = "native",
        resize: int | None = None,
        replan_steps: int | None = None,
        cameras: list[str] | None = None,
        backoff_s: float = 0.5,
        protocol: str = "openpi",
    ) -> None:
        if protocol not in WIRE_FORMATS:
            raise ValueError(f"protocol must be one of {WIRE_FORMATS}, got {protocol!r}")
        if obs_format not in OBS_FORMATS:
            raise ValueError(f"obs_format must be one of {OBS_FORMATS}, got {obs_format!r}")
        if float(timeout_s) <= 0 or int(retries) < 0:
            raise ValueError("timeout_s must be > 0 and retries >= 0")
        if replan_steps is not None and int(replan_steps) < 1:
            raise ValueError(f"replan_steps must be >= 1, got {replan_steps}")
        self.host = str(host)
        self.port = int(port)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.obs_format = obs_format
        self.resize = (224 if obs_format == "openpi" else None) if resize is None else int(resize)
        self.replan_steps = None if replan_steps is None else int(replan_steps)
        self.backoff_s = float(backoff_s)
        self._cameras_override = None if cameras is None else tuple(cameras)
        self._ws: Any = None
        self.metadata: dict[str, Any] | None = None
        self._context: dict[str, Any] | None = None
        self._history: list[bytes] = []
        self._reconnects = 0
        #: the model this episode began with, when the server came back serving another one
        self._switched_from: dict[str, Any] | None = None
        self.protocol = protocol
        self._vla_eval: VlaEvalClient | None = None
        if protocol == "vla-eval":
            self._vla_eval = VlaEvalClient(
                self.uri, self.timeout_s, self.retries, self.backoff_s, resize, RemotePolicyError,
                RemotePolicyUnreachable,
            )

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established."""
        return self._vla_eval.reconnects if self._vla_eval else self._reconnects

    @property
    def uri(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- what the server's policy declares -------------------------------------------------
    @property
    def cameras(self) -> tuple[str, ...] | None:  # type: ignore[override]
        """The served policy's cameras (from the server's metadata); openpi reads both."""
        if self._cameras_override is not None:
            return self._cameras_override
        if self._vla_eval is not None:
            return self._vla_eval.cameras
        if self.obs_format == "openpi":
            return None
        cameras = self._server_metadata().get("cameras")
        return None if cameras is None else tuple(cameras)

    @property
    def requires_privileged_state(self) -> bool:  # type: ignore[override]
        if self._vla_eval is not None:
            return False  # vla-eval's benchmarks send no privileged state
        return bool(self._server_metadata().get("requires_privileged_state", False))

    @property
    def observation_profile(self) -> str:  # type: ignore[override]
        if self._vla_eval is not None:
            return "libero"
        return str(self._server_metadata().get("observation_profile") or "libero")

    @property
    def image_size(self) -> int | None:  # type: ignore[override]
        """The served model's image size: this engine prepares the images (the profile).
        A vla-eval server takes the env's images as vla-eval's benchmarks send them (None)."""
        if self._vla_eval is not None:
            return None
        size = self._server_metadata().get("image_size")
        return None if size is None else int(size)

    def served_model(self) -> dict[str, Any]:
        """What the server serves, from its metadata (`served_identity`); the engine keeps it
        in every record and the run's manifest, so a run never mixes two models. An episode
        ended by a switch of model names the model it began with (its error names both)."""
        if self._vla_eval is not None:
            return self._vla_eval.served_model()
        if self._switched_from is not None:
            return self._switched_from
        return served_identity(self._server_metadata())

    def _server_metadata(self) -> dict[str, Any]:
        if self.metadata is None:
            self._call(None)
        return self.metadata or {}

    def _has_reset(self) -> bool:
        return "reset" in (self._server_metadata().get("extensions") or ())

    # -- the Policy interface --------------------------------------------------------------
    def reset(self, context: EpisodeContext) -> None:
        self._switched_from = None
        if self._vla_eval is not None:
            self._vla_eval.reset(context)
            self.metadata = self._vla_eval.server_info
            return
        self._context = None
        self._history = []
        if self._has_reset():
            message = pack({RESET_KEY: context.to_dict()})
            self._call(message)
        self._context = context.to_dict()

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if self._vla_eval is not None:
            actions = self._vla_eval.act(observation)
            return actions if self.replan_steps is None else actions[: self.replan_steps]
        message = pack(self._encode(observation))
        reply = self._call(message)
        if not isinstance(reply, dict) or "actions" not in reply:
            raise RemotePolicyError(f"policy server {self.uri} sent no 'actions'")
        if self._server_metadata().get("stateful"):
            self._history.append(message)
        actions = np.asarray(reply["actions"])
        if reply.get(END_EPISODE_KEY) is not None:
            raise EndEpisode(str(reply[END_EPISODE_KEY]), actions)
        if self.replan_steps is not None and actions.ndim == 2:
            actions = actions[: self.replan_steps]
        return actions

    def close(self) -> None:
        if self._vla_eval is not None:
            self._vla_eval.close()
        self._disconnect()

    # -- the wire --------------------------------------------------------------------------
    def _encode(self, observation: dict[str, Any]) -> dict[str, Any]:
        if self.obs_format == "openpi":
            return to_openpi(observation, resize=self.resize)
        read = self.cameras
        out: dict[str, Any] = {}
        for key, value in observation.items():
            if key.endswith("_image"):
                if read is not None and key[: -len("_image")] not in read:
                    continue  # not rendered for this policy: do not ship black frames
                if self.resize:
                    from worldvla_bench.serving import resize_with_pad

                    value = resize_with_pad(value, self.resize, self.resize)
            out[key] = value
        return out

    def _call(self, message: bytes | None) -> Any:
        """Send one request and return the decoded reply (None: only connect), retrying drops."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(5.0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                if self._ws is None:
                    self._connect_and_restore()
                if message is None:
                    return None
                return self._exchange(message)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as error:
                last = error
                self._disconnect()
        raise RemotePolicyUnreachable.after(f"{self.host}:{self.port}", self.retries + 1, last)

    def _exchange(self, message: bytes) -> Any:
        self._ws.send(message)
        reply = self._ws.recv(timeout=self.timeout_s)
        if isinstance(reply, str):  # the protocol's error report: a text frame
            lines = [line for line in reply.strip().splitlines() if line.strip()]
            text = lines[-1] if lines else "error"  # openpi sends a traceback: keep its last line
            raise RemotePolicyError(f"policy server {self.uri}: {text.removeprefix('error: ')}")
        return unpack(reply)

    def _connect_and_restore(self) -> None:
        ws = open_websocket(self.uri, self.timeout_s)
        try:
            first = ws.recv(timeout=self.timeout_s)
            if isinstance(first, str):
                raise RemotePolicyError(f"policy server {self.uri}: {first.strip()[:300]}")
            metadata = unpack(first)
        except BaseException:
            ws.close()
            raise
        metadata = metadata if isinstance(metadata, dict) else {}
        if self.metadata is not None:
            before, now = served_identity(self.metadata), served_identity(metadata)
            if before != now:
                ws.close()
                self.metadata = metadata  # the next episode is the new model's (the engine
                self._switched_from = before  # then stops a run that holds the old one's)
                raise RemotePolicyError(switch_message(self.uri, before, now))
            self._reconnects += 1
        self.metadata = metadata
        self._ws = ws
        if self._context is not None and self._has_reset():
            # a new session: put the policy back where the episode was
            self._exchange(pack({RESET_KEY: self._context}))
            for message in self._history:
                self._exchange(message)

    def _disconnect(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
