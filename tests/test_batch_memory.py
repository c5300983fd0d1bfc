"""Bounded memory on a long stack: what the batch keeps does not grow with the frames it has done.

The stack is 320 frames of 64 × 64 pieces of the real nuclei image, run on local threads (the workers share this
process, so their Python objects are traced too).  The objects alive at frame 100 and at frame 300 are compared,
leaving out the arrays of the frames in flight (numpy, Cellpose): 200 frames later the batch holds no more than it
did, give or take the frames in flight and the run's own list of done frames (about 0.1 KB a frame).  Before the local
cluster's developers' logs were bounded (``scheduler.LOW_LEVEL_LOG``), this grew by 4.0 MB over 300 frames (13 KB a
frame: the scheduler's, workers' and comms' last 1,000 events, some holding a frame's whole task), 2.6 MB over the
200 here, which the 1.5 MB bound catches; bounded, it grew by 0.65 MB over 300 frames and shrank by 0.08 MB outside
pytest.  Peak RSS at 100, 1,000
and 10,000 frames is in bench/bench_batch.py.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from conftest import NUCLEI, NUCLEI_DIAMETER, require

from napari_cellsynth.core.batch import BatchSettings, run_batch
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings

FRAMES, EARLY, LATE, WARM_UP = 320, 100, 300, 20
TRANSIENT = ("*/numpy/*", "*/cellpose/*", "*/tracemalloc.py", "*/skimage/*", "*/scipy/*")


@pytest.mark.slow
def test_a_long_stack_runs_in_memory_that_does_not_grow_with_it(chromosome_cellpose_model, tmp_path):
    image = tifffile.imread(require(NUCLEI / "img2d.tif"))
    corners = np.random.default_rng(0).integers(0, image.shape[0] - 64, (FRAMES, 2))
    stack = tmp_path / "long.tif"
    tifffile.imwrite(stack, np.stack([image[r:r + 64, c:c + 64] for r, c in corners]), photometric="minisblack",
                     metadata={"axes": "TYX"})
    settings = BatchSettings(SegmentSettings(str(chromosome_cellpose_model), NUCLEI_DIAMETER))
    warm_up = tmp_path / "warm-up.tif"  # a few of the frames: models loaded, code paths imported and compiled
    tifffile.imwrite(warm_up, tifffile.imread(stack)[:WARM_UP], photometric="minisblack", metadata={"axes": "TYX"})
    run_to_end(run_batch(warm_up, tmp_path / "warm-up", settings, workers=2))

    snapshots = {}
    tracemalloc.start()
    try:
        job = run_batch(stack, tmp_path / "run", settings, workers=2)
        while True:
            try:
                done, _, _ = next(job)
            except StopIteration as stop:
                result = stop.value
                break
            for mark in (EARLY, LATE):
                if done >= mark and mark not in snapshots:
                    snapshots[mark] = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(False, pattern) for pattern in TRANSIENT])
    finally:
        tracemalloc.stop()
    assert result.done == FRAMES and result.objects > FRAMES  # every frame ran, and found nuclei
    stats = snapshots[LATE].compare_to(snapshots[EARLY], "filename")
    growth = sum(stat.size_diff for stat in stats)
    assert growth < 1_500_000, (f"the batch kept {growth / 1e6:.2f} MB more after {LATE - EARLY} more frames, most in "
                                + ", ".join(f"{s.traceback} (+{s.size_diff / 1e3:.0f} KB)" for s in stats[:3]))
