"""Checks and conversions of image stacks before they meet a bundle.

Every function raises :class:`ImageInputError` with a message that names the
problem and the fix, so the CLI and the widgets can show it as it is.
"""

from __future__ import annotations

import numpy as np

from .bundle import Card
from .sizing import looks_like_frames


class ImageInputError(ValueError):
    """Image data that a bundle cannot take as it is."""


def as_stack(images: np.ndarray, n_channels: int, what: str = "images") -> np.ndarray:
    """Return ``images`` as N×C×H×W.

    Accepted: N×C×H×W; N×H×W when the bundle has one channel; C×H×W or H×W as a
    single image.  Anything else is refused with the shape that was expected.
    """
    images = np.asarray(images)
    if images.dtype == object or images.dtype.kind not in "uif":
        raise ImageInputError(
            f"{what} have dtype {images.dtype}; give integer or floating-point pixel values")
    if images.ndim == 4:
        stack = images
    elif images.ndim == 3 and n_channels == 1:
        stack = images[:, None]
    elif images.ndim == 3 and images.shape[0] == n_channels:
        stack = images[None]
    elif images.ndim == 2 and n_channels == 1:
        stack = images[None, None]
    else:
        raise ImageInputError(
            f"{what} have shape {images.shape} (rank {images.ndim}); the bundle expects "
            f"N×{n_channels}×H×W crops" + (" or N×H×W" if n_channels == 1 else "")
            + ": stack single crops along a first axis and put channels second")
    if stack.shape[1] != n_channels:
        raise ImageInputError(
            f"{what} have {stack.shape[1]} channel(s) on axis 1 (shape {images.shape}), but the bundle "
            f"was trained on {n_channels}; pass N×{n_channels}×H×W crops or choose a bundle for "
            f"{stack.shape[1]} channel(s)")
    if stack.shape[0] == 0:
        raise ImageInputError(f"{what} hold no crops (shape {images.shape})")
    return stack


def check_size(stack: np.ndarray, card: Card, what: str = "images") -> None:
    size = tuple(stack.shape[-2:])
    if size != card.image_size:
        height, width = card.image_size
        if looks_like_frames(min(size), card.image_size):
            raise ImageInputError(
                f"{what} are {size[0]}×{size[1]} pixels, whole frames for bundle '{card.name}', which takes one "
                f"object in {height}×{width}: segment the frames first (cellsynth segment), then classify with "
                "--objects LABELS")
        raise ImageInputError(
            f"{what} are {size[0]}×{size[1]} pixels but bundle '{card.name}' takes "
            f"{height}×{width}; crop or resize them to {height}×{width} (the labels mode does it "
            f"for you), or use a bundle trained at {size[0]}×{size[1]}")


def fit_to_card(stack: np.ndarray, card: Card, what: str = "images") -> np.ndarray:
    """Crops of another size brought to the card's size by the policy its training data was fitted
    with (``input.fit``); a card without one takes only crops of its own size."""
    if tuple(stack.shape[-2:]) == card.image_size or card.size_fit is None:
        check_size(stack, card, what)
        return stack
    from .sizing import fit_crops

    return fit_crops(stack, card.size_fit)


def check_finite(stack: np.ndarray, what: str = "images") -> None:
    if stack.dtype.kind == "f":
        bad = ~np.isfinite(stack)
        if bad.any():
            crops = np.unique(np.nonzero(bad)[0])
            raise ImageInputError(
                f"{what} contain {int(bad.sum())} NaN or infinite pixel(s) in crop(s) "
                f"{crops[:10].tolist()}{'…' if len(crops) > 10 else ''}; fill or drop them first")


def affine_coefficients(normalization: dict, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, offset) with normalised = raw * scale + offset."""
    kind = normalization.get("type", "none")
    if kind == "standardize":
        std = np.asarray(normalization["std"], np.float64)
        return 1.0 / std, -np.asarray(normalization["mean"], np.float64) / std
    if kind == "minmax_range":
        low, high = (np.asarray(normalization[k], np.float64) for k in ("low", "high"))
        return 2.0 / (high - low), -2.0 * low / (high - low) - 1.0
    return np.ones(n_channels), np.zeros(n_channels)


def normalize(stack: np.ndarray, normalization: dict) -> np.ndarray:
    """Raw intensities (N×C×H×W) → the float32 values the network was trained on (computed in float32, in place:
    a float64 intermediate of a 10,000-crop stack took most of ``cellsynth classify``'s time)."""
    scale, offset = affine_coefficients(normalization, stack.shape[1])
    out = np.array(stack, dtype=np.float32, copy=True)
    out *= scale.astype(np.float32)[None, :, None, None]
    out += offset.astype(np.float32)[None, :, None, None]
    return out


def denormalize(batch: np.ndarray, normalization: dict, dtype, value_range=None) -> np.ndarray:
    """Network values → raw intensities in ``dtype``, clipped to ``value_range`` (and the dtype's range)."""
    scale, offset = affine_coefficients(normalization, batch.shape[1])
    raw = (batch.astype(np.float64) - offset[None, :, None, None]) / scale[None, :, None, None]
    dtype = np.dtype(dtype)
    low, high = value_range if value_range is not None else (-np.inf, np.inf)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(low, info.min), min(high, info.max)
        return np.clip(np.rint(raw), low, high).astype(dtype)
    return np.clip(raw, low, high).astype(dtype)


def prepare(images: np.ndarray, card: Card, what: str = "images") -> np.ndarray:
    """Validate raw crops against a card and return the normalised float32 N×C×H×W batch."""
    stack = fit_to_card(as_stack(images, card.n_channels, what), card, what)
    check_finite(stack, what)
    return normalize(stack, card.normalization)
