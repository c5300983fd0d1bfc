"""Labels as chunked OME-Zarr (NGFF 0.5, written with ome-zarr-py), opened for update and never recreated.

``RUN/<stack>.ome.zarr`` holds ``labels/cells``: a multiscale label image with axes t, z, y, x and one chunk per
frame and tile (1 × 1 × tile × tile), so that each task writes whole chunks of its own frame and no two tasks write
the same chunk.  The store is created once; a rerun opens it for update and checks that it is the same shape.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..images import ImageInputError

LABELS = "cells"
AXES = [{"name": "t", "type": "time"}, {"name": "z", "type": "space"}, {"name": "y", "type": "space"},
        {"name": "x", "type": "space"}]


def store_path(run_dir: str | Path, stack: str) -> Path:
    return Path(run_dir) / f"{stack}.ome.zarr"


def labels_array_path(store: str | Path) -> str:
    return str(Path(store) / "labels" / LABELS / "0")


def open_or_create(store: str | Path, shape: tuple[int, int, int, int], tile: int) -> str:
    """The labels array of ``store`` (created with its NGFF metadata if missing); its path, for the workers."""
    import zarr
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    root = zarr.open_group(str(store), mode="a")
    if "labels" in root and LABELS in root["labels"]:
        existing = root["labels"][LABELS]["0"]
        if tuple(existing.shape) != tuple(shape):
            raise ImageInputError(f"{store} holds labels of shape {existing.shape}, not {shape}: it belongs to "
                                  "another input; choose another --out")
        return labels_array_path(store)
    labels = root.require_group("labels")
    group = labels.require_group(LABELS)
    chunks = (1, 1, min(tile, shape[2]), min(tile, shape[3]))
    group.create_array("0", shape=shape, chunks=chunks, dtype="uint32", fill_value=0)
    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, 1.0, 1.0]}]}], axes=AXES, name=LABELS)
    write_label_metadata(labels, LABELS)
    for node in (root, labels):  # NGFF 0.5: every OME group says its version
        node.attrs["ome"] = {**node.attrs.get("ome", {}), "version": "0.5"}
    return labels_array_path(store)


_ARRAYS: dict[str, object] = {}
_LOCK = threading.Lock()


def write_plane(array_path: str, t: int, z: int, labels: np.ndarray) -> None:
    """Write one frame's labels into its own chunks (the array is opened once per process, for update)."""
    import zarr

    with _LOCK:
        if array_path not in _ARRAYS:
            _ARRAYS[array_path] = zarr.open_array(array_path, mode="r+")
        array = _ARRAYS[array_path]
    array[t, z] = labels


def read_labels(store: str | Path):
    """The labels array, read-only and lazy (a napari layer or a check reads frames from it on demand)."""
    import zarr

    return zarr.open_array(labels_array_path(store), mode="r")
