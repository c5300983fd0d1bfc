"""Batch processing of whole stacks: segment → crops → classify over TIFF, OME-Zarr and folders, on dask, resumable.

One idea per module: ``sources`` (reading stacks lazily), ``tiles`` (tiles with a halo, stitched into unique ids),
``segmentation`` (Cellpose on a plane), ``models`` (one model per worker), ``frame`` (the per-frame task),
``store`` (OME-Zarr labels), ``markers`` (done-markers by fingerprint), ``table`` (objects table), ``record``
(run record), ``scheduler`` (dask), ``augment`` (the optional generate and filter steps) and ``job`` (the generator
that runs it all).
"""

from .frame import AugmentSettings, BatchSettings
from .job import BatchResult, run_batch

__all__ = ["AugmentSettings", "BatchResult", "BatchSettings", "run_batch"]
