"""Segment cells, nuclei or chromosomes with Cellpose 3 (frame by frame for stacks and time series).

A model is a built-in name (``cyto3``, ``nuclei``, … downloaded by Cellpose on first use, which
needs internet) or the path of a model file trained with ``training/train_cellpose.py``.  A path
that does not exist is refused here: Cellpose itself would silently fall back to downloading cyto3.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import ImageInputError
from .jobs import run_to_end

BUILT_IN = ("cyto3", "nuclei", "cyto2", "cyto", "tissuenet_cp3", "livecell_cp3", "bact_fluor_cp3",
            "bact_phase_cp3", "deepbacs_cp3", "yeast_BF_cp3", "yeast_PhC_cp3")


@dataclass
class SegmentSettings:
    model: str  # a built-in name or a model file
    diameter: float | None = None  # None: the model's own (its training diameter)
    channels: tuple[int, int] = (0, 0)  # Cellpose's [cytoplasm, nucleus] convention; 0 = grayscale
    flow_threshold: float = 0.4
    cellprob_threshold: float = 0.0
    min_size: int = 15


def load_model(model: str):
    """A CellposeModel on the CPU for a built-in name or an existing model file."""
    from cellpose import models

    if model in BUILT_IN:
        return models.CellposeModel(gpu=False, model_type=model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"Cellpose model {model!r} is neither a built-in name ({', '.join(BUILT_IN[:4])}, …) "
                                "nor an existing model file; train one with training/train_cellpose.py")
    return models.CellposeModel(gpu=False, pretrained_model=str(path))


def frames_of(image: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, bool]:
    """The image as a list of 2-D (or 2-D + channels) frames, and whether it was a stack."""
    image = np.asarray(image)
    if image.dtype.kind not in "uif":
        raise ImageInputError(f"image dtype {image.dtype} cannot be segmented; give integer or float pixels")
    spatial = image.ndim - (channel_axis is not None)
    if spatial == 2:
        return image[None], False
    if spatial == 3:
        if channel_axis is not None and channel_axis != image.ndim - 1:
            image = np.moveaxis(image, channel_axis, -1)
        return image, True
    raise ImageInputError(f"image of shape {image.shape} is not a 2-D image or a stack of 2-D frames "
                          "(T×Y×X); split higher dimensions first")


def segment(image: np.ndarray, settings: SegmentSettings, channel_axis: int | None = None,
            model=None) -> Generator[tuple[int, int], None, np.ndarray]:
    """Yield progress per frame; return int32 labels of the image's spatial shape (T×Y×X for stacks)."""
    frames, is_stack = frames_of(image, channel_axis)
    if np.issubdtype(frames.dtype, np.floating) and not np.isfinite(frames).all():
        raise ImageInputError("the image contains NaN or infinite pixels; fill them before segmenting")
    model = model or load_model(settings.model)
    labels = np.zeros(frames.shape[:3], np.int32)
    yield 0, len(frames)
    for i, frame in enumerate(frames):
        masks, _, _ = model.eval(frame, diameter=settings.diameter, channels=list(settings.channels),
                                 channel_axis=-1 if frame.ndim == 3 else None,
                                 flow_threshold=settings.flow_threshold,
                                 cellprob_threshold=settings.cellprob_threshold, min_size=settings.min_size)
        labels[i] = masks
        yield i + 1, len(frames)
    return labels if is_stack else labels[0]


def estimate_diameter(image: np.ndarray, settings: SegmentSettings, channel_axis: int | None = None, model=None) -> float:
    """Median object diameter (pixels) after a first pass at the model's own diameter (first frame)."""
    from cellpose import utils

    frames, _ = frames_of(image, channel_axis)
    model = model or load_model(settings.model)
    first = SegmentSettings(settings.model, None, settings.channels, settings.flow_threshold,
                            settings.cellprob_threshold, settings.min_size)
    masks = run_to_end(segment(frames[0], first, channel_axis=-1 if frames.ndim == 4 else None, model=model))
    if masks.max() == 0:
        raise ValueError("no objects found at the model's own diameter; set the diameter by hand")
    return float(utils.diameters(masks)[0])
