"""The per-object table: one row per object of every finished frame, streamed from the done-markers into a CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..atomic import atomic_open

TABLE = "objects.csv"  # a batch run's objects table, in its output folder

OBJECT_COLUMNS = ("label", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1", "area")
FRAME_COLUMNS = ("stack", "t", "z")


def class_columns(classes: Sequence[str]) -> list[str]:
    """The columns :meth:`ClassificationResult.table` makes, in its order."""
    return ["class", "confidence", *(f"p_{name}" for name in classes)]


def table_header(classes: Sequence[str] | None) -> list[str]:
    return [*FRAME_COLUMNS, *OBJECT_COLUMNS, *(class_columns(classes) if classes else [])]


def object_columns(labels: np.ndarray) -> dict[str, list]:
    """Label, centroid (y, x), bounding box (y0, x0, y1, x1; ends exclusive) and area of each object, by label."""
    from skimage.measure import regionprops  # here: reading a finished run's table (napari's reader) needs none

    rows = [(int(r.label), round(float(r.centroid[0]), 3), round(float(r.centroid[1]), 3), *map(int, r.bbox),
             int(r.area)) for r in regionprops(labels)]
    return {name: [row[i] for row in rows] for i, name in enumerate(OBJECT_COLUMNS)}


def plain(columns: Mapping[str, Sequence]) -> dict[str, list]:
    """Columns as JSON-ready lists of Python numbers and strings."""
    return {name: np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)
            for name, values in columns.items()}


def write_table(path: str | os.PathLike, header: Sequence[str], frames: Iterable[tuple[dict, Mapping]]) -> int:
    """Write ``(frame columns, object columns)`` pairs as rows of a CSV (atomically, row by row); the row count."""
    rows = 0
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for frame, columns in frames:
            n = len(columns.get("label", []))
            for i in range(n):
                writer.writerow([frame[name] if name in frame else columns[name][i] for name in header])
            rows += n
    return rows
