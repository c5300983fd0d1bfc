"""Objects in a labels image → fixed-size crops for a bundle.

Each object's bounding box is grown to a square around its centre, padded by a
margin, cut from the image (pixels beyond the border take the edge value) and
resized to the bundle's input size with intensities kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import regionprops
from skimage.transform import resize

from .images import ImageInputError


@dataclass
class ObjectCrops:
    labels: np.ndarray  # (N,) label ids, ascending
    crops: np.ndarray  # (N, C, H, W) in the image's intensity range, float32
    boxes: np.ndarray  # (N, 4) square windows (row0, col0, row1, col1) in image pixels, may pass the border


def as_channels_first(image: np.ndarray, n_channels: int, labels_shape: tuple[int, ...]) -> np.ndarray:
    """An image layer's data as C×H×W that lines up with a 2-D labels image."""
    image = np.asarray(image)
    if image.ndim == 2 and n_channels == 1:
        image = image[None]
    elif image.ndim == 3 and image.shape[-1] == n_channels and image.shape[:2] == labels_shape \
            and image.shape[0] != n_channels:
        image = np.moveaxis(image, -1, 0)
    if image.ndim != 3 or image.shape[0] != n_channels:
        raise ImageInputError(
            f"the image has shape {image.shape} but the bundle needs {n_channels} channel(s) as "
            f"C×H×W{' or H×W' if n_channels == 1 else ''}; load the channels as one layer "
            f"({n_channels}×H×W) or choose a bundle for this channel count")
    if image.shape[1:] != tuple(labels_shape):
        raise ImageInputError(
            f"the labels are {labels_shape[0]}×{labels_shape[1]} but the image is "
            f"{image.shape[1]}×{image.shape[2]}; choose the labels layer that belongs to this image")
    return image


def square_box(bbox: tuple[int, int, int, int], margin: float, min_side: int = 1) -> tuple[int, int, int, int]:
    """A square window around a region's bounding box, grown by ``margin`` × its side on each side,
    and at least ``min_side`` pixels wide (so that objects smaller than that keep their scale)."""
    r0, c0, r1, c1 = bbox
    side = max(r1 - r0, c1 - c0)
    side = max(int(np.ceil(side * (1 + 2 * margin))), min_side, 1)
    centre_r, centre_c = (r0 + r1) / 2, (c0 + c1) / 2
    top, left = int(np.floor(centre_r - side / 2)), int(np.floor(centre_c - side / 2))
    return top, left, top + side, left + side


def cut_window(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image[:, r0:r1, c0:c1]`` where rows/columns outside the image repeat the edge."""
    top, left, bottom, right = box
    _, height, width = image.shape
    pad = ((0, 0), (max(0, -top), max(0, bottom - height)), (max(0, -left), max(0, right - width)))
    inside = image[:, max(0, top):min(height, bottom), max(0, left):min(width, right)]
    return np.pad(inside, pad, mode="edge") if any(p != (0, 0) for p in pad) else inside


def extract_object_crops(image: np.ndarray, labels: np.ndarray, size: tuple[int, int],
                         margin: float = 0.15, min_area: int = 1, keep_scale: bool = False,
                         only_object: bool = False) -> ObjectCrops:
    """One crop per labelled object of ``labels`` (H×W ints) from ``image`` (C×H×W).

    ``keep_scale``: objects that fit are cut at the output size without resizing (sizes stay
    comparable, as chromosome lengths must); only larger ones are scaled down.
    ``only_object``: every pixel of the window outside the object (background and neighbours) is set to 0,
    as the M-FISH chromosome set's crops are cut.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ImageInputError(f"labels must be a 2-D image of object ids, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ImageInputError(f"labels must hold integer object ids, got dtype {labels.dtype}")
    if image.shape[1:] != labels.shape:
        raise ImageInputError(f"labels {labels.shape} and image {image.shape[1:]} differ in size")
    regions = [r for r in regionprops(labels) if r.area >= min_area]
    if not regions:
        raise ImageInputError("the labels layer has no objects; segment the image first")
    crops = np.empty((len(regions), image.shape[0], *size), np.float32)
    boxes = np.empty((len(regions), 4), np.int64)
    for i, region in enumerate(regions):
        box = square_box(region.bbox, margin, min_side=size[0] if keep_scale else 1)
        window = cut_window(image, box).astype(np.float32)
        if only_object:
            owner = cut_window(labels[None], box)[0]
            window[:, owner != region.label] = 0
        crops[i] = resize(window, (image.shape[0], *size), order=1, preserve_range=True,
                          anti_aliasing=window.shape[1] > size[0], mode="edge")
        boxes[i] = box
    return ObjectCrops(np.array([r.label for r in regions]), crops, boxes)
