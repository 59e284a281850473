"""vla-eval's wire format (allenai/vla-evaluation-harness, PyPI `vla-eval` 0.8.0), without vla-eval.

What `vla_eval/protocol/messages.py`, `numpy_codec.py` and `image_codec.py` put on the wire:

- transport: one websocket per client, binary frames; the client speaks first (`hello`) and the
  server answers `hello` with its declared specs (`vla_eval/model_servers/serve.py`);
- a message is a msgpack map `{"type", "payload", "seq", "timestamp"}`: `type` one of
  `MESSAGE_TYPES`, `payload` a map, `seq` the client's message counter (1, 2, ...; an `action`
  or `error` echoes the `seq` of the observation it answers), `timestamp` seconds since the epoch;
- a numpy array is `{"__ndarray__": True, "data": <raw bytes>, "dtype": <dtype.str>,
  "shape": [...]}` (string keys, unlike openpi's bytes keys) and numpy scalars go as Python
  numbers; only bool, int, uint and float dtypes are accepted;
- an HxWxC uint8 image (C in 1, 3, 4) may instead come as `{"__image__": True, "format": "raw" |
  "png" | "jpeg", "data", "shape"[, "dtype"]}`: vla-eval's own client sends PNG by default. We
  decode all three and send plain arrays (which every vla-eval decoder reads; no compression cost).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldvla_bench.serving import checked_array, max_array_bytes

#: `vla_eval.protocol.messages.PROTOCOL_VERSION`.
PROTOCOL_VERSION = 1
#: `vla_eval.protocol.messages.MessageType` values.
MESSAGE_TYPES = ("hello", "observation", "action", "episode_start", "episode_end", "error")
_REQUIRED = ("type", "payload", "seq", "timestamp")  # messages.unpack_message's required fields
_NDARRAY_KEY = "__ndarray__"  # numpy_codec._NDARRAY_KEY
_IMAGE_KEY = "__image__"  # image_codec._IMAGE_KEY
_ALLOWED_KINDS = frozenset("biuf")  # numpy_codec._ALLOWED_DTYPE_KINDS


class WireError(ValueError):
    """A frame that is not a vla-eval message (the text says why, on one line)."""


@dataclass
class Message:
    """One vla-eval message: `type` (see `MESSAGE_TYPES`), `payload` map, `seq`, `timestamp` (s)."""

    type: str
    payload: dict[str, Any]
    seq: int = 0
    timestamp: float = field(default_factory=time.time)


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise WireError(f"unsupported dtype on the wire: {obj.dtype}")
        return {
            _NDARRAY_KEY: True,
            "data": np.ascontiguousarray(obj).tobytes(),
            "dtype": obj.dtype.str,
            "shape": list(obj.shape),
        }
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the wire")


def _checked_dtype(value: Any) -> np.dtype:
    dtype = np.dtype(value)
    if dtype.kind not in _ALLOWED_KINDS:
        raise WireError(f"unsupported dtype on the wire: {dtype}")
    return dtype


def _decode(obj: dict) -> Any:
    if obj.get(_IMAGE_KEY) is True:
        kind = obj.get("format")
        if kind == "raw":
            dtype = _checked_dtype(obj.get("dtype", "|u1"))
            return checked_array(obj["data"], dtype, obj["shape"], WireError)
        if kind in ("png", "jpeg"):
            from PIL import Image

            image = Image.open(io.BytesIO(obj["data"]))  # reads the header only
            width, height = image.size
            nbytes = width * height * len(image.getbands())
            if nbytes > max_array_bytes():
                raise WireError(f"{kind} image of {width}x{height} px is over the array cap of "
                                f"{max_array_bytes()} bytes (WORLDVLA_WIRE_MAX_ARRAY_BYTES)")
            return np.array(image)
        raise WireError(f"unknown image format {kind!r} (raw, png or jpeg)")
    if obj.get(_NDARRAY_KEY) is True:
        dtype = _checked_dtype(obj["dtype"])
        return checked_array(obj["data"], dtype, obj["shape"], WireError)
    return obj


def pack_message(
    kind: str, payload: dict[str, Any], seq: int = 0, timestamp: float | None = None
) -> bytes:
    """Encode one message as `vla_eval.protocol.messages.pack_message` does."""
    import msgpack

    if kind not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {kind!r}")
    raw = {
        "type": kind,
        "payload": payload,
        "seq": int(seq),
        "timestamp": time.time() if timestamp is None else float(timestamp),
    }
    return msgpack.packb(raw, default=_encode, use_bin_type=True)


def unpack_message(data: bytes) -> Message:
    """Decode one message; `WireError` (one line) if it is not a well-formed vla-eval message."""
    import msgpack

    try:
        raw = msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WireError(f"cannot decode {len(data)} bytes as msgpack ({text})") from None
    if not isinstance(raw, dict):
        raise WireError(f"a message must be a msgpack map, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise WireError(f"message misses {missing} (has {sorted(map(str, raw))})")
    if raw["type"] not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {raw['type']!r} (one of {', '.join(MESSAGE_TYPES)})")
    if not isinstance(raw["payload"], dict):
        raise WireError(
            f"a {raw['type']} payload must be a map, got {type(raw['payload']).__name__}"
        )
    try:
        return Message(raw["type"], raw["payload"], int(raw["seq"]), float(raw["timestamp"]))
    except (TypeError, ValueError):
        raise WireError(
            f"seq must be an integer and timestamp a number, got {raw['seq']!r} "
            f"and {raw['timestamp']!r}"
        ) from None


def hello_payload(**extra: Any) -> dict[str, Any]:
    """The common hello fields (`messages.make_hello_payload`), ours as the harness version."""
    from worldvla_bench import __version__

    return {
        "harness_version": f"worldvla_bench-{__version__}",
        "protocol_version": PROTOCOL_VERSION,
        **extra,
    }
