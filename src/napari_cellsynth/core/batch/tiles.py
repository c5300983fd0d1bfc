"""Large frames in tiles with a halo, and the tiles' objects stitched into one labels image.

Each tile is segmented together with a halo of context around it.  An object belongs to exactly one tile: the one
whose core holds the object's centroid (the cores partition the frame), so an object on a tile border is kept once,
whole, from the tile that sees it with context on every side.  Objects cut by a window's inner edge are left to the
neighbour that sees them whole, unless their centroid lies in this core (the object is larger than the halo; it is
kept and counted as ``truncated``).  An object whose pixels are mostly claimed already (the neighbour saw the same
object with its centroid just across the border) is the same object and is dropped; otherwise it takes the largest
connected part of its unclaimed pixels, so that no object is left in pieces (this also drops the stray pixels that
Cellpose itself sometimes leaves apart from an object, cellpose issue #740).

This is the overlap-and-own design of stardist's big-image prediction, not the face matching of cellpose's
``contrib/distributed_segmentation.py``, which merges labels that touch across a block face after shrinking them and
so splits an object that the two blocks segmented a little differently (cellpose issue #1364).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential


@dataclass(frozen=True)
class Tile:
    core: tuple[slice, slice]  # the pixels this tile owns
    window: tuple[slice, slice]  # the core grown by the halo, within the frame


@dataclass
class StitchReport:
    tiles: int = 0
    kept: int = 0
    duplicates: int = 0  # objects seen again by a neighbour tile and dropped
    truncated: int = 0  # objects cut by a window edge and kept anyway: larger than the halo
    cut: int = 0  # cut objects left to the neighbour that sees them whole


def tile_grid(height: int, width: int, tile: int, halo: int) -> Iterator[Tile]:
    """Tiles of ``tile``×``tile`` pixels (smaller at the far edges), each with its window grown by ``halo``."""
    if tile < 1 or halo < 0:
        raise ValueError(f"the tile must be at least 1 pixel and the halo not negative, got {tile} and {halo}")
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            core = (slice(top, min(top + tile, height)), slice(left, min(left + tile, width)))
            window = tuple(slice(max(0, s.start - halo), min(n, s.stop + halo)) for s, n in zip(core, (height, width)))
            yield Tile(core, window)


def _inner_edges_touched(bbox, window: tuple[slice, slice], shape: tuple[int, int]) -> bool:
    """Whether a region (bbox in window coordinates) touches an edge of the window that is not the frame's edge."""
    r0, c0, r1, c1 = bbox
    rows, cols = window
    return ((r0 == 0 and rows.start > 0) or (c0 == 0 and cols.start > 0)
            or (r1 == rows.stop - rows.start and rows.stop < shape[0])
            or (c1 == cols.stop - cols.start and cols.stop < shape[1]))


def _owns(tile: Tile, centroid: tuple[float, float]) -> bool:
    (rows, cols), (r, c) = tile.core, centroid
    return rows.start <= r < rows.stop and cols.start <= c < cols.stop


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of a mask."""
    pieces, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1


def stitch_tiles(shape: tuple[int, int], tiles: list[Tile], segment: Callable[[Tile], np.ndarray],
                 same_object: float = 0.5) -> tuple[np.ndarray, StitchReport]:
    """One uint32 labels image (ids 1…n, unique in the frame) from ``segment(tile)``, the labels of each tile's window.

    ``same_object``: a tile's object of which more than this fraction of pixels is already claimed by a
    neighbour's object is taken to be that object and dropped.
    """
    labels = np.zeros(shape, np.uint32)
    report = StitchReport(tiles=len(tiles))
    next_id = 1
    for tile in tiles:
        window_labels = segment(tile)
        offset = (tile.window[0].start, tile.window[1].start)
        for region in regionprops(window_labels):
            centroid = (region.centroid[0] + offset[0], region.centroid[1] + offset[1])
            cut = _inner_edges_touched(region.bbox, tile.window, shape)
            if not _owns(tile, centroid):
                report.cut += cut
                continue
            report.truncated += cut
            r0, c0, r1, c1 = region.bbox
            target = labels[r0 + offset[0]:r1 + offset[0], c0 + offset[1]:c1 + offset[1]]
            free = largest_piece(region.image & (target == 0))
            if free.sum() <= (1 - same_object) * region.area:
                report.duplicates += 1
                continue
            target[free] = next_id
            next_id += 1
            report.kept += 1
    return relabel_sequential(labels)[0].astype(np.uint32), report
