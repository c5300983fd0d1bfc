"""One frame of a batch, as a dask task: read → Cellpose (tiled) → crops → classify → labels into the store → marker.

The task writes its own chunks of the labels store and its done-marker, and returns a few numbers, so the client
holds nothing that grows with the stack.  A frame that fails is recorded in a failed-marker and its labels are
cleared; the error is returned, never raised, so that one bad frame never ends the batch.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..classify import classify_objects
from ..images import ImageInputError
from ..jobs import run_to_end
from ..segment import SegmentSettings
from . import models
from .markers import FrameMarkers
from .segmentation import segment_plane
from .sources import StackSource
from .store import write_plane
from .table import class_columns, object_columns, plain


@dataclass(frozen=True)
class BatchSettings:
    segment: SegmentSettings
    classifier: str | None = None  # a classifier bundle folder (or zoo:NAME); None: segment only
    channel: int = 0  # the channel Cellpose segments
    classify_channels: tuple[int, ...] | None = None  # the channels the classifier gets, in its order (None: all)
    tile: int | None = 1024  # frames larger than this are segmented in tiles of this size
    halo: int | None = None  # context around each tile in pixels (None: two object diameters)
    batch_size: int = 64  # crops per ONNX Runtime call

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameTask:
    source: StackSource
    t: int
    z: int
    settings: BatchSettings
    labels: str  # the labels array's path in the output store
    markers: FrameMarkers


def classify_frame(image: np.ndarray, labels: np.ndarray, settings: BatchSettings) -> dict[str, list]:
    """Class, confidence and per-class probabilities of each object (in label order), from this worker's session."""
    model = models.classifier(settings.classifier)
    channels = list(settings.classify_channels) if settings.classify_channels else list(range(image.shape[0]))
    if labels.max() == 0:
        return {name: [] for name in class_columns(model.card.classes)}
    _, result = run_to_end(classify_objects(model, image[channels], labels, settings.batch_size))
    return plain(result.table())


def analyse_frame(image: np.ndarray, settings: BatchSettings) -> tuple[np.ndarray, dict, dict]:
    """Labels, the object columns and the stitching report of one C×Y×X frame."""
    if not 0 <= settings.channel < image.shape[0]:
        raise ImageInputError(f"the frame has {image.shape[0]} channel(s); --channel {settings.channel} is not one")
    model = models.cellpose_model(settings.segment.model)
    labels, report = segment_plane(model, image[settings.channel], settings.segment, settings.tile, settings.halo)
    columns = object_columns(labels)
    if settings.classifier:
        columns.update(classify_frame(image, labels, settings))
    return labels, columns, asdict(report)


def run_frame(task: FrameTask) -> dict:
    """Process one frame; returns ``{stack, t, z, status, objects | error, seconds}``."""
    started = time.perf_counter()
    summary = {"stack": task.source.name, "t": task.t, "z": task.z}
    try:
        image = task.source.read_frame(task.t, task.z)
        labels, columns, report = analyse_frame(image, task.settings)
        write_plane(task.labels, task.t, task.z, labels)
        seconds = round(time.perf_counter() - started, 3)
        task.markers.write_done(task.t, task.z, {
            "objects": len(columns["label"]), "seconds": seconds, "stitch": report,
            "frame_sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest(), "columns": columns})
        return {**summary, "status": "done", "objects": len(columns["label"]), "seconds": seconds}
    except Exception as err:  # noqa: BLE001 - any failure of one frame is recorded and the batch goes on
        error = f"{type(err).__name__}: {err}"
        try:
            write_plane(task.labels, task.t, task.z, np.zeros(task.source.frame_shape[1:], np.uint32))
        except Exception:  # noqa: BLE001 - the store may be what failed; the marker still records the frame
            pass
        task.markers.write_failed(task.t, task.z, error)
        return {**summary, "status": "failed", "error": error, "seconds": round(time.perf_counter() - started, 3)}
