"""Batch processing of whole stacks: segment → crops → classify over TIFF, OME-Zarr and folders, on dask, resumable.

One idea per module: ``sources`` (reading stacks lazily), ``tiles`` (tiles with a halo, stitched into unique ids),
``segmentation`` (Cellpose on a plane), ``models`` (one model per worker), ``frame`` (the per-frame task),
``store`` (OME-Zarr labels), ``markers`` (done-markers by fingerprint), ``table`` (objects table), ``record``
(run record), ``scheduler`` (dask), ``augment`` (the optional generate and filter steps) and ``job`` (the generator
that runs it all).
"""

import importlib as _importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and the architecture test's import graph; at run time, __getattr__ below
    from .frame import AugmentSettings, BatchSettings
    from .job import BatchResult, run_batch

# The package's names load with their modules when first asked for (PEP 562), so that a part alone (napari's reader
# opening a finished run, the Cellpose trainer naming its start) does not import the whole batch: its jobs, the UMAP
# filter and scikit-learn (about 1 s; results §2e).
_HOMES = {"AugmentSettings": ".frame", "BatchSettings": ".frame", "BatchResult": ".job", "run_batch": ".job"}
__all__ = ["AugmentSettings", "BatchResult", "BatchSettings", "run_batch"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_importlib.import_module(_HOMES[name], __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
