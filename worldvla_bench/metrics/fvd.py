"""Fréchet Video Distance (FVD), computed as the reference implementations do.

FVD is the Fréchet distance between Gaussians fitted to Kinetics-400 I3D logits of two sets
of clips (Unterthiner et al., 2019). Numbers are only comparable when the *convention* matches,
so the variants are named and never mixed silently:

``"tf"`` (default) — google-research ``frechet_video_distance`` + TF-GAN:
    frames -> TF1 ``tf.image.resize_bilinear`` to 224x224 (``align_corners=False``, which in
    TF1 means *legacy* pixel mapping ``src = dst * in/out``, **not** torch's half-pixel
    ``align_corners=False``; no antialiasing, no crop) -> ``2 * x / 255 - 1`` -> I3D logits;
    Fréchet distance in float64 with unbiased covariances (``/ (N - 1)``), no epsilon, and
    TF-GAN's symmetric square root ``trace(sqrt(sqrt(S1) S2 sqrt(S1)))`` (eigen-decomposition;
    eigenvalues below 1e-10 are not square-rooted, as in TF-GAN).

``"rynnvla"`` (alias ``"worldvla"``) — RynnVLA-002 ``calculate_world_model_performance.py``:
    frames -> OpenCV ``INTER_AREA`` resize to 256x256 (uint8, as decoded from mp4) -> the
    StyleGAN-V I3D TorchScript with ``rescale=True, resize=True``: resize to 224x224 with
    half-pixel bilinear (trilinear on (T, 224, 224) with T unchanged, ``align_corners=False``,
    no antialiasing) and rescale to [-1, 1]; biased covariances (``/ N``) with ``1e-6`` added
    to both diagonals; ``trace(real(scipy.linalg.sqrtm(S_a @ S_b)))``. The TorchScript's
    internal resize is not inspectable here (its weights are not shipped); it is taken to be
    the StyleGAN-V export's trilinear ``align_corners=False`` resize. RynnVLA's clip
    selection (skip clips of <= 21 frames, truncate pairs to a common length) is the caller's.

Both conventions feed the same network: the Kinetics-400 I3D of :mod:`.i3d`. Inputs are videos
``(N, T, H, W, 3)``: ``uint8`` in [0, 255] or float in [0, 1] (numpy or torch), RGB,
``T >= 9``. Features are the 400 pre-softmax I3D logits averaged over time. Distances are
returned as float64 (TF-GAN casts its result to float32).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from worldvla_bench.metrics.frechet import as_features, frechet_distance
from worldvla_bench.metrics.i3d import MIN_FRAMES, InceptionI3d, _cached_model
from worldvla_bench.metrics.resize import (  # noqa: F401 - re-exported
    _area_resize_uint8,
    area_resize,
    resize_bilinear,
)
from worldvla_bench.registry import Registry

__all__ = [
    "FVDInterval",
    "FVDConvention",
    "FVDResult",
    "MIN_CLIPS_RECOMMENDED",
    "FVD_CONVENTIONS",
    "SmallSampleWarning",
    "area_resize",
    "frechet_distance",
    "fvd",
    "fvd_bootstrap",
    "fvd_from_features",
    "get_fvd_convention",
    "i3d_features",
    "preprocess_videos",
    "resize_bilinear",
]

#: Below this many clips per set FVD is strongly biased; :func:`fvd` warns.
MIN_CLIPS_RECOMMENDED = 256
I3D_SIZE = (224, 224)

ArrayLike = np.ndarray | torch.Tensor


class SmallSampleWarning(UserWarning):
    """FVD computed from fewer than :data:`MIN_CLIPS_RECOMMENDED` clips per set."""


@dataclass(frozen=True)
class FVDConvention:
    """Every choice that changes an FVD number.

    Attributes:
        name: canonical convention name.
        pre_resize: (H, W) for an OpenCV ``INTER_AREA`` resize applied first, or None.
        half_pixel_centers: pixel mapping of the bilinear resize to 224x224: False is TF1's
            legacy ``resize_bilinear`` (``src = dst * in/out``), True is torch's
            ``align_corners=False`` (``src = (dst + 0.5) * in/out - 0.5``).
        cov_ddof: covariance denominator ``N - cov_ddof`` (1: unbiased, 0: biased).
        cov_eps: added to both covariance diagonals before the square root.
        sqrtm: ``"eigh"`` (TF-GAN symmetric form) or ``"scipy"`` (``real(sqrtm(S_a @ S_b))``).
    """

    name: str
    pre_resize: tuple[int, int] | None
    half_pixel_centers: bool
    cov_ddof: int
    cov_eps: float
    sqrtm: Literal["eigh", "scipy"]


#: FVD conventions by name (`worldvla` is the RynnVLA-002 evaluator the WorldVLA authors released).
#: (The registry's label stays "FVD protocol": its error messages are user-facing text.)
FVD_CONVENTIONS: Registry[FVDConvention] = Registry(
    "FVD protocol", check=lambda obj: isinstance(obj, FVDConvention))
FVD_CONVENTIONS.register("tf", FVDConvention("tf", None, False, 1, 0.0, "eigh"))
FVD_CONVENTIONS.register("rynnvla", FVDConvention("rynnvla", (256, 256), True, 0, 1e-6, "scipy"))
FVD_CONVENTIONS.register("worldvla", FVD_CONVENTIONS["rynnvla"], help="alias of rynnvla")


def get_fvd_convention(convention: str | FVDConvention) -> FVDConvention:
    """Resolve a convention name (``"tf"``, ``"rynnvla"``, ``"worldvla"``) or pass one through."""
    if isinstance(convention, FVDConvention):
        return convention
    return FVD_CONVENTIONS.load(convention)


@dataclass(frozen=True)
class FVDResult:
    """An FVD value with what is needed to interpret it.

    ``value`` is the Fréchet distance (float64; the TF reference prints it cast to float32),
    ``n_a``/``n_b`` the number of clips in each set.
    """

    value: float
    n_a: int
    n_b: int
    convention: str

    @property
    def n(self) -> int:
        """Clips in the smaller set (the sample size that drives FVD's bias)."""
        return min(self.n_a, self.n_b)

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class FVDInterval:
    """Percentile bootstrap interval of FVD (clips resampled with replacement in each set)."""

    value: float
    low: float
    high: float
    confidence: float
    n_boot: int
    convention: str


# ------------------------------------------------------------------------ video handling


def _as_tensor(videos: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(videos, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(videos))
    elif isinstance(videos, torch.Tensor):
        tensor = videos.detach()
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(videos)}")
    if tensor.ndim != 5 or tensor.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (N, T, H, W, 3) (RGB, channels last), "
            f"got {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} contains no clips")
    if tensor.shape[1] < MIN_FRAMES:
        raise ValueError(
            f"FVD needs clips of at least {MIN_FRAMES} frames (I3D pools time 8x); "
            f"{name} has clips of {tensor.shape[1]} frames"
        )
    if tensor.dtype == torch.uint8:
        return tensor
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be uint8 in [0, 255] or float in [0, 1], not {tensor.dtype}")
    lo, hi = float(tensor.min()), float(tensor.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"float {name} must be in [0, 1] (got values in [{lo:.4g}, {hi:.4g}]); "
            "pass uint8 for [0, 255] data"
        )
    return tensor


