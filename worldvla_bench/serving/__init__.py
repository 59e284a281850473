"""Serving policies over the network: the wire formats shared by the servers and the clients.

Two protocols:

- openpi's policy-server protocol (what openpi's pi0 / pi0.5 servers and `openpi-client` speak),
  described here: `server.PolicyServer` serves it, the `remote` policy speaks it by default;
- vla-eval's (allenai/vla-evaluation-harness), which is a different one: typed messages (hello,
  episode start/end, observation, action, error) and declared action/observation specs; see
  `vla_eval_wire` and `vla_eval_specs`; `vla_eval_server.VlaEvalPolicyServer` serves it, the
  `remote` policy speaks it with `protocol=vla-eval`.

openpi's protocol:

- transport: one websocket per client (`ws://HOST:PORT`), binary frames, no compression;
- encoding: msgpack, numpy arrays as maps `{b"__ndarray__": True, b"data": <raw bytes>,
  b"dtype": <dtype.str, e.g. "|u1", "<f8">, b"shape": [...]}` and numpy scalars as
  `{b"__npgeneric__": True, b"data": <item>, b"dtype": <dtype.str>}` (openpi's `msgpack_numpy`);
- on connect the server sends one metadata map;
- then request/response, strictly alternating: one observation map in, one map with
  `"actions"` (K, 7) out (plus `"server_timing"`);
- an error is a text frame (not binary): one line, `"error: <Type>: <message>"`.

Our extension (announced in the metadata as `"extensions": ["reset", ...]`, so a client only uses
it with a server that has it): a request `{"__reset__": <episode context>}` starts a new episode
for this connection's session and is answered `{"reset": True, "session": <id>}`. The context is
`EpisodeContext.to_dict()`: suite, task_id, task_name, instruction, trial, seed, max_steps.

A policy that ends the episode (`worldvla_bench.policy.EndEpisode`) is answered
`{"actions": <the (K, 7) actions to run first, maybe (0, 7)>, "__end_episode__": <reason>}`;
our `remote` client raises `EndEpisode` from it, so the episode ends as it would locally (a
client that does not know the key runs the actions and asks again).

Observation keys: ours (`native`) are the env's: `agentview_image`, `robot0_eye_in_hand_image`
(uint8 HxWx3, upright), `state` (8,), `instruction`. openpi's LIBERO example sends
`observation/image`, `observation/wrist_image`, `observation/state`, `prompt` (see `OPENPI_KEYS`);
our server accepts both.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

#: Our wire format's name and version, sent as the metadata's `protocol` value.
WIRE_FORMAT = "worldvla-remote/1"
#: The request key of our reset extension.
RESET_KEY = "__reset__"
#: The reply key of a policy that ends the episode (`EndEpisode`): its reason.
END_EPISODE_KEY = "__end_episode__"
#: Our observation key -> openpi's LIBERO example key (examples/libero/main.py).
OPENPI_KEYS = {
    "agentview_image": "observation/image",
    "robot0_eye_in_hand_image": "observation/wrist_image",
    "state": "observation/state",
    "instruction": "prompt",
}
_FROM_OPENPI = {value: key for key, value in OPENPI_KEYS.items()}
_REJECTED_KINDS = ("O", "V", "c")  # objects, void/structured, complex: not on the wire


#: The largest array a decoder accepts, in bytes (`WORLDVLA_WIRE_MAX_ARRAY_BYTES` overrides it):
#: a message declares its arrays' shapes, and none is allocated before this and its length check.
MAX_ARRAY_BYTES = 256 * 2**20
_MAX_DIMS = 32


def max_array_bytes() -> int:
    """The array size cap in bytes (`MAX_ARRAY_BYTES`, or the environment's override)."""
    return int(os.environ.get("WORLDVLA_WIRE_MAX_ARRAY_BYTES", MAX_ARRAY_BYTES))


def checked_array(data: Any, dtype: np.dtype, shape: Any,
                  error: type[Exception] = ValueError) -> np.ndarray:
    """A writable array from a message's raw bytes, checked before anything is allocated: the
    element size is positive, the shape a list of non-negative integers, the data exactly
    shape x itemsize bytes and at most `max_array_bytes()`; `error` (one line) otherwise."""
    if dtype.itemsize <= 0:
        raise error(f"array dtype {dtype} has no element size")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise error(f"array data must be bytes, got {type(data).__name__}")
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_DIMS or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise error(f"array shape must be a list of at most {_MAX_DIMS} non-negative integers, "
                    f"got {shape!r}"[:200])
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_array_bytes():
        raise error(f"array of shape {list(shape)} and dtype {dtype} is {nbytes} bytes, over the "
                    f"cap of {max_array_bytes()} (WORLDVLA_WIRE_MAX_ARRAY_BYTES)")
    if nbytes != len(data):
        raise error(f"array of shape {list(shape)} and dtype {dtype} needs {nbytes} bytes, "
                    f"got {len(data)}")
    # a writable copy: policies may modify observations in place, as they can locally
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REJECTED_KINDS:
        raise ValueError(f"unsupported dtype on the wire: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {
            b"__ndarray__": True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the wire")


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in _REJECTED_KINDS:
            raise ValueError(f"unsupported dtype on the wire: {dtype}")
        return checked_array(obj[b"data"], dtype, obj[b"shape"])
    if b"__npgeneric__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in _REJECTED_KINDS:
            raise ValueError(f"unsupported dtype on the wire: {dtype}")
        return dtype.type(obj[b"data"])
    return obj


def pack(obj: Any) -> bytes:
    """Encode a message (dicts, lists, str, numbers, numpy arrays) as openpi does."""
    import msgpack

    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode a message; numpy arrays come back as writable arrays."""
    import msgpack

    return msgpack.unpackb(data, object_hook=_unpack_hook, raw=False, strict_map_key=False)


def error_line(error: BaseException | str) -> str:
    """The one-line text frame that reports an error (never a traceback)."""
    if isinstance(error, BaseException):
        lines = str(error).strip().splitlines()
        text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else "error"
    return f"error: {text}"[:500]


def to_openpi(observation: dict[str, Any], resize: int | None = 224) -> dict[str, Any]:
    """Our observation as openpi's LIBERO example sends it (images resized with padding)."""
    out: dict[str, Any] = {}
    for key, value in observation.items():
        target = OPENPI_KEYS.get(key)
        if target is None:
            continue
        if key.endswith("_image") and resize:
            value = resize_with_pad(value, resize, resize)
        out[target] = value
    return out


def from_openpi(observation: dict[str, Any]) -> dict[str, Any]:
    """An observation with openpi's keys renamed to ours (other keys kept as they are)."""
    if not any(key in _FROM_OPENPI for key in observation):
        return observation
    return {_FROM_OPENPI.get(key, key): value for key, value in observation.items()}


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi's `image_tools.resize_with_pad` for one uint8 HxWx3 image (PIL bilinear, zero pad).

    Keeps the aspect ratio, then pads with black to (height, width). Square images are only
    resized.
    """
    from PIL import Image

    array = np.asarray(image)
    cur_height, cur_width = array.shape[:2]
    if (cur_height, cur_width) == (height, width):
        return array
    ratio = max(cur_width / width, cur_height / height)
    new_height, new_width = int(cur_height / ratio), int(cur_width / ratio)
    resized = np.asarray(
        Image.fromarray(array).resize((new_width, new_height), resample=Image.BILINEAR)
    )
    out = np.zeros((height, width, *array.shape[2:]), dtype=array.dtype)
    top, left = (height - new_height) // 2, (width - new_width) // 2
    out[top : top + new_height, left : left + new_width] = resized
    return out


def open_websocket(uri: str, open_timeout_s: float) -> Any:
    """A synchronous websocket client connection to a policy server, as both our clients open
    it: no compression, no message size limit, never through an $http_proxy."""
    import inspect

    from websockets.sync.client import connect

    options: dict[str, Any] = {"compression": None, "max_size": None,
                               "open_timeout": open_timeout_s}
    parameters = inspect.signature(connect).parameters
    if "proxy" in parameters:
        options["proxy"] = None  # websockets >= 15 would honour $http_proxy: go direct
    if "legacy" in parameters:
        options["legacy"] = True  # websockets >= 17: a plain connection, not a context
    return connect(uri, **options)
