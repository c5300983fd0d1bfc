"""Compile napari's label colour mapping before the first result is drawn, off the main thread.

napari maps label values to colours with numba-compiled loops (``napari.utils.colormaps._accelerated_cmap``), compiled
the first time a labels layer of a given integer type is drawn, on the main thread.  On a fresh install the first
Classify of objects (a per-class ``DirectLabelColormap``) stalled the viewer for 2.4 s, and opening Batch results for
1.85 s (issue 35).  :func:`warm_colour_mapping` runs those compilations once per process in a background thread when a
widget that draws labels opens; numba's own cache keeps them for later sessions.
"""

from __future__ import annotations

import threading

import numpy as np

# the label types a user's layers hold: Cellpose and our batch write int32; TIFF label images are often 8/16 bit
LABEL_DTYPES = (np.int32, np.uint16, np.uint8, np.int64, np.uint32)

_lock = threading.Lock()
_thread: threading.Thread | None = None


def warm_colour_mapping() -> threading.Thread:
    """Start (once per process) the thread that maps a few labels of each type through napari's direct (per-class)
    and cyclic (default) label colormaps; returns it."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_map_each_type, name="cellsynth-colour-warmup", daemon=True)
            _thread.start()
        return _thread


def _map_each_type() -> None:
    from napari.utils.colormaps import DirectLabelColormap, label_colormap

    direct = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "#ff0000", 2: "#00ff00"})
    cyclic = label_colormap(49)
    for dtype in LABEL_DTYPES:
        values = np.array([[0, 1, 2, 3]], dtype=dtype)
        for colormap in (direct, cyclic):
            try:
                colormap._data_to_texture(values)
            except Exception:  # noqa: BLE001 - a napari without this private path: the first draw compiles instead
                return
