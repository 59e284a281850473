"""Both wire decoders (openpi's msgpack-numpy and vla-eval's) check an array's declared size
before allocating it: a positive element size, data of exactly shape x itemsize bytes, and a cap
(issue 28: a 53-byte request made the server allocate 2.15 GB)."""

from __future__ import annotations

import io
import time

import msgpack
import numpy as np
import pytest
from PIL import Image

from worldvla_bench.serving import pack, unpack
from worldvla_bench.serving.vla_eval_wire import WireError, pack_message, unpack_message


def _openpi(data: bytes, dtype: str, shape: list) -> bytes:
    array = {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}
    return msgpack.packb({"state": array}, use_bin_type=True)


def _vla_eval(value: dict) -> bytes:
    return msgpack.packb({"type": "observation", "payload": {"state": value}, "seq": 1,
                          "timestamp": time.time()}, use_bin_type=True)


def _vla_eval_array(data: bytes, dtype: str, shape: list) -> bytes:
    return _vla_eval({"__ndarray__": True, "data": data, "dtype": dtype, "shape": shape})


def test_openpi_arrays_still_round_trip():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(unpack(pack({"a": array}))["a"], array)


def test_openpi_zero_size_elements_are_refused_before_allocating():
    message = _openpi(b"", "|S0", [2**20])  # on main: a 1 MiB array from 0 bytes of data
    assert len(message) < 60
    with pytest.raises(ValueError, match="no element size"):
        unpack(message)


@pytest.mark.parametrize("decode,encode", [
    (unpack, _openpi), (lambda m: unpack_message(m), _vla_eval_array)])
def test_data_must_be_exactly_shape_times_itemsize(decode, encode):
    with pytest.raises(ValueError, match="needs 32 bytes, got 40"):
        decode(encode(bytes(40), "<f8", [4]))  # on main: openpi took the first 32 bytes
    with pytest.raises(ValueError, match="needs 3072 bytes, got 8"):
        decode(encode(bytes(8), "<f8", [2**6, 6]))


@pytest.mark.parametrize("decode,encode", [
    (unpack, _openpi), (lambda m: unpack_message(m), _vla_eval_array)])
def test_arrays_over_the_cap_are_refused(decode, encode, monkeypatch):
    monkeypatch.setenv("WORLDVLA_WIRE_MAX_ARRAY_BYTES", "1000")
    with pytest.raises(ValueError, match="over the cap of 1000"):
        decode(encode(bytes(1024), "|u1", [1024]))
    assert decode(encode(bytes(1000), "|u1", [1000])) is not None


def test_vla_eval_images_over_the_cap_are_refused_before_decoding(monkeypatch):
    png = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(png, format="PNG")
    message = _vla_eval({"__image__": True, "format": "png", "data": png.getvalue(),
                         "shape": [64, 64, 3]})
    assert unpack_message(message).payload["state"].shape == (64, 64, 3)
    monkeypatch.setenv("WORLDVLA_WIRE_MAX_ARRAY_BYTES", "1000")
    with pytest.raises(WireError, match="64x64 px is over the array cap"):
        unpack_message(message)


def test_vla_eval_messages_still_round_trip():
    array = np.arange(6, dtype=np.int16)
    decoded = unpack_message(pack_message("observation", {"a": array}, seq=3))
    np.testing.assert_array_equal(decoded.payload["a"], array)
