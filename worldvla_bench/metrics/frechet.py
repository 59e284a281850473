"""The Fréchet distance between Gaussians fitted to two feature sets, as TF-GAN and scipy compute
it (FVD's distance; see `worldvla_bench.metrics.fvd` for the conventions that set its options)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg
import torch

ArrayLike = np.ndarray | torch.Tensor


def _tf_sqrt(values: np.ndarray, eps: float) -> np.ndarray:
    """TF-GAN's spectral map: sign(v)*sqrt(|v|), but values with |v| < eps kept as is."""
    mag = np.abs(values)
    return np.where(mag < eps, values, np.sign(values) * np.sqrt(mag))


def _symmetric_sqrt(mat: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    w, v = np.linalg.eigh((mat + mat.T) / 2.0)
    return (v * _tf_sqrt(w, eps)) @ v.T


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray, method: str) -> float:
    """``trace(sqrt(sigma_a @ sigma_b))``."""
    if method == "eigh":
        root_a = _symmetric_sqrt(sigma_a)
        inner = root_a @ sigma_b @ root_a
        return float(np.sum(_tf_sqrt(np.linalg.eigvalsh((inner + inner.T) / 2.0), 1e-10)))
    if method == "scipy":
        root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
        return float(np.trace(np.real(root)))
    raise ValueError(f"unknown sqrtm method {method!r} (use 'eigh' or 'scipy')")


def as_features(feats: ArrayLike, name: str) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def frechet_distance(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    *,
    ddof: int = 1,
    eps: float = 0.0,
    sqrtm: Literal["eigh", "scipy"] = "eigh",
) -> float:
    """Fréchet distance ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrt(S_a S_b))`` of two sets.

    Means and covariances are computed in float64 from ``(N, D)`` features.

    Args:
        ddof: covariance denominator ``N - ddof``; 1 (unbiased, TF-GAN) or 0 (biased).
        eps: added to both covariance diagonals (0 for TF, 1e-6 for RynnVLA).
        sqrtm: ``"eigh"``: ``tr(sqrt(sqrt(S_a) S_b sqrt(S_a)))`` with symmetric eigen
            square roots exactly as TF-GAN (eigenvalues < 1e-10 kept unrooted);
            ``"scipy"``: ``tr(real(scipy.linalg.sqrtm(S_a @ S_b)))``.

    Returns:
        The distance (in squared logit units), as a Python float.
    """
    a, b = as_features(feats_a, "feats_a"), as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    for name, arr in (("feats_a", a), ("feats_b", b)):
        if arr.shape[0] - ddof < 1:
            raise ValueError(f"{name} needs more than {ddof} rows for ddof={ddof}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca, cb = a - mu_a, b - mu_b
    sigma_a = ca.T @ ca / (a.shape[0] - ddof)
    sigma_b = cb.T @ cb / (b.shape[0] - ddof)
    if eps:
        sigma_a = sigma_a + eps * np.eye(a.shape[1])
        sigma_b = sigma_b + eps * np.eye(b.shape[1])
    trace_sqrt = _trace_sqrt_product(sigma_a, sigma_b, sqrtm)
    mean_term = float(np.sum(np.square(mu_a - mu_b)))
    return mean_term + float(np.trace(sigma_a) + np.trace(sigma_b)) - 2.0 * trace_sqrt
