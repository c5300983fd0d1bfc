"""The UMAP filter as a job: classifier features of real and synthetic crops → fitted filter → decisions."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .jobs import run_to_end
from .classify import bundle_features
from .label_maps import apply_label_map
from .runtime import OnnxModel
from .umap_filter import UmapGmmFilter


@dataclass
class FilterResult:
    fitted: UmapGmmFilter
    points: np.ndarray  # synthetic samples in UMAP coordinates
    distance: np.ndarray  # Mahalanobis distance to the minority's main component
    keep: np.ndarray  # decision at the fitted level

    def table(self, level: float | None = None) -> dict:
        keep = self.fitted.keep(self.distance, level)
        return {"index": np.arange(len(keep)), "umap_x": self.points[:, 0], "umap_y": self.points[:, 1],
                "distance": np.round(self.distance, 6), "keep": keep}


def real_class_names(model: OnnxModel, labels) -> np.ndarray:
    """Real labels as the classifier's class names (through its label map when it has one)."""
    label_map = model.card.label_map
    if label_map:
        y, classes = apply_label_map(labels, label_map)
        return np.array(classes)[y]
    return np.asarray(labels).astype(str)


def run_filter(model: OnnxModel, real_images: np.ndarray, real_labels, synthetic_images: np.ndarray,
               minority: str, fitted: UmapGmmFilter | None = None, **params) -> Generator:
    """Yields (step, 4) progress; returns a :class:`FilterResult`.  ``fitted`` skips the fit."""
    if minority not in model.card.classes:
        raise ValueError(f"minority {minority!r} is not a class of bundle '{model.card.name}' {model.card.classes}")
    if fitted is not None and fitted.minority_ != minority:
        raise ValueError(f"the loaded filter was fitted for minority {fitted.minority_!r}, not {minority!r}; "
                         f"pass --minority {fitted.minority_} or fit a new filter")
    names = real_class_names(model, real_labels)
    yield 0, 4
    if fitted is None:  # a fitted filter already holds the real data's embedding: no real features needed
        fitted = UmapGmmFilter(minority=minority, **params).fit(run_to_end(bundle_features(model, real_images)), names)
    yield 1, 4
    synthetic = run_to_end(bundle_features(model, synthetic_images))
    yield 2, 4
    yield 3, 4
    points = fitted.transform(synthetic)
    distance = fitted.mahalanobis(points)
    yield 4, 4
    return FilterResult(fitted, points, distance, fitted.keep(distance))

