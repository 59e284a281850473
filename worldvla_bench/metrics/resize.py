"""Resampling exactly as the FVD references do it, so that I3D sees the same pixels.

- `resize_bilinear`: TF1 `tf.image.resize_bilinear` (legacy pixel mapping `src = dst * in/out`,
  float32 taps, TF's evaluation order; the TF FVD original) or torch's half-pixel bilinear
  (`align_corners=False`; the StyleGAN-V I3D's internal resize). No antialiasing: neither
  reference antialiases.
- `area_resize`: OpenCV `cv2.resize(..., interpolation=INTER_AREA)` on uint8 frames, as
  RynnVLA-002's evaluator resizes to 256x256 before its I3D.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _legacy_bilinear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, ...]:
    """TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False) taps.

    Like TF's kernel, the scale, source coordinates and lerp weights are float32:
    ``in = float(i) * (in_size / float(out_size))``, lower ``floor(in)``, upper
    ``min(ceil(in), in_size - 1)``, lerp ``in - floor(in)``.
    """
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    floor = torch.floor(src)
    lo = floor.to(torch.int64)
    hi = torch.clamp(torch.ceil(src).to(torch.int64), max=in_size - 1)
    return lo, hi, src - floor


def resize_bilinear(
    frames: torch.Tensor, size: tuple[int, int], *, half_pixel_centers: bool
) -> torch.Tensor:
    """Bilinear resize of ``(B, C, H, W)`` float frames to ``size`` = (H', W'), no antialias.

    ``half_pixel_centers=False`` reproduces TF1 ``tf.image.resize_bilinear`` (the FVD
    reference) including its evaluation order ``top + (bottom - top) * y_lerp`` with
    ``top = left + (right - left) * x_lerp``. ``True`` is ``F.interpolate(mode="bilinear",
    align_corners=False, antialias=False)``. Neither antialiases: the references do not.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if half_pixel_centers:
        return F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    (h, w), dtype = frames.shape[-2:], frames.dtype
    y0, y1, ly = _legacy_bilinear_taps(int(h), size[0])
    x0, x1, lx = _legacy_bilinear_taps(int(w), size[1])
    ly = ly.to(dtype).view(-1, 1)
    lx = lx.to(dtype)
    dev = frames.device
    y0, y1, x0, x1 = (t.to(dev) for t in (y0, y1, x0, x1))
    top_rows, bottom_rows = frames[..., y0, :], frames[..., y1, :]
    top_left, top_right = top_rows[..., x0], top_rows[..., x1]
    bottom_left, bottom_right = bottom_rows[..., x0], bottom_rows[..., x1]
    lx, ly = lx.to(dev), ly.to(dev)
    top = top_left + (top_right - top_left) * lx
    bottom = bottom_left + (bottom_right - bottom_left) * lx
    return top + (bottom - top) * ly


def _cv2_area_tab(in_size: int, out_size: int) -> np.ndarray:
    """OpenCV ``computeResizeAreaTab`` as a dense (out_size, in_size) float32 matrix."""
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for dx in range(out_size):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, in_size - fsx1)
        sx2 = min(math.floor(fsx2), in_size - 1)
        sx1 = min(math.ceil(fsx1), sx2)
        if sx1 - fsx1 > 1e-3:
            weights[dx, sx1 - 1] = (sx1 - fsx1) / cell
        weights[dx, sx1:sx2] = 1.0 / cell
        if fsx2 - sx2 > 1e-3:
            weights[dx, sx2] = min(min(fsx2 - sx2, 1.0), cell) / cell
    return weights.astype(np.float32)


