"""Paper 001's minority-class-focused sampling: every mini-batch of original crops is supplemented,
per minority class c, by n_c × (2 generated + 1 mixup + 1 nonlinear mixup) synthetic crops.

The original part shrinks so that the whole batch keeps its size (2^m in paper 001: 32 with 8
original crops and n = 2, 2, 1, 1 for Anaphase, Metaphase, Prophase, Telophase). The generated
slots take any generator's crops (WGAN-div, WGAN-GP, DDPM …), so that papers 000 and 001 compare in
one framework. mixup and nonlinear mixup pairs are drawn from the class's real training crops and
its generated crops together (001). A part can be switched off for the ablation (its slots then
go back to the original crops). "Standard sampling" is the other option of the ablation: the
generated crops merged into the training set (``train_classifier --extra-train``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_cellsynth.training.data.labelled_crops import CropBatches, channel_stats
from napari_cellsynth.training.data.mixing import mixup, nonlinear_mixup, to_range

PARTS = {"generated": 2, "mixup": 1, "nonlinear": 1}  # crops per unit of n


@dataclass
class MinorityPool:
    class_index: int
    n: int
    real: np.ndarray  # raw training crops of the class
    generated: np.ndarray  # raw generated crops of the class


def supplementary_size(pools: list[MinorityPool], parts: tuple[str, ...]) -> int:
    return sum(pool.n * PARTS[part] for pool in pools for part in parts)


def supplementary_batch(pools: list[MinorityPool], parts: tuple[str, ...], rng: np.random.Generator,
                        value_range: tuple, channel_scale: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One supplementary batch (raw intensities) and its class indices: per pool, ``n × PARTS[part]`` crops of
    every part; mixup and nonlinear mixup pairs come from the class's real and generated crops together.
    ``value_range`` and ``channel_scale``: :func:`channel_ranges` of the training crops."""
    images, labels = [], []
    for pool in pools:
        both = np.concatenate([pool.real, pool.generated]) if len(pool.generated) else pool.real
        for part in parts:
            k = pool.n * PARTS[part]
            if part == "generated":
                crops = pool.generated[rng.integers(len(pool.generated), size=k)]
            else:
                a, b = (both[rng.integers(len(both), size=k)] for _ in range(2))
                crops = to_range(mixup(a, b, rng)[0], value_range, a.dtype) if part == "mixup" \
                    else nonlinear_mixup(a, b, rng, value_range, channel_scale)
            images.append(crops)
            labels.append(np.full(k, pool.class_index))
    return np.concatenate(images), np.concatenate(labels)


def channel_ranges(images: np.ndarray) -> tuple[tuple, tuple]:
    """Per channel of N×C×H×W crops: (min, max), the range synthetic crops are clipped to, and (mean, std), the
    standard units nonlinear mixup turns pixels in."""
    low, high = images.min(axis=(0, 2, 3)).astype(np.float64), images.max(axis=(0, 2, 3)).astype(np.float64)
    return (low, high), channel_stats(images)


class FocusedBatches:
    """Batches of ``batch_size`` crops: the original part from a shuffled, augmented :class:`CropBatches`,
    then each pool's synthetic crops (augmented and normalised the same way). One epoch = one pass over the
    originals."""

    def __init__(self, images: np.ndarray, y: np.ndarray, normalization: dict, batch_size: int,
                 pools: list[MinorityPool], seed: int, augment: bool = True,
                 parts: tuple[str, ...] = tuple(PARTS), max_shift: int = 0):
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown focused-sampling parts {sorted(unknown)}; choose from {list(PARTS)}")
        self.supplementary = supplementary_size(pools, parts)
        original = batch_size - self.supplementary
        if original < 1:
            raise ValueError(f"batch size {batch_size} leaves no room for original crops beside "
                             f"{self.supplementary} synthetic ones; raise --batch-size or lower n")
        for pool in pools:
            if pool.n < 1 or not len(pool.generated) and "generated" in parts:
                raise ValueError(f"minority class {pool.class_index}: n must be ≥ 1 and generated crops are needed")
        self.original = CropBatches(images, y, normalization, original, augment=augment, seed=seed, shuffle=True,
                                    max_shift=max_shift)
        self.pools, self.parts, self.batch_size = pools, parts, batch_size
        self.rng = np.random.default_rng(seed + 1)
        self.value_range, self.channel_scale = channel_ranges(images)
        self.generator = self.original.generator  # checkpoints save and restore the batch order

    def __len__(self) -> int:
        return len(self.original)

    def synthetic(self) -> tuple[np.ndarray, np.ndarray]:
        """One supplementary batch (raw intensities) and its labels."""
        return supplementary_batch(self.pools, self.parts, self.rng, self.value_range, self.channel_scale)

    def __iter__(self):
        for x, y in self.original:
            extra, extra_y = self.synthetic()
            extra = torch.from_numpy(extra.astype(np.float32))
            if self.original.augment:  # the originals' flips, turns, brightness and shift, as merged crops get
                extra = self.original.augmented(extra)
            extra = extra * self.original.scale + self.original.offset
            yield torch.cat([x, extra]), torch.cat([y, torch.from_numpy(extra_y.astype(np.int64))])
