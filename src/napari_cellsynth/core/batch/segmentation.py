"""Cellpose on one plane, whole or in tiles with a halo, with one normalisation for the whole plane.

Cellpose normalises each image it is given by its 1st and 99th percentiles; tiles normalised one by one would each
see other intensities, and the same object would be segmented differently on either side of a border.  The plane is
normalised once, as Cellpose would normalise it whole, and the tiles are run with ``normalize=False``.
"""

from __future__ import annotations

import numpy as np

from ..images import ImageInputError
from ..segment import SegmentSettings
from .tiles import StitchReport, Tile, stitch_tiles, tile_grid


def normalise(plane: np.ndarray) -> np.ndarray:
    """(plane − p1) / (p99 − p1) as float32: Cellpose's own normalisation, computed on the whole plane."""
    plane = np.asarray(plane, np.float32)
    if not np.isfinite(plane).all():
        raise ImageInputError("the frame contains NaN or infinite pixels")
    low, high = np.percentile(plane, [1, 99])
    return (plane - low) / max(float(high - low), 1e-6)


def model_diameter(model, settings: SegmentSettings) -> float:
    return float(settings.diameter or getattr(model, "diam_labels", None) or model.diam_mean)


def default_halo(model, settings: SegmentSettings) -> int:
    """Two object diameters of context on each side (the overlap cellpose's distributed_eval uses)."""
    return int(np.ceil(2 * model_diameter(model, settings)))


def segment_plane(model, plane: np.ndarray, settings: SegmentSettings, tile: int | None,
                  halo: int | None) -> tuple[np.ndarray, StitchReport]:
    """uint32 labels of a 2-D plane (ids 1…n); tiled when the plane is larger than ``tile`` in either direction."""
    image = normalise(plane)
    height, width = image.shape
    halo = default_halo(model, settings) if halo is None else halo
    if tile is None or (height <= tile and width <= tile):
        tiles = [Tile((slice(0, height), slice(0, width)), (slice(0, height), slice(0, width)))]
    else:
        tiles = list(tile_grid(height, width, tile, halo))

    flow, cellprob = settings.thresholds(model)

    def run(t: Tile) -> np.ndarray:
        masks, _, _ = model.eval(image[t.window], diameter=settings.diameter, channels=[0, 0], normalize=False,
                                 flow_threshold=flow, cellprob_threshold=cellprob, min_size=settings.min_size)
        return masks

    return stitch_tiles((height, width), tiles, run)
