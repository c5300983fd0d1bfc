"""Paper 001's mixup, nonlinear mixup and minority-focused sampling."""

import json

import numpy as np
import pytest

from napari_cellsynth.training.data.focused_sampling import FocusedBatches, MinorityPool
from napari_cellsynth.training.data.mixing import mixup, nonlinear_mixup, rotate_channels, rotation_planes


def test_mixup_lambda_stays_in_range_and_mixes_pixelwise():
    rng = np.random.default_rng(0)
    a, b = np.zeros((2000, 3, 4, 4)), np.ones((2000, 3, 4, 4))
    mixed, lam = mixup(a, b, rng)
    assert lam.min() >= 0.15 and lam.max() <= 0.85 and lam.min() < 0.2 and lam.max() > 0.8
    np.testing.assert_allclose(mixed[:, 0, 0, 0], 1 - lam)
    with pytest.raises(ValueError, match="same shape"):
        mixup(a, b[:, :2], rng)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 6])
def test_rotation_keeps_every_pixel_norm(channels):
    images = np.random.default_rng(1).uniform(0, 1000, (20, channels, 8, 8))
    rotated, record = rotate_channels(images, np.random.default_rng(2))
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(images, axis=1), rtol=1e-12)
    if channels == 1:
        np.testing.assert_array_equal(rotated, images)  # a scalar pixel has no plane to turn in
        assert all(r["plane"] is None for r in record)
    else:
        assert not np.allclose(rotated, images)
        for n, r in enumerate(record):  # the channels outside the plane (the axis, for RGB) stay as they were
            untouched = [c for c in range(channels) if c not in r["plane"]]
            np.testing.assert_array_equal(rotated[n, untouched], images[n, untouched])


def test_three_channels_turn_about_one_colour_axis():
    assert rotation_planes(3) == [(0, 1), (0, 2), (1, 2)]  # about B, G and R
    pixel = np.array([[[[3.0]], [[4.0]], [[7.0]]]])  # R, G, B
    rotated, record = rotate_channels(pixel, np.random.default_rng(5))
    i, j = record[0]["plane"]
    theta = record[0]["theta"]
    expected = pixel[0, :, 0, 0].copy()
    expected[i], expected[j] = (np.cos(theta) * pixel[0, i, 0, 0] - np.sin(theta) * pixel[0, j, 0, 0],
                                np.sin(theta) * pixel[0, i, 0, 0] + np.cos(theta) * pixel[0, j, 0, 0])
    np.testing.assert_allclose(rotated[0, :, 0, 0], expected)


def test_nonlinear_mixup_keeps_16_bit_data_in_its_range():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 65536, (50, 3, 8, 8), dtype=np.uint16)
    b = rng.integers(0, 65536, (50, 3, 8, 8), dtype=np.uint16)
    out = nonlinear_mixup(a, b, rng, (0, 65535))
    assert out.dtype == np.uint16 and out.min() >= 0 and out.max() <= 65535
    assert not np.array_equal(out, a)


def pools_and_data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 4096, (200, 3, 8, 8)).astype(np.uint16)
    y = np.repeat(np.arange(4), 50)
    pools = [MinorityPool(3, 2, images[y == 3][:5], rng.integers(0, 4096, (30, 3, 8, 8)).astype(np.uint16)),
             MinorityPool(2, 1, images[y == 2][:5], rng.integers(0, 4096, (30, 3, 8, 8)).astype(np.uint16))]
    norm = {"type": "standardize", "mean": [2048.0] * 3, "std": [1000.0] * 3}
    return images, y, norm, pools


def test_focused_batches_composition():
    """Batch 32 with n = 2 and 1: 2 × 4 + 1 × 4 = 12 synthetic crops, 20 original ones, the size kept."""
    images, y, norm, pools = pools_and_data()
    batches = FocusedBatches(images, y, norm, 32, pools, seed=0)
    assert batches.supplementary == 12 and len(batches) == 10  # 200 originals, 20 a batch
    for x, labels in batches:
        assert x.shape == (32, 3, 8, 8)
        extra = labels[20:].numpy()
        assert (extra == 3).sum() == 8 and (extra == 2).sum() == 4
    only_mixup = FocusedBatches(images, y, norm, 32, pools, seed=0, parts=("mixup",))
    assert only_mixup.supplementary == 3
    with pytest.raises(ValueError, match="leaves no room"):
        FocusedBatches(images, y, norm, 12, pools, seed=0)
    with pytest.raises(ValueError, match="unknown focused-sampling parts"):
        FocusedBatches(images, y, norm, 32, pools, seed=0, parts=("cutmix",))


def test_training_with_focused_sampling_on_real_cells(jurkat_slice, tmp_path):
    """The zoo's DDPM fills the generated slots for M; a short real training runs and records its setting."""
    from napari_cellsynth.core.generate import GenerationSettings, generate
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.training.trainers import classifier as train_classifier

    generated = run_to_end(generate(OnnxModel("zoo:ddpm-jurkat4-cut10-v"),
                                    GenerationSettings("M", 8, "dpm_solver_pp_2m", 10, batch_size=8)))
    np.savez(tmp_path / "gen.npz", images=generated.images, labels=np.array(["M"] * 8))
    metrics = train_classifier.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--epochs", "1",
                                     "--width", "8", "--batch-size", "32", "--focused", "M=2",
                                     "--focused-generated", str(tmp_path / "gen.npz"), "--quiet",
                                     "--out", str(tmp_path / "run")])
    assert 0 <= metrics["macro_f1"] <= 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["args"]["focused"] == ["M=2"]
    with pytest.raises(ValueError, match="no generated crops of G2"):
        train_classifier.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--epochs", "1",
                               "--focused", "G2=1", "--focused-generated", str(tmp_path / "gen.npz"),
                               "--quiet", "--out", str(tmp_path / "run2")])


def test_nonlinear_mixup_in_standard_units_keeps_each_channel_at_its_own_scale():
    """Channels at 1000, 100 and 10 (std 20, 5, 2): turned raw, the bright channel pours into the dim ones; turned in
    per-channel standard units, every channel stays within a few of its own standard deviations (pixel z-norms kept)."""
    rng = np.random.default_rng(0)
    mean, std = np.array([1000.0, 100.0, 10.0]), np.array([20.0, 5.0, 2.0])
    a, b = (np.clip(rng.normal(mean[None, :, None, None], std[None, :, None, None], (64, 3, 8, 8)), 0, 4095)
            .astype(np.uint16) for _ in range(2))
    z = lambda images: (images.astype(np.float64) - mean[None, :, None, None]) / std[None, :, None, None]  # noqa: E731
    raw = nonlinear_mixup(a, b, np.random.default_rng(1), (0, 4095))
    scaled = nonlinear_mixup(a, b, np.random.default_rng(1), (0, 4095), channel_scale=(mean, std))
    assert np.abs(z(raw)).max() > 100
    assert np.abs(z(scaled)).max() < 6
    # a per-channel range clips each channel to its own bounds
    low, high = np.array([900, 80, 0]), np.array([1100, 120, 20])
    clipped = nonlinear_mixup(a, b, np.random.default_rng(1), (low, high), channel_scale=(mean, std))
    assert (clipped.min(axis=(0, 2, 3)) >= low).all() and (clipped.max(axis=(0, 2, 3)) <= high).all()
