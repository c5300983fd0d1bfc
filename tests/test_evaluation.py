import numpy as np
import pytest

from napari_cellsynth._sample_data import load_jurkat_sample
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.classify import bundle_features
from napari_cellsynth.training.reports.generator_metrics import (frechet_distance, kernel_inception_distance,
                                                         plot_ssim_density, ssim_max)
from napari_cellsynth.core.runtime import OnnxModel


def test_frechet_distance_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0, 0], [1.0, 2.0, 0.5], size=(200_000, 3))
    b = rng.normal([1, 0, -2], [2.0, 2.0, 0.5], size=(200_000, 3))
    # diagonal covariances: |μa - μb|² + Σ (σa - σb)² = 5 + 1
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    shifted = rng.normal(0.5, 1, size=(1000, 16))
    same, _ = kernel_inception_distance(a, b)
    different, _ = kernel_inception_distance(a, shifted)
    assert abs(same) < 0.01 < different
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, shifted[:, :8])


def test_ssim_max_finds_copies_and_candidates_agree_with_exhaustive(tmp_path):
    cells = load_jurkat_sample()["images"].astype(np.float64)
    train, synthetic = cells[:120], cells[[5, 50]] + 0.0
    synthetic[1] = cells[150]  # not in the training set
    best, index = run_to_end(ssim_max(synthetic, train, data_range=float(cells.max() - cells.min())))
    assert best[0] == pytest.approx(1.0) and index[0] == 5
    assert best[1] < 1.0
    exhaustive, _ = run_to_end(ssim_max(synthetic, train, float(cells.max() - cells.min()), candidates=None))
    np.testing.assert_allclose(best, exhaustive)
    plot_ssim_density({"copies": best, "exhaustive": exhaustive}, tmp_path / "ssim.png")
    assert (tmp_path / "ssim.png").stat().st_size > 1000


def test_classifier_features_separate_real_cells_from_noise(classifier_bundle):
    model = OnnxModel(classifier_bundle, kind="classifier")
    cells = load_jurkat_sample()["images"]
    real_a = run_to_end(bundle_features(model, cells[::2]))
    real_b = run_to_end(bundle_features(model, cells[1::2]))
    rng = np.random.default_rng(0)
    noise = rng.permutation(cells.reshape(-1)).reshape(cells.shape)[: len(real_b)]  # same pixels, no cells
    fake = run_to_end(bundle_features(model, noise))
    assert frechet_distance(real_a, real_b) < 0.5 * frechet_distance(real_a, fake)
