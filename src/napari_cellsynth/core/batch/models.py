"""The models a worker uses, loaded once per process and reused for every frame it runs.

A dask worker runs many frames; loading Cellpose or creating an ONNX Runtime session per frame would cost more than
the frame.  Both are thread-safe for inference, so the threads of one worker share them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_LOADED: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def _cached(kind: str, key: str, load: Callable[[], object]):
    with _LOCK:
        if (kind, key) not in _LOADED:
            _LOADED[(kind, key)] = load()
        return _LOADED[(kind, key)]


def cellpose_model(model: str):
    """This process's Cellpose model for a built-in name or model file."""
    from ..segment import load_model

    return _cached("cellpose", model, lambda: load_model(model))


def classifier(folder: str):
    """This process's classifier bundle with its ONNX Runtime session (verified once, when first loaded)."""
    from ..runtime import OnnxModel

    return _cached("classifier", folder, lambda: OnnxModel(folder, kind="classifier"))


def generator(folder: str):
    """This process's generator bundle (BBDM or CycleGAN, for the frames' synthetic objects)."""
    from ..runtime import OnnxModel

    return _cached("generator", folder, lambda: OnnxModel(folder))


def loaded() -> list[tuple[str, str]]:
    """(kind, key) of every model this process holds: one session per bundle, however many frames ran."""
    with _LOCK:
        return list(_LOADED)
