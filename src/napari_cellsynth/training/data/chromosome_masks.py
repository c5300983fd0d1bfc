"""Chromosome instance masks from M-FISH karyotypes, whole-slide held-out splits, and Cellpose's AP@0.5 on them:
what training, exporting and re-scoring a chromosome segmenter share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.measure import label as connected
from skimage.segmentation import expand_labels

from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings, load_model, segment
from napari_cellsynth.training.data.mfish import OVERLAP, list_metaphases, read_metaphase


def chromosome_instances(karyotype: np.ndarray, min_area: int = 20) -> np.ndarray:
    """Instance labels (int32) of every chromosome; overlap pixels join the nearest one."""
    out = np.zeros(karyotype.shape, np.int32)
    for k in range(1, 25):
        components = connected(karyotype == k)
        sizes = np.bincount(components.ravel())
        for c in np.flatnonzero(sizes >= min_area):
            if c:
                out[components == c] = out.max() + 1
    grown = expand_labels(out, distance=5)
    overlap = karyotype == OVERLAP
    out[overlap] = grown[overlap]
    return out


def load_split(root: str, test_slides: list[str] | None, limit: int | None):
    found = [read_metaphase(f, n) for f, n in list_metaphases(root)]
    found = [m for m in found if m.karyotype is not None]
    slides = sorted({m.slide for m in found})
    test = set(test_slides) if test_slides else set(slides[3::4])
    train = [m for m in found if m.slide not in test][:limit]
    held_out = [m for m in found if m.slide in test][:limit]
    return train, held_out, sorted(test)


def average_precision(model, metaphases, diameter: float | None = None,
                      thresholds: tuple[float, float] | None = None) -> dict:
    """AP@0.5 of a CellposeModel (or a model path or bundle :func:`load_model` reads) on ``metaphases``, at the
    model's own flow and cell-probability thresholds or at ``thresholds``."""
    from napari_cellsynth.core.numba_cached import import_cellpose

    metrics = import_cellpose().metrics
    if isinstance(model, (str, Path)):
        model = load_model(str(model))
    truth = [chromosome_instances(m.karyotype) for m in metaphases]
    predicted = [run_to_end(segment(m.dapi, SegmentSettings("given", diameter, (0, 0), *(thresholds or (None, None))),
                                        model=model))
                 for m in metaphases]
    ap, tp, fp, fn = metrics.average_precision(truth, predicted, threshold=[0.5])
    return {"ap50_mean": float(ap[:, 0].mean()), "ap50_std": float(ap[:, 0].std()), "n_images": len(truth),
            "per_image": {m.name: float(a) for m, a in zip(metaphases, ap[:, 0])}}
