"""mixup and paper 001's nonlinear mixup (a colour-space rotation of a mixup image), for any channel count.

* :func:`mixup`: I = λ I₁ + (1 - λ) I₂ with λ ~ U[0.15, 0.85] per pair (paper 001 keeps λ away from
  0 and 1 so that a mixup image is never nearly one of its references); the pair comes from the same
  class, so the label is that class.
* :func:`rotate_channels`: every pixel's channel vector rotated by θ ~ U[0°, 360°) in one plane of
  channel space (001 eqs. 3–4). For three channels that is the rotation about one colour axis, chosen
  at random (about B: (R, G) turns, B stays). What it means for other channel counts:

  - **1 channel**: a pixel is a scalar, there is no plane to rotate in: the image is returned as is
    (nonlinear mixup reduces to mixup);
  - **2 channels**: the rotation in the one plane of the two channels;
  - **3 channels**: about the R, G or B axis, as 001;
  - **4 or more**: in the plane of two channels chosen at random (a Givens rotation, the
    generalisation of "about one axis, the other two turn").

  A rotation keeps each pixel's norm. Rotated values can leave the data's range (a positive (R, G)
  turned by 180° is negative); they are clipped to ``value_range`` afterwards (16-bit data stays in
  0–65535, 8-bit in 0–255), which the norm-preservation test checks before clipping.
* :func:`nonlinear_mixup`: rotate_channels(mixup(I₁, I₂)), turned in a common scale.  001 turns RGB
  pixels whose channels share one scale.  Microscopy channels do not (Jurkat: brightfield around 676,
  darkfield around 26), and a turn of raw intensities would pour one channel's level into another,
  tens of standard deviations off.  So with ``channel_scale = (mean, std)`` (per channel, of the
  training crops) each pixel is turned in standard units, z = (x − mean) / std, about the mean colour,
  then mapped back; without it (channels that share a scale, e.g. 8-bit RGB) raw values turn, as 001.
  ``value_range`` may be one (low, high) for all channels or one per channel.

All functions work on raw intensities (N×C×H×W), before normalisation.
"""

from __future__ import annotations

import numpy as np

LAMBDA_RANGE = (0.15, 0.85)


def mixup(first: np.ndarray, second: np.ndarray, rng: np.random.Generator,
          lam_range: tuple[float, float] = LAMBDA_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """λ first + (1 - λ) second for each pair; returns (images as float64, λ per image)."""
    if first.shape != second.shape:
        raise ValueError(f"mixup needs pairs of the same shape, got {first.shape} and {second.shape}")
    lam = rng.uniform(*lam_range, size=len(first))
    shape = (-1, *([1] * (first.ndim - 1)))
    return lam.reshape(shape) * first.astype(np.float64) + (1 - lam.reshape(shape)) * second.astype(np.float64), lam


def rotation_planes(channels: int) -> list[tuple[int, int]]:
    """The planes (pairs of channel indices) a rotation may turn; for three channels the rotation
    about axis k turns the plane of the other two: B → (R, G), G → (R, B), R → (G, B)."""
    if channels < 2:
        return []
    return [(i, j) for i in range(channels) for j in range(i + 1, channels)]


def rotate_channels(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Each image's pixels rotated by its own θ in its own plane of channel space (float64, unclipped)."""
    out = images.astype(np.float64).copy()
    planes = rotation_planes(images.shape[1])
    record = []
    for n in range(len(out)):
        if not planes:
            record.append({"plane": None, "theta": 0.0})
            continue
        i, j = planes[rng.integers(len(planes))]
        theta = rng.uniform(0.0, 2 * np.pi)
        c, s = np.cos(theta), np.sin(theta)
        a, b = out[n, i].copy(), out[n, j].copy()
        out[n, i], out[n, j] = c * a - s * b, s * a + c * b
        record.append({"plane": (i, j), "theta": float(theta)})
    return out, record


def per_channel(values, channels: int) -> np.ndarray:
    """A scalar or one value per channel, shaped to broadcast over N×C×H×W."""
    values = np.asarray(values, dtype=np.float64)
    return np.broadcast_to(values, (channels,)).reshape(1, channels, 1, 1)


def to_range(images: np.ndarray, value_range: tuple, dtype) -> np.ndarray:
    """Clip to the data's range (one (low, high), or per-channel lows and highs) and cast to its dtype (rounded for
    integer data)."""
    low, high = (per_channel(bound, images.shape[1]) for bound in value_range)
    clipped = np.clip(images, low, high)
    return (np.rint(clipped) if np.issubdtype(np.dtype(dtype), np.integer) else clipped).astype(dtype)


def nonlinear_mixup(first: np.ndarray, second: np.ndarray, rng: np.random.Generator, value_range: tuple,
                    channel_scale: tuple | None = None) -> np.ndarray:
    """mixup, then each image turned in channel space (in standard units when ``channel_scale = (mean, std)``
    is given), clipped to ``value_range`` and cast to the input's dtype."""
    mixed, _ = mixup(first, second, rng)
    if channel_scale is None:
        rotated, _ = rotate_channels(mixed, rng)
    else:
        mean, std = (per_channel(v, mixed.shape[1]) for v in channel_scale)
        std = np.where(std > 0, std, 1.0)
        rotated, _ = rotate_channels((mixed - mean) / std, rng)
        rotated = rotated * std + mean
    return to_range(rotated, value_range, first.dtype)