def preprocess_videos(
    videos: ArrayLike,
    convention: str | FVDConvention = "tf",
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Turn ``(N, T, H, W, 3)`` videos into I3D input ``(N, 3, T, 224, 224)`` in [-1, 1].

    uint8 input is handled on the 0..255 scale as the references do (TF: resize, then
    ``2 * x / 255 - 1``); float input in [0, 1] is resized, then mapped with ``2 * x - 1``.
    """
    conv = get_fvd_convention(convention)
    x = _as_tensor(videos, "videos").to(device)
    n, t, h, w, c = x.shape
    frames = x.reshape(n * t, h, w, c)
    is_uint8 = frames.dtype == torch.uint8
    if conv.pre_resize is not None:
        frames = area_resize(frames, conv.pre_resize)
        if is_uint8:  # the reference decodes to uint8, resizes, then divides by 255
            frames = frames.to(dtype) / 255.0
            is_uint8 = False
    frames = frames.to(dtype).permute(0, 3, 1, 2)  # (B, C, H, W)
    frames = resize_bilinear(frames, I3D_SIZE, half_pixel_centers=conv.half_pixel_centers)
    frames = 2.0 * frames / 255.0 - 1.0 if is_uint8 else frames * 2.0 - 1.0
    frames = frames.reshape(n, t, c, *I3D_SIZE).permute(0, 2, 1, 3, 4)
    return frames.contiguous()


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.inference_mode()
def i3d_features(
    videos: ArrayLike,
    convention: str | FVDConvention = "tf",
    *,
    batch_size: int = 8,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    model: InceptionI3d | None = None,
) -> np.ndarray:
    """I3D Kinetics-400 logits (pre-softmax, averaged over time) of each clip.

    Args:
        videos: ``(N, T, H, W, 3)`` uint8 [0, 255] or float [0, 1], numpy or torch, T >= 9.
        convention: preprocessing convention (see module docstring).
        batch_size: clips per forward pass (peak memory about 3.5 MB per frame in float32).
        dtype: compute dtype of preprocessing and network (float64 for reference checks).
        device: torch device.
        model: a loaded :class:`InceptionI3d` to use instead of the cached default.

    Returns:
        ``(N, 400)`` array in ``dtype``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    conv = get_fvd_convention(convention)
    x = _as_tensor(videos, "videos")
    net = model if model is not None else _cached_model(dtype, str(torch.device(device)))
    out = []
    for part in _chunks(x.shape[0], batch_size):
        batch = preprocess_videos(x[part], conv, dtype=dtype, device=device)
        out.append(net(batch).cpu())
    return torch.cat(out).numpy()


def _convention_distance(a: np.ndarray, b: np.ndarray, conv: FVDConvention) -> float:
    return frechet_distance(a, b, ddof=conv.cov_ddof, eps=conv.cov_eps, sqrtm=conv.sqrtm)


def _warn_small(n_a: int, n_b: int) -> None:
    if min(n_a, n_b) < MIN_CLIPS_RECOMMENDED:
        warnings.warn(
            f"FVD from {n_a} and {n_b} clips: fewer than {MIN_CLIPS_RECOMMENDED} clips per set "
            "makes FVD strongly biased and noisy; compare only numbers with equal N.",
            SmallSampleWarning,
            stacklevel=3,
        )


def fvd_from_features(
    feats_a: ArrayLike, feats_b: ArrayLike, convention: str | FVDConvention = "tf"
) -> FVDResult:
    """FVD from precomputed I3D features with the convention's Fréchet-distance settings."""
    conv = get_fvd_convention(convention)
    a, b = as_features(feats_a, "feats_a"), as_features(feats_b, "feats_b")
    _warn_small(a.shape[0], b.shape[0])
    return FVDResult(_convention_distance(a, b, conv), a.shape[0], b.shape[0], conv.name)


def fvd(
    videos_a: ArrayLike,
    videos_b: ArrayLike,
    convention: str | FVDConvention = "tf",
    *,
    batch_size: int = 8,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    model: InceptionI3d | None = None,
) -> FVDResult:
    """FVD between two sets of videos ``(N, T, H, W, 3)`` (uint8 or float in [0, 1]).

    ``videos_a`` is the reference ("real") set, ``videos_b`` the generated one (the order
    only matters at rounding level). Warns with :class:`SmallSampleWarning` if either set
    has fewer than 256 clips; raises ``ValueError`` for clips shorter than 9 frames.
    """
    conv = get_fvd_convention(convention)
    a = _as_tensor(videos_a, "videos_a")
    b = _as_tensor(videos_b, "videos_b")
    _warn_small(a.shape[0], b.shape[0])
    kwargs = dict(batch_size=batch_size, dtype=dtype, device=device, model=model)
    feats_a = i3d_features(a, conv, **kwargs)
    feats_b = i3d_features(b, conv, **kwargs)
    value = _convention_distance(
        as_features(feats_a, "feats_a"), as_features(feats_b, "feats_b"), conv
    )
    return FVDResult(value, a.shape[0], b.shape[0], conv.name)


def fvd_bootstrap(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    convention: str | FVDConvention = "tf",
    *,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> FVDInterval:
    """Percentile bootstrap interval for FVD from precomputed features.

    Each replicate resamples the clips of both sets with replacement. Note that FVD is a
    biased estimator and resampling duplicates clips, so the interval describes sampling
    variability around a biased value; use it to compare runs with equal N.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    conv = get_fvd_convention(convention)
    a, b = as_features(feats_a, "feats_a"), as_features(feats_b, "feats_b")
    value = _convention_distance(a, b, conv)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        ia = rng.integers(0, a.shape[0], a.shape[0])
        ib = rng.integers(0, b.shape[0], b.shape[0])
        reps[i] = _convention_distance(a[ia], b[ib], conv)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(reps, [tail, 100.0 - tail])
    return FVDInterval(value, float(low), float(high), confidence, n_boot, conv.name)