def _cv2_linear_area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-tap (index, float32 weight of index + 1) kernel OpenCV uses for INTER_AREA when
    the image grows along some axis."""
    scale, inv_scale = 1.0 / (out_size / in_size), out_size / in_size
    index = np.zeros(out_size, dtype=np.int64)
    frac = np.zeros(out_size, dtype=np.float32)
    for dx in range(out_size):
        sx = math.floor(dx * scale)
        fx = float(np.float32((dx + 1) - (sx + 1) * inv_scale))
        fx = 0.0 if fx <= 0 else fx - math.floor(fx)
        if sx < 0:
            sx, fx = 0, 0.0
        if sx >= in_size - 1:
            sx, fx = in_size - 1, 0.0
        index[dx], frac[dx] = sx, fx
    return index, frac


def _taps_matrix(index: np.ndarray, frac: np.ndarray, in_size: int) -> np.ndarray:
    weights = np.zeros((index.size, in_size), dtype=np.float64)
    rows = np.arange(index.size)
    weights[rows, index] += 1.0 - frac.astype(np.float64)
    weights[rows, np.minimum(index + 1, in_size - 1)] += frac
    return weights


def _area_resize_uint8(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_AREA of uint8 ``(B, H, W, C)`` frames without OpenCV.

    Mirrors OpenCV's integer arithmetic: the 2x2 block mean ``(sum + 2) >> 2``, other integer
    factors ``round(sum * (1/area))``, fractional shrinking with float32 area weights, and
    growing with 11-bit fixed-point taps and the SIMD vertical pass
    ``((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2``.
    """
    (h, w), (oh, ow) = frames.shape[1:3], size
    x = frames.astype(np.int64)
    if h >= oh and w >= ow:
        sy, sx = h / oh, w / ow
        if sy.is_integer() and sx.is_integer():
            iy, ix = int(sy), int(sx)
            block = x.reshape(x.shape[0], oh, iy, ow, ix, x.shape[-1]).sum(axis=(2, 4))
            if iy == 2 and ix == 2:
                return ((block + 2) >> 2).astype(np.uint8)
            out = block.astype(np.float32) * np.float32(1.0 / (iy * ix))
        else:
            wy = _cv2_area_tab(h, oh).astype(np.float64)
            wx = _cv2_area_tab(w, ow).astype(np.float64)
            out = np.einsum("yh,bhwc,xw->byxc", wy, x.astype(np.float64), wx, optimize=True)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    iy, fy = _cv2_linear_area_taps(h, oh)
    ix, fx = _cv2_linear_area_taps(w, ow)
    ax = np.rint(_taps_matrix(ix, fx, w).astype(np.float32) * 2048).astype(np.int64)
    by0 = np.rint((1.0 - fy) * np.float32(2048)).astype(np.int64)
    by1 = np.rint(fy * np.float32(2048)).astype(np.int64)
    rows = np.einsum("bhwc,xw->bhxc", x, ax) >> 4
    top = rows[:, iy] * by0[None, :, None, None] >> 16
    bottom = rows[:, np.minimum(iy + 1, h - 1)] * by1[None, :, None, None] >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def area_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """OpenCV ``cv2.resize(..., interpolation=INTER_AREA)`` of ``(B, H, W, C)`` frames.

    ``uint8`` frames go through OpenCV itself when it is importable (the reference's own
    call); otherwise OpenCV's arithmetic is emulated: bit-exact against OpenCV 4.x (x86) for
    integer shrink factors and for growing, within 1 grey level on ~1e-5 of the pixels for
    fractional shrink factors (float32 summation order). Float frames are resized in their
    own dtype with OpenCV's weights and not rounded.
    """
    h, w = int(frames.shape[1]), int(frames.shape[2])
    if (h, w) == tuple(size):
        return frames
    if frames.dtype == torch.uint8:
        arr = frames.cpu().numpy()
        try:
            import cv2
        except ImportError:
            return torch.from_numpy(_area_resize_uint8(arr, size)).to(frames.device)
        out = [
            cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA).reshape(
                size[0], size[1], -1
            )
            for f in arr
        ]
        return torch.from_numpy(np.stack(out)).to(frames.device)
    if h >= size[0] and w >= size[1]:
        wy, wx = _cv2_area_tab(h, size[0]), _cv2_area_tab(w, size[1])
    else:
        wy = _taps_matrix(*_cv2_linear_area_taps(h, size[0]), h)
        wx = _taps_matrix(*_cv2_linear_area_taps(w, size[1]), w)
    ty = torch.from_numpy(wy).to(frames.device, frames.dtype)
    tx = torch.from_numpy(wx).to(frames.device, frames.dtype)
    return torch.einsum("yh,bhwc,xw->byxc", ty, frames, tx)
