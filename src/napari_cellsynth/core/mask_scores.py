"""Instance masks scored against true ones: Cellpose's average precision at IoU 0.5, per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ap50_per_image(truths: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, int, int]:
    """AP@0.5 of each image's ``masks`` against its ``truths`` (label images), the true objects found (matched at
    IoU ≥ 0.5) and the true objects in all."""
    from napari_cellsynth.core.numba_cached import import_cellpose

    ap, tp, _, fn = import_cellpose().metrics.average_precision(list(truths), list(masks), threshold=[0.5])
    return ap[:, 0], int(tp[:, 0].sum()), int(tp[:, 0].sum() + fn[:, 0].sum())
