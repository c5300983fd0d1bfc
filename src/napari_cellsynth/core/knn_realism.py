"""k-NN realism of synthetic samples in a feature space (Kynkäänniemi et al. 2019, "Improved precision and recall
metric for assessing generative models").

Each real sample's neighbourhood is the ball reaching its k-th nearest real neighbour.  A synthetic sample is
realistic when it falls inside at least one real ball; its realism score is ``max_r radius_k(r) / ‖g − r‖`` (≥ 1
inside some ball).  Precision is the share of synthetic samples inside the real balls, recall the share of real
samples inside the synthetic samples' balls.

As a filter (:class:`KnnRealism`), the score uses only the real samples whose k-NN radius is at most the median (the
paper's realism score drops the half with the largest balls: a few outliers' wide balls would otherwise take in
almost anything).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted


def kth_neighbour_radius(X: np.ndarray, k: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row."""
    k = min(k, len(X) - 1)
    if k < 1:
        raise ValueError(f"k-NN realism needs at least 2 real samples, got {len(X)}")
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    return distances[:, k]


class KnnRealism(OutlierMixin, BaseEstimator):
    """Keep (+1) the synthetic samples that fall inside the real samples' k-NN balls, drop (−1) the others."""

    def __init__(self, k: int = 3, radius_quantile: float | None = 0.5):
        self.k = k
        self.radius_quantile = radius_quantile

    def fit(self, X: np.ndarray, y=None) -> "KnnRealism":
        X = np.asarray(X, np.float64)
        radius = kth_neighbour_radius(X, self.k)
        kept = radius <= np.quantile(radius, self.radius_quantile) if self.radius_quantile is not None else ...
        self.real_, self.radius_ = X[kept], radius[kept]
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """The realism score: ``max_r radius_k(r) / ‖x − r‖`` over the real samples r (≥ 1 inside some ball)."""
        check_is_fitted(self)
        X = np.asarray(X, np.float64)
        squared = ((X ** 2).sum(1)[:, None] + (self.real_ ** 2).sum(1)[None] - 2 * X @ self.real_.T).clip(0)
        distance = np.sqrt(squared)
        return (self.radius_[None] / np.maximum(distance, 1e-12)).max(axis=1)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.score_samples(X) - 1.0

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.where(self.score_samples(X) >= 1.0, 1, -1)


def precision_recall(real: np.ndarray, synthetic: np.ndarray, k: int = 3) -> dict[str, float]:
    """Kynkäänniemi's precision (synthetic inside real balls) and recall (real inside synthetic balls), with Naeem et
    al. 2020's density and coverage beside them."""
    real, synthetic = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    precision = float((KnnRealism(k, None).fit(real).predict(synthetic) == 1).mean())
    recall = float((KnnRealism(k, None).fit(synthetic).predict(real) == 1).mean())
    radius = kth_neighbour_radius(real, k)
    distance = np.sqrt(((synthetic ** 2).sum(1)[:, None] + (real ** 2).sum(1)[None]
                        - 2 * synthetic @ real.T).clip(0))  # synthetic × real
    inside = distance <= radius[None]
    density = float(inside.sum() / (min(k, len(real) - 1) * len(synthetic)))
    coverage = float(inside.any(axis=0).mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}
