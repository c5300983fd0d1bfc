"""Chromosome instance masks from M-FISH karyotypes, whole-slide held-out splits, and Cellpose's AP@0.5 on them:
what training, exporting and re-scoring a chromosome segmenter share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.measure import label as connected
from skimage.segmentation import expand_labels

from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings, load_model, segment
from napari_cellsynth.training.data.mfish import OVERLAP, karyotype_file, list_metaphases, read_metaphase, slide_of


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
    """The labelled metaphases of the training slides and of the held-out ones (``test_slides``; default every fourth
    slide), at most ``limit`` of each, and the held-out slides; only the metaphases kept are read."""
    found = [(f, n) for f, n in list_metaphases(root) if karyotype_file(f, n).is_file()]
    slides = sorted({slide_of(f) for f, _ in found})
    test = set(test_slides) if test_slides else set(slides[3::4])
    train = [(f, n) for f, n in found if slide_of(f) not in test][:limit]
    held_out = [(f, n) for f, n in found if slide_of(f) in test][:limit]
    return [read_metaphase(f, n) for f, n in train], [read_metaphase(f, n) for f, n in held_out], sorted(test)


def unlabelled_metaphases(root: str, held_out_slides: list[str], limit: int | None = None) -> list:
    """The metaphases under ``root`` with no karyotype plane (M-FISH's EX ones), none of a held-out slide, at most
    ``limit``: what pseudo-labels can add to training without touching the slides it is scored on."""
    found = [(f, n) for f, n in list_metaphases(root)
             if not karyotype_file(f, n).is_file() and slide_of(f) not in set(held_out_slides)]
    return [read_metaphase(f, n) for f, n in found[:limit]]


def pseudo_labels(model, metaphases) -> list[np.ndarray]:
    """Instance masks of ``metaphases`` as ``model`` (a CellposeModel) segments them at its own thresholds: labels
    for self-training."""
    return [run_to_end(segment(m.dapi, SegmentSettings("given"), model=model)).astype(np.int32) for m in metaphases]


def average_precision(model, metaphases, diameter: float | None = None,
                      thresholds: tuple[float, float] | None = None) -> dict:
    """AP@0.5 of a CellposeModel (or a model path or bundle :func:`load_model` reads) on ``metaphases``, at the
    model's own flow and cell-probability thresholds or at ``thresholds``."""
    if isinstance(model, (str, Path)):
        model = load_model(str(model))
    predicted = [run_to_end(segment(m.dapi, SegmentSettings("given", diameter, (0, 0), *(thresholds or (None, None))),
                                        model=model))
                 for m in metaphases]
    return scores_of(metaphases, predicted)


def scores_of(metaphases, masks, truths=None) -> dict:
    """AP@0.5 of ``masks`` (one per metaphase) against the metaphases' chromosomes (``truths``: their
    :func:`chromosome_instances`, when already made), in the form a Cellpose run records: mean, std, count and AP by
    metaphase."""
    from napari_cellsynth.core.mask_scores import ap50_per_image

    truths = truths if truths is not None else [chromosome_instances(m.karyotype) for m in metaphases]
    ap, _, _ = ap50_per_image(truths, masks)
    return {"ap50_mean": float(ap.mean()), "ap50_std": float(ap.std()), "n_images": len(truths),
            "per_image": {m.name: float(a) for m, a in zip(metaphases, ap)}}
