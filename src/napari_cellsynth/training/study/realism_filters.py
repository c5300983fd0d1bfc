"""Which generated cells a filter keeps, all judged through one classifier trained on the real cells only (the same
seed's ``real`` arm: it shares the study's split, so it never saw a test cell).

- ``umap``: the UMAP–GMM manifold filter (:class:`~napari_cellsynth.core.umap_filter.UmapGmmFilter`, papers 000/001);
- ``confidence``: the cells that the real-data classifier calls the target class;
- ``knn``: the cells inside the real target-class cells' k-NN balls in feature space (Kynkäänniemi et al. 2019;
  :class:`~napari_cellsynth.core.knn_realism.KnnRealism`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The estimators (scikit-learn, UMAP) are imported by the filter that runs, so that the study's command refuses bad
# input without loading them.


@dataclass(frozen=True)
class FilterInputs:
    """The real training cells and the generated cells of one target class, through the real-data classifier."""

    real_features: np.ndarray  # every real training cell (N, D)
    real_names: np.ndarray  # their class names (N,)
    features: np.ndarray  # the generated cells (M, D)
    probabilities: np.ndarray  # the generated cells (M, K)
    classes: list[str]
    target: str
    seed: int = 0


def umap_keep(inputs: FilterInputs) -> np.ndarray:
    from napari_cellsynth.core.umap_filter import UmapGmmFilter

    fitted = UmapGmmFilter(minority=inputs.target, random_state=inputs.seed).fit(inputs.real_features,
                                                                                 inputs.real_names)
    return fitted.predict(inputs.features) == 1


def confidence_keep(inputs: FilterInputs) -> np.ndarray:
    return inputs.probabilities.argmax(axis=1) == inputs.classes.index(inputs.target)


def knn_keep(inputs: FilterInputs) -> np.ndarray:
    from napari_cellsynth.core.knn_realism import KnnRealism

    own = inputs.real_features[inputs.real_names == inputs.target]
    return KnnRealism(k=3).fit(own).predict(inputs.features) == 1


FILTERS: dict[str, Callable[[FilterInputs], np.ndarray]] = {"umap": umap_keep, "confidence": confidence_keep,
                                                            "knn": knn_keep}
