"""How two segmentations of one plane agree, object by object (tiled against untiled, one scheduler against another).

Objects match when their intersection over union is above one half (such a match is unique).  ``split`` counts the
objects of the reference that the other segmentation breaks into several pieces, each holding a good part of it: the
failure of cellpose's distributed segmentation at block borders (cellpose issue #1364).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.metrics import contingency_table


@dataclass
class LabelMatch:
    reference: int  # objects in the reference
    other: int  # objects in the other segmentation
    matched: int  # pairs with IoU > threshold
    mean_iou: float  # over the matched pairs
    split: int  # reference objects covered ≥ ``piece`` by two or more objects of the other
    fragmented: int  # objects of the other made of more than one connected piece

    @property
    def fraction(self) -> float:
        """Matched objects as a fraction of the larger count (1.0: the same objects)."""
        return self.matched / max(self.reference, self.other, 1)


def fragmented_objects(labels: np.ndarray) -> int:
    count = 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and ndimage.label(labels[box] == index)[1] > 1:
            count += 1
    return count


def match_labels(reference: np.ndarray, other: np.ndarray, threshold: float = 0.5, piece: float = 0.1,
                 within: np.ndarray | None = None) -> LabelMatch:
    """Compare ``other`` with ``reference`` (2-D labels, 0 = background); ``within``: only the reference objects
    with these ids are counted (e.g. those that cross a tile border)."""
    table = contingency_table(reference, other, ignore_labels=[0]).tocsr()
    intersection = table.toarray()
    area_ref = np.bincount(reference.ravel(), minlength=intersection.shape[0])
    area_other = np.bincount(other.ravel(), minlength=intersection.shape[1])
    union = area_ref[:, None] + area_other[None, :] - intersection
    iou = np.divide(intersection, union, out=np.zeros_like(intersection, float), where=union > 0)
    iou[0, :], iou[:, 0] = 0, 0
    ids = np.unique(reference)[1:] if within is None else np.asarray(within)
    best = iou[ids].max(axis=1) if len(ids) else np.zeros(0)
    pieces = (intersection[ids][:, 1:] >= piece * area_ref[ids][:, None]).sum(axis=1) if len(ids) else np.zeros(0)
    others = len(np.unique(other)) - 1 if within is None else len(ids)
    return LabelMatch(len(ids), others, int((best > threshold).sum()),
                      float(best[best > threshold].mean()) if (best > threshold).any() else 0.0,
                      int((pieces >= 2).sum()), fragmented_objects(other))
