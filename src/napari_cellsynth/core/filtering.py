"""The UMAP filter as a job: classifier features of real and synthetic crops → fitted filter → decisions."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .classify import bundle_features
from .jobs import CancelToken, scaled
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
    label_map = model.card.trained.label_map
    if label_map:
        y, classes = apply_label_map(labels, label_map)
        return np.array(classes)[y]
    return np.asarray(labels).astype(str)


# one scale for the filter's progress: fitting, then placing the synthetic crops
PLACE, TOTAL = 900, 1000


def _here(fit, *args) -> Generator:
    """``fit(*args)`` in this process, as a two-step progress generator."""
    yield 0, 1
    result = fit(*args)
    yield 1, 1
    return result


def fit_and_place(real_features: np.ndarray | None, real_names, synthetic_features: np.ndarray, minority: str,
                  fitted: UmapGmmFilter | None = None, cancel: CancelToken | None = None, in_process: bool = True,
                  **params) -> Generator:
    """The filter's steps, written once for the CLI, the widget and batch runs: fit UMAP and the minority's mixture
    on the real features (unless ``fitted`` is given) → place the synthetic features in the map → Mahalanobis
    distance to the main component → keep at the fitted level.  ``in_process``: UMAP runs in a child process that
    Cancel kills at once (the viewer and batch); otherwise here.  Yields ``(done, 1000, message)``; returns a
    :class:`FilterResult`."""
    if fitted is None:
        fitter = UmapGmmFilter(minority=minority, **params)
        fitting = (fitter.fit_in_process(real_features, real_names, cancel) if in_process
                   else _here(fitter.fit, real_features, real_names))
        fitted = yield from scaled(fitting, 0, PLACE, TOTAL, f"fitting UMAP and the mixture on {len(real_features)} "
                                                              "real crops")
    placing = fitted.transform_in_process(synthetic_features, cancel)  # here when the filter was fitted here
    points = yield from scaled(placing, PLACE, TOTAL, TOTAL,
                               f"placing the {len(synthetic_features)} synthetic crops in the map")
    distance = fitted.mahalanobis(points)
    return FilterResult(fitted, points, distance, fitted.keep(distance))


def check_minority(model: OnnxModel, minority: str, fitted: UmapGmmFilter | None = None) -> None:
    if minority not in model.card.classes:
        raise ValueError(f"minority {minority!r} is not a class of bundle '{model.card.name}' {model.card.classes}")
    if fitted is not None and fitted.minority_ != minority:
        raise ValueError(f"the loaded filter was fitted for minority {fitted.minority_!r}, not {minority!r}; "
                         f"pass --minority {fitted.minority_} or fit a new filter")


def run_filter(model: OnnxModel, real_images: np.ndarray, real_labels, synthetic_images: np.ndarray,
               minority: str, fitted: UmapGmmFilter | None = None, cancel: CancelToken | None = None,
               in_process: bool = False, **params) -> Generator:
    """Classifier features of the real and synthetic crops, then :func:`fit_and_place`.  Yields ``(done, 1000,
    message)``; returns a :class:`FilterResult`.  ``fitted`` skips the real features and the fit."""
    check_minority(model, minority, fitted)
    names = real_class_names(model, real_labels)
    real = None
    if fitted is None:  # a fitted filter already holds the real data's embedding: no real features needed
        real = yield from scaled(bundle_features(model, real_images), 0, 300, TOTAL,
                                 f"features of the {len(real_images)} real crops")
    synthetic = yield from scaled(bundle_features(model, synthetic_images), 300, 400, TOTAL,
                                  f"features of the {len(synthetic_images)} synthetic crops")
    return (yield from scaled(fit_and_place(real, names, synthetic, minority, fitted, cancel, in_process, **params),
                              400, TOTAL, TOTAL))
