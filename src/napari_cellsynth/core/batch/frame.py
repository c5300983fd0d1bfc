"""One frame of a batch, as a dask task: read → Cellpose (tiled) → crops → classify → [translate] → labels into
the store → marker.

The task writes its own chunks of the labels store, its arrays (when the run generates or filters) and then its
done-marker, and returns a few numbers, so the client holds nothing that grows with the stack.  A frame that fails is
recorded in a failed-marker and its labels are cleared; the error is returned, never raised, so that one bad frame
never ends the batch.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..classify import ClassificationResult, classify_crops, classify_objects
from ..images import ImageInputError
from ..jobs import run_to_end
from ..segment import SegmentSettings
from ..translate import TranslationSettings, classifier_crops, translate
from . import models
from .markers import FrameMarkers
from .segmentation import segment_plane
from .sources import StackSource
from .store import write_plane
from .table import class_columns, object_columns, plain


@dataclass(frozen=True)
class AugmentSettings:
    """The batch's optional generate and filter steps (see :mod:`.augment`)."""

    generator: str | None = None  # a BBDM/CycleGAN bundle (every object, from --channel) or a DDPM/GAN bundle (once)
    generate_class: str | None = None  # DDPM/GAN: the class to sample (default: the filter's minority)
    count: int = 0  # DDPM/GAN: how many images
    steps: int | None = None  # sampler or bridge steps (None: 20 for a DDPM's DPM-Solver++, 50 for a BBDM's bridge)
    seed: int = 0
    minority: str | None = None  # UMAP filter: keep the synthetic crops near this class's real objects
    batch_size: int = 16  # images per generator call

    def frame_part(self, translating: bool) -> dict:
        """What a frame's outputs depend on: the translation's settings, and whether features are kept."""
        return {"translate": {"steps": self.steps, "seed": self.seed} if translating else None,
                "features": self.minority is not None}


@dataclass(frozen=True)
class BatchSettings:
    segment: SegmentSettings
    classifier: str | None = None  # a classifier bundle folder (or zoo:NAME); None: segment only
    channel: int = 0  # the channel Cellpose segments
    classify_channels: tuple[int, ...] | None = None  # the channels the classifier gets, in its order (None: all)
    tile: int | None = 1024  # frames larger than this are segmented in tiles of this size
    halo: int | None = None  # context around each tile in pixels (None: two object diameters)
    batch_size: int = 64  # crops per ONNX Runtime call
    augment: AugmentSettings = AugmentSettings()
    translating: bool = False  # set by run_batch: the generator is a BBDM or CycleGAN bundle

    def __post_init__(self):
        if self.tile is not None and self.tile != 0 and self.tile < 64:
            raise ValueError(f"--tile {self.tile}: give a tile side of at least 64 px, or 0 to segment whole frames")
        if self.halo is not None and self.halo < 0:
            raise ValueError(f"--halo {self.halo}: give the context around each tile in pixels, 0 or more")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: give 1 or more crops per call")

    def to_dict(self) -> dict:
        return asdict(self)

    def frame_dict(self) -> dict:
        """The settings a frame's outputs depend on (its fingerprint): not the run-level sampling or filter."""
        return {**asdict(self), "augment": self.augment.frame_part(self.translating)}

    @property
    def keeps_arrays(self) -> bool:
        """Whether each frame writes its arrays: features for the filter, or its synthetic objects."""
        return self.translating or self.augment.minority is not None


@dataclass(frozen=True)
class FrameTask:
    source: StackSource
    t: int
    z: int
    settings: BatchSettings
    labels: str  # the labels array's path in the output store
    markers: FrameMarkers


def classify_frame(image: np.ndarray, labels: np.ndarray,
                   settings: BatchSettings) -> tuple[dict[str, list], ClassificationResult | None]:
    """Class, confidence and per-class probabilities of each object (in label order), from this worker's session;
    and the classification itself (None for a frame without objects)."""
    model = models.classifier(settings.classifier)
    channels = list(settings.classify_channels) if settings.classify_channels else list(range(image.shape[0]))
    if labels.max() == 0:
        return {name: [] for name in class_columns(model.card.classes)}, None
    _, result = run_to_end(classify_objects(model, image[channels], labels, settings.batch_size))
    return plain(result.table()), result


def frame_seed(seed: int, t: int, z: int) -> int:
    """One seed per frame, so that a frame's synthetic objects are the same whichever worker runs it, and when."""
    return int(np.random.SeedSequence([seed, t, z]).generate_state(1)[0])


def translate_frame(image: np.ndarray, labels: np.ndarray, settings: BatchSettings, t: int, z: int) -> dict:
    """Each object's synthetic planes, from the segmented channel (DAPI), with this worker's generator session;
    with its classifier features when the run filters."""
    generator, augment = models.generator(settings.augment.generator), settings.augment
    translation = TranslationSettings(steps=augment.steps or 50, seed=frame_seed(augment.seed, t, z),
                                      batch_size=augment.batch_size)
    result = run_to_end(translate(generator, image[settings.channel], labels.astype(np.int64), translation))
    arrays = {"synthetic": result.images, "synthetic_label": result.labels.astype(np.int64)}
    if settings.classifier and augment.minority is not None and len(result.images):
        model = models.classifier(settings.classifier)
        crops = classifier_crops(result.dapi, result.images, model.card.n_channels)
        arrays["synthetic_features"] = run_to_end(classify_crops(model, crops, settings.batch_size)).features
    return arrays


def analyse_frame(image: np.ndarray, settings: BatchSettings,
                  t: int = 0, z: int = 0) -> tuple[np.ndarray, dict, dict, dict]:
    """Labels, the object columns, the stitching report and the frame's arrays (features and synthetic objects, when
    the run generates or filters) of one C×Y×X frame."""
    if not 0 <= settings.channel < image.shape[0]:
        raise ImageInputError(f"the frame has {image.shape[0]} channel(s); --channel {settings.channel} is not one")
    model = models.cellpose_model(settings.segment.model)
    labels, report = segment_plane(model, image[settings.channel], settings.segment, settings.tile, settings.halo)
    columns, arrays = object_columns(labels), {}
    if settings.classifier:
        classes, result = classify_frame(image, labels, settings)
        columns.update(classes)
        if settings.augment.minority is not None and result is not None:
            arrays.update(features=result.features, predicted=result.predicted.astype(np.int64))
    if settings.translating and labels.max() > 0:
        arrays.update(translate_frame(image, labels, settings, t, z))
    return labels, columns, asdict(report), arrays


def run_frame(task: FrameTask) -> dict:
    """Process one frame; returns ``{stack, t, z, status, objects | error, seconds}``."""
    started = time.perf_counter()
    summary = {"stack": task.source.name, "t": task.t, "z": task.z}
    try:
        image = task.source.read_frame(task.t, task.z)
        labels, columns, report, arrays = analyse_frame(image, task.settings, task.t, task.z)
        write_plane(task.labels, task.t, task.z, labels)
        if task.settings.keeps_arrays:
            task.markers.write_arrays(task.t, task.z, arrays)
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
