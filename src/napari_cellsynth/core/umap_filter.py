"""The UMAP manifold filter of paper 004 (sections 2.4, 3.4) as a scikit-learn-style estimator.

``fit`` projects the classifier features of the real data to 2-D with UMAP (seeded), fits a
Gaussian mixture (2 components by default) to the minority class's points and keeps the
component of highest weight.  A synthetic sample is kept when its UMAP point lies inside that
component's confidence ellipse: squared Mahalanobis distance ≤ χ²₂ quantile of the level.

The level defaults to the component's weight in the mixture ("weight"), the paper's rule: a
component that explains 80 % of the rare class gets its 80 % ellipse.

UMAP places new points with ``transform``, which scatters them more than the fit places the
training points (in our tests, real minority samples sent through ``transform`` landed at twice the
Mahalanobis distance they had in the fitted embedding).
So by default (``mixture_on="transform"``) the mixture is fitted to the minority's points as
``transform`` places them, the same map that places the synthetic samples, so that a real sample
of the main component is kept at about the stated level.  ``mixture_on="embedding"`` is the paper's variant.  Any level in (0, 1) may be
given instead, and :meth:`keep` re-decides for another level without refitting.

Saving writes one ``.npz`` (plain arrays and a JSON config, read with ``allow_pickle=False``).
UMAP cannot be stored without pickling, so loading refits it on the saved features with the
saved seed and checks that the embedding is reproduced exactly before any new point is placed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import chi2


class UmapGmmFilter:
    def __init__(self, n_components: int = 2, confidence: float | str = "weight", n_neighbors: int = 15,
                 min_dist: float = 0.1, n_epochs: int | None = None, random_state: int = 0,
                 mixture_on: str = "transform"):
        self.n_components = n_components
        self.confidence = confidence
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.mixture_on = mixture_on

    # -- fitting -------------------------------------------------------------------------------
    def _umap(self):
        import umap

        return umap.UMAP(n_neighbors=self.n_neighbors, min_dist=self.min_dist, n_epochs=self.n_epochs,
                         random_state=self.random_state, n_components=2)

    def fit(self, real_features: np.ndarray, real_labels, minority: str) -> "UmapGmmFilter":
        from sklearn.mixture import GaussianMixture

        features = self._check_matrix(real_features, "real features")
        labels = np.asarray(real_labels).astype(str)
        if len(labels) != len(features):
            raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
        members = labels == str(minority)
        needed = max(5, 3 * self.n_components)
        if members.sum() < needed:
            raise ValueError(f"minority class {minority!r} has {int(members.sum())} real sample(s); the "
                             f"{self.n_components}-component mixture needs at least {needed}: add real samples "
                             "or lower n_components")
        if self.mixture_on not in ("transform", "embedding"):
            raise ValueError(f"mixture_on must be 'transform' or 'embedding', got {self.mixture_on!r}")
        if self.confidence != "weight" and not 0 < float(self.confidence) < 1:
            raise ValueError(f"confidence must be 'weight' or a level in (0, 1), got {self.confidence!r}")
        self.umap_ = self._umap().fit(features)
        self.features_, self.labels_, self.minority_ = features, labels, str(minority)
        self.embedding_ = np.asarray(self.umap_.embedding_, dtype=np.float64)
        gmm = GaussianMixture(self.n_components, covariance_type="full", random_state=self.random_state)
        self.minority_points_ = (np.asarray(self.umap_.transform(features[members]), np.float64)
                                 if self.mixture_on == "transform" else self.embedding_[members])
        gmm.fit(self.minority_points_)
        self._set_mixture(gmm.weights_, gmm.means_, gmm.covariances_)
        return self

    def _set_mixture(self, weights, means, covariances) -> None:
        self.weights_, self.means_, self.covariances_ = (np.asarray(a, np.float64) for a in (weights, means, covariances))
        self.component_ = int(np.argmax(self.weights_))
        self.mean_ = self.means_[self.component_]
        self.covariance_ = self.covariances_[self.component_]
        self.level_ = float(self.weights_[self.component_] if self.confidence == "weight" else self.confidence)
        self.n_features_in_ = self.features_.shape[1]

    # -- using -------------------------------------------------------------------------------
    def _check_matrix(self, features, what: str) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2:
            raise ValueError(f"{what} must be N×D, got shape {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        if hasattr(self, "n_features_in_") and features.shape[1] != self.n_features_in_:
            raise ValueError(f"{what} have {features.shape[1]} columns but the filter was fitted on "
                             f"{self.n_features_in_}; use features from the same classifier bundle")
        return features

    def transform(self, features: np.ndarray) -> np.ndarray:
        """2-D UMAP coordinates of new feature rows (the real embedding stays fixed)."""
        return np.asarray(self.umap_.transform(self._check_matrix(features, "features")), dtype=np.float64)

    def mahalanobis(self, points: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of 2-D UMAP points to the kept component."""
        diff = np.asarray(points, np.float64) - self.mean_
        return np.sqrt(np.einsum("ni,ij,nj->n", diff, np.linalg.inv(self.covariance_), diff))

    def score_samples(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance in UMAP space to the minority's main component (smaller = more typical)."""
        return self.mahalanobis(self.transform(features))

    @staticmethod
    def radius(level: float) -> float:
        """Mahalanobis radius of the 2-D confidence ellipse at ``level``."""
        return float(np.sqrt(chi2.ppf(level, df=2)))

    def keep(self, distances: np.ndarray, level: float | None = None) -> np.ndarray:
        """Keep/drop from distances already computed, at ``level`` (default: the fitted level)."""
        return np.asarray(distances) <= self.radius(self.level_ if level is None else level)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """True for synthetic samples inside the ellipse (kept), False for those dropped."""
        return self.keep(self.score_samples(features))

    def ellipse(self, level: float | None = None, points: int = 200) -> np.ndarray:
        """The ellipse outline in UMAP coordinates (points×2), for plots."""
        values, vectors = np.linalg.eigh(self.covariance_)
        angle = np.linspace(0, 2 * np.pi, points)
        circle = np.stack([np.cos(angle), np.sin(angle)], 1) * self.radius(self.level_ if level is None else level)
        return self.mean_ + circle * np.sqrt(values) @ vectors.T

    # -- persistence ----------------------------------------------------------------------------
    def get_params(self) -> dict:
        return {"n_components": self.n_components, "confidence": self.confidence, "n_neighbors": self.n_neighbors,
                "min_dist": self.min_dist, "n_epochs": self.n_epochs, "random_state": self.random_state, "mixture_on": self.mixture_on}

    def save(self, path: str | Path) -> Path:
        from .atomic import atomic_open

        path = Path(path)
        config = {"params": self.get_params(), "minority": self.minority_, "format": "cellsynth-umap-gmm-1"}
        with atomic_open(path, "wb") as fh:
            np.savez(fh, features=self.features_, labels=self.labels_.astype(str), embedding=self.embedding_,
                     minority_points=self.minority_points_,
                     weights=self.weights_, means=self.means_, covariances=self.covariances_,
                     config=np.array(json.dumps(config)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "UmapGmmFilter":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ValueError as err:
            raise ValueError(f"{path} holds pickled objects, which are refused") from err
        config = json.loads(str(arrays["config"]))
        if config.get("format") != "cellsynth-umap-gmm-1":
            raise ValueError(f"{path} is not a saved UMAP filter")
        self = cls(**config["params"])
        self.features_, self.labels_, self.minority_ = arrays["features"], arrays["labels"], config["minority"]
        self.umap_ = self._umap().fit(self.features_)
        self.embedding_ = np.asarray(self.umap_.embedding_, dtype=np.float64)
        if not np.allclose(self.embedding_, arrays["embedding"], atol=1e-4):
            raise ValueError(f"{path}: refitting UMAP did not reproduce the saved embedding (another umap-learn or "
                             "numba version?); refit the filter on this machine")
        self.minority_points_ = arrays["minority_points"]
        self._set_mixture(arrays["weights"], arrays["means"], arrays["covariances"])
        return self
