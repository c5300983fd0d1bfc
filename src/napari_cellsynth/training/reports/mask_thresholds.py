"""Cellpose's flow and cell-probability thresholds, chosen on labelled images instead of left at Cellpose's 0.4 / 0.0.

Cellpose turns its network's outputs (flows and a cell probability per pixel) into masks with two thresholds: pixels
above ``cellprob_threshold`` are followed along the flows, and a mask whose own flows disagree with the
reconstructed ones by more than ``flow_threshold`` is dropped.  Their defaults were set on Cellpose's cells; a model
trained on other objects (chromosomes: thin, touching, faint) may want others.  The network runs once per image;
every point of the grid only recomputes the masks from its outputs (``cellpose.dynamics.compute_masks``, as
``CellposeModel.eval`` does), so a 5 × 4 grid on 90 images costs minutes on a CPU.

Choose on the images the model was trained on (or a validation set), never on the images it is scored on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_cellsynth.core.bundle import CELLPOSE_THRESHOLDS
from napari_cellsynth.core.mask_scores import ap50_per_image

FLOW_GRID = (0.4, 0.5, 0.6, 0.7, 0.8)
CELLPROB_GRID = (-3.0, -2.0, -1.0, 0.0)


def network_outputs(model, images: Sequence[np.ndarray], diameter: float | None = None) -> list[tuple]:
    """``(flows, cell probability, iterations)`` of a CellposeModel on each image (grayscale), at the image's own
    size; the iterations are those ``CellposeModel.eval`` follows the flows for at that diameter (200 at the scale
    the network ran at: 200 × diam_labels / diam_mean at the model's own diameter), so that :func:`masks_at` gives
    eval's masks."""
    rescale = model.diam_mean / (diameter if diameter is not None and diameter > 0 else model.diam_labels)  # eval's
    outputs = []
    for image in images:
        _, flows, _ = model.eval(image, diameter=diameter, channels=[0, 0])
        outputs.append((flows[1], flows[2], 200 / float(rescale)))
    return outputs


def masks_at(outputs: Sequence[tuple], flow: float, cellprob: float, min_size: int = 15) -> list[np.ndarray]:
    """The masks ``CellposeModel.eval`` would give at these thresholds, from the network's outputs."""
    from cellpose import dynamics

    return [dynamics.compute_masks(dp, prob, niter=niter, cellprob_threshold=cellprob, flow_threshold=flow,
                                   min_size=min_size) for dp, prob, niter in outputs]


def ap50(truths: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict:
    """Cellpose's AP at IoU 0.5 per image, its mean, and the true objects found (matched at IoU ≥ 0.5)."""
    ap, found, objects = ap50_per_image(truths, masks)
    return {"ap50_mean": float(ap.mean()), "ap50_std": float(ap.std()), "per_image": [float(a) for a in ap],
            "found": found, "objects": objects}


def threshold_grid(outputs: Sequence[tuple], truths: Sequence[np.ndarray], flows: Sequence[float] = FLOW_GRID,
                   cellprobs: Sequence[float] = CELLPROB_GRID) -> list[dict]:
    """AP@0.5 at every (flow, cellprob) of the grid, Cellpose's defaults included."""
    points = {(float(f), float(c)) for f in flows for c in cellprobs} | {CELLPOSE_THRESHOLDS}
    return [{"flow": f, "cellprob": c, **ap50(truths, masks_at(outputs, f, c))} for f, c in sorted(points)]


def choose_thresholds(model, images: Sequence[np.ndarray], truths: Sequence[np.ndarray], chosen_on: str,
                      flows: Sequence[float] = FLOW_GRID, cellprobs: Sequence[float] = CELLPROB_GRID) -> dict:
    """The grid point of highest mean AP@0.5 on ``images`` (Cellpose's defaults where they tie with it), as a
    Cellpose card's ``thresholds``: ``flow``, ``cellprob``, ``chosen_on``, its AP there and at the defaults, and
    the grid."""
    if not images:
        raise ValueError("choosing thresholds needs labelled images; none were given")
    grid = threshold_grid(network_outputs(model, images), truths, flows, cellprobs)
    default = next(p for p in grid if (p["flow"], p["cellprob"]) == CELLPOSE_THRESHOLDS)
    best = max(grid, key=lambda p: (p["ap50_mean"], p is default))
    return {"flow": best["flow"], "cellprob": best["cellprob"], "chosen_on": chosen_on, "images": len(images),
            "ap50": best["ap50_mean"], "ap50_at_defaults": default["ap50_mean"],
            "grid": [{k: p[k] for k in ("flow", "cellprob", "ap50_mean", "found", "objects")} for p in grid]}
