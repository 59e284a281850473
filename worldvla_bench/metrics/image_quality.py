"""Per-frame SSIM and PSNR, with the settings of Wang et al. (2004) through scikit-image.

Conventions (shared with :mod:`worldvla_bench.metrics.lpips_metric`):

* Frames are RGB, channels-last, shape ``(N, H, W, 3)``, given as a numpy array or a torch
  tensor. ``uint8`` frames are in [0, 255] and are divided by 255; floating-point frames must
  already be in [0, 1] (values outside raise ``ValueError``; clip predictions first).
* Both metrics are computed on [0, 1] floats (float64) with ``data_range=1.0`` and are returned
  per frame as a float64 numpy array of shape ``(N,)``.
* SSIM: ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1.0, channel_axis=-1)``, i.e. an 11x11 Gaussian window (sigma 1.5, truncated at
  3.5 sigma), population covariances, K1=0.01, K2=0.03, the mean SSIM over the valid region and
  over the three channels. Unitless, in [-1, 1]; 1 for identical frames.
* PSNR in dB: ``peak_signal_noise_ratio(data_range=1.0)`` = ``10 log10(1 / MSE)`` with the MSE
  over all pixels and channels of one frame. Identical frames have MSE 0 and PSNR ``inf``; that
  is returned as ``inf`` (no warning) unless ``max_db`` is given, which caps every value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "SSIM_WIN_SIZE",
    "check_frame_pair",
    "psnr_frames",
    "ssim_frames",
    "to_unit_float_frames",
]

#: Side of the Gaussian SSIM window used by scikit-image for sigma=1.5 (truncate=3.5).
SSIM_WIN_SIZE = 11
_RANGE_TOL = 1e-6


def _as_numpy(frames: Any, name: str) -> np.ndarray:
    """Return ``frames`` as a numpy array (torch tensors are detached and moved to CPU)."""
    if isinstance(frames, np.ndarray):
        return frames
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the project
        torch = None  # type: ignore[assignment]
    if torch is not None and isinstance(frames, torch.Tensor):
        if frames.dtype == torch.bfloat16:
            frames = frames.float()
        return frames.detach().cpu().numpy()
    raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(frames).__name__}")


def check_frame_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of frame batches; return them as numpy arrays (dtype unchanged).

    Raises ``ValueError`` for a shape other than ``(N, H, W, 3)``, empty batches or frames,
    mismatched shapes, unsupported dtypes, NaN/inf, or float values outside [0, 1].
    """
    arrays = []
    for name, frames in (("pred", pred), ("target", target)):
        a = _as_numpy(frames, name)
        if a.ndim != 4:
            raise ValueError(
                f"{name}: expected frames of shape (N, H, W, 3), got {a.ndim}-D shape {a.shape}"
            )
        if a.shape[-1] != 3:
            raise ValueError(
                f"{name}: expected 3 RGB channels in the last axis (N, H, W, 3), got "
                f"{a.shape[-1]} channels in shape {a.shape}"
            )
        if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
            raise ValueError(f"{name}: empty frame batch, shape {a.shape}")
        if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
            raise ValueError(
                f"{name}: frames must be uint8 in [0, 255] or float in [0, 1], got dtype {a.dtype}"
            )
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ValueError(f"{name}: frames contain NaN or inf")
            lo, hi = float(a.min()), float(a.max())
            if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
                raise ValueError(
                    f"{name}: float frames must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                    " (divide [0, 255] data by 255, map [-1, 1] data with (x + 1) / 2, or clip)"
                )
        arrays.append(a)
    p, t = arrays
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    return p, t


def to_unit_float_frames(frames: np.ndarray) -> np.ndarray:
    """Validated frames -> float64 in [0, 1] (uint8 / 255; floats clipped by at most 1e-6)."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float64) / 255.0
    return np.clip(frames.astype(np.float64), 0.0, 1.0)


def ssim_frames(pred: Any, target: Any) -> np.ndarray:
    """Per-frame SSIM (unitless, in [-1, 1]) of ``(N, H, W, 3)`` frames; float64 ``(N,)``.

    Wang et al. settings (Gaussian 11x11 window, sigma 1.5, population covariance,
    ``data_range=1.0`` on [0, 1] frames), averaged over the three channels. H and W must be at
    least 11 (the window size).
    """
    p, t = check_frame_pair(pred, target)
    if min(p.shape[1], p.shape[2]) < SSIM_WIN_SIZE:
        raise ValueError(
            f"SSIM needs frames of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels "
            f"(Gaussian window), got {p.shape[1]}x{p.shape[2]}"
        )
    p, t = to_unit_float_frames(p), to_unit_float_frames(t)
    out = np.empty(p.shape[0], dtype=np.float64)
    for k in range(p.shape[0]):
        out[k] = structural_similarity(
            p[k],
            t[k],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
    return out


def psnr_frames(pred: Any, target: Any, *, max_db: float | None = None) -> np.ndarray:
    """Per-frame PSNR in dB of ``(N, H, W, 3)`` frames on [0, 1]; float64 ``(N,)``.

    ``10 * log10(1 / MSE)`` per frame (MSE over H, W and channels). Identical frames give
    ``inf``; pass ``max_db`` (e.g. 100.0) to cap all values, which keeps means finite.
    """
    p, t = check_frame_pair(pred, target)
    p, t = to_unit_float_frames(p), to_unit_float_frames(t)
    out = np.empty(p.shape[0], dtype=np.float64)
    with np.errstate(divide="ignore"):
        for k in range(p.shape[0]):
            out[k] = peak_signal_noise_ratio(t[k], p[k], data_range=1.0)
    if max_db is not None:
        out = np.minimum(out, float(max_db))
    return out
