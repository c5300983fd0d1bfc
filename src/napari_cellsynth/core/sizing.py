"""Bring crops of mixed sizes to one size, the same way in training, inference and generation.

Two policies, recorded in a bundle's card (``input.fit``) so that every later user of the bundle fits
crops exactly as its training data was fitted:

* ``resize`` (default): scale each crop, keeping its aspect ratio, so that its longer side is the
  target size, then centre-pad the shorter side.  Every crop is used whole; objects lose their
  absolute size (a large and a small cell come out the same width).  Right for crops cut to each
  object's bounding box, which is how most public cell sets (white blood cells, …) are made.
* ``pad``: centre-pad smaller crops and centre-crop larger ones, at native scale.  Objects keep their
  size in pixels, which matters when size is a class feature (chromosome length, cell volume) and all
  crops come from one microscope at one magnification; what lies outside the window is lost.

Padding uses each channel's median over the crop's border pixels, i.e. the local background, so a
brightfield crop is not framed by black and a fluorescence crop is framed by its dark background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FRAME_FACTOR = 4  # images this many times a crop's side are whole frames, not one object each


def looks_like_frames(smallest_side: int, crop_size: Sequence[int]) -> bool:
    """Whether images whose shortest side is ``smallest_side`` are whole frames for crops of ``crop_size``."""
    return smallest_side >= FRAME_FACTOR * max(crop_size)

FIT_POLICIES = ("resize", "pad")
AUTO_SIZE_CAP = 128  # the longest side an automatic --size picks (larger costs time, rarely accuracy)


@dataclass(frozen=True)
class SizeFit:
    """How crops were brought to one size: the target (height, width) and the policy."""

    size: tuple[int, int]
    fit: str = "resize"

    def __post_init__(self):
        if self.fit not in FIT_POLICIES:
            raise ValueError(f"fit must be one of {FIT_POLICIES}, got {self.fit!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (height, width) in pixels, got {self.size!r}")


def border_median(image: np.ndarray) -> np.ndarray:
    """Each channel's median over the crop's outermost rows and columns (C×H×W → C)."""
    border = np.concatenate([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], axis=1)
    return np.median(border, axis=1)


def pad_or_crop(image: np.ndarray, size: tuple[int, int], fill: np.ndarray | None = None) -> np.ndarray:
    """Centre-pad (with ``fill`` per channel, default the border median) or centre-crop C×H×W to ``size``."""
    channels, height, width = image.shape
    fill = border_median(image) if fill is None else fill
    out = np.empty((channels, *size), dtype=image.dtype)
    out[:] = np.asarray(fill, dtype=image.dtype)[:, None, None]
    # the overlapping window, centred in both the source and the target
    h, w = min(height, size[0]), min(width, size[1])
    src_r, src_c = (height - h) // 2, (width - w) // 2
    dst_r, dst_c = (size[0] - h) // 2, (size[1] - w) // 2
    out[:, dst_r:dst_r + h, dst_c:dst_c + w] = image[:, src_r:src_r + h, src_c:src_c + w]
    return out


def resize_to_fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale C×H×W (aspect ratio kept) so that it just fits ``size``, then centre-pad with the border median."""
    from skimage.transform import resize

    channels, height, width = image.shape
    scale = min(size[0] / height, size[1] / width)
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    if shape != (height, width):
        scaled = resize(image.astype(np.float32), (channels, *shape), order=1, preserve_range=True,
                        anti_aliasing=scale < 1, mode="edge")
        if image.dtype.kind in "iu":
            info = np.iinfo(image.dtype)
            scaled = np.clip(np.rint(scaled), info.min, info.max)
        image_scaled = scaled.astype(image.dtype)
    else:
        image_scaled = image
    return pad_or_crop(image_scaled, size, border_median(image))


def fit_crop(image: np.ndarray, how: SizeFit) -> np.ndarray:
    """One C×H×W crop brought to ``how.size`` by ``how.fit`` (unchanged when it already has that size)."""
    if tuple(image.shape[-2:]) == tuple(how.size):
        return image
    return resize_to_fit(image, how.size) if how.fit == "resize" else pad_or_crop(image, how.size)


def fit_crops(crops: Sequence[np.ndarray] | np.ndarray, how: SizeFit) -> np.ndarray:
    """C×H×W crops of any sizes → one N×C×H×W stack of ``how.size``."""
    return np.stack([fit_crop(np.asarray(c), how) for c in crops])


def auto_size(shapes: Sequence[tuple[int, int]], cap: int = AUTO_SIZE_CAP) -> tuple[int, int]:
    """A square size for crops of mixed sizes: the median longer side, rounded up to a multiple of 8,
    at most ``cap`` pixels."""
    longer = np.median([max(h, w) for h, w in shapes])
    side = int(min(cap, 8 * np.ceil(longer / 8)))
    return side, side
