"""Labelled crops for training: loading, label mapping, stratified split, normalisation, augmentation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.datasets import CropSet, read_crops
from napari_cellsynth.core.images import affine_coefficients
from napari_cellsynth.core.label_maps import apply_label_map, resolve_label_map
from napari_cellsynth.core.sizing import FIT_POLICIES


@dataclass
class LabelledData:
    crops: CropSet
    y: np.ndarray  # class indices
    classes: list[str]
    label_map: dict[str, list[str]]

    def counts(self, index: np.ndarray | None = None) -> dict[str, int]:
        y = self.y if index is None else self.y[index]
        counted = Counter(y.tolist())
        return {name: int(counted.get(k, 0)) for k, name in enumerate(self.classes)}


def load_labelled(path: str, label_map: str | None = None, labels_csv: str | None = None,
                  exclude: np.ndarray | None = None, size: int | None = None, fit: str | None = None,
                  report=print) -> LabelledData:
    """Read crops with labels; ``exclude`` drops crops by index (e.g. held-out sample cells).

    ``size``/``fit`` bring crops of mixed sizes to one size (:mod:`napari_cellsynth.core.sizing`);
    ``report`` gets one line per notice (sizes fitted, classes of the map without crops)."""
    crops = read_crops(path, labels_csv, size, fit)
    for note in crops.notes:
        report(note)
    if crops.labels is None:
        raise ValueError(f"{path} has no labels; training needs labelled crops "
                         "(npz 'labels', a labels CSV, or one folder per class)")
    if exclude is not None and len(exclude):
        keep = np.setdiff1d(np.arange(len(crops)), exclude)
        crops = CropSet(crops.images[keep], crops.labels[keep], crops.channels,
                        [crops.names[i] for i in keep], crops.source)
    mapping = resolve_label_map(label_map, crops.labels)
    y, classes = apply_label_map(crops.labels, mapping)
    empty = [name for k, name in enumerate(classes) if not np.any(y == k)]
    if empty:
        report(f"warning: class(es) {empty} of the label map have no crops in {path}; the model cannot "
               "learn them (drop them from the map, or add crops)")
    return LabelledData(crops, y, classes, mapping)


MIN_EVAL_CROPS = 5  # a class needs this many crops to appear in validation and test


def tiny_classes(y: np.ndarray, n_classes: int | None = None) -> list[int]:
    """Classes with 1 to ``MIN_EVAL_CROPS - 1`` crops: trained on, but too few to validate or test."""
    counts = np.bincount(y, minlength=n_classes or 0)
    return [k for k, n in enumerate(counts) if 0 < n < MIN_EVAL_CROPS]


def stratified_split(y: np.ndarray, seed: int, fractions=(0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Train/validation/test indices, stratified by class, reproducible under ``seed``.

    A class with fewer than ``MIN_EVAL_CROPS`` crops (:func:`tiny_classes`) goes to training whole and
    is absent from validation and test; the others are split as if it were not there."""
    from sklearn.model_selection import train_test_split  # here: a refused command need not import it (1 s)

    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions {fractions} must add up to 1")
    index = np.arange(len(y))
    tiny = np.isin(y, tiny_classes(y))
    splittable = index[~tiny]
    if len(np.unique(y[splittable])) < 2:
        raise ValueError(f"at least two classes need {MIN_EVAL_CROPS} or more crops to validate and test a "
                         f"classifier; the counts are {np.bincount(y).tolist()}: add crops")
    train, rest = train_test_split(splittable, train_size=fractions[0], stratify=y[splittable], random_state=seed)
    val_share = fractions[1] / (fractions[1] + fractions[2])
    val, test = train_test_split(rest, train_size=val_share, stratify=y[rest], random_state=seed)
    return {"train": np.sort(np.concatenate([train, index[tiny]])), "val": np.sort(val), "test": np.sort(test)}


def group_split(y: np.ndarray, groups: np.ndarray, test_groups, seed: int,
                val_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Train/validation/test indices with whole groups held out for the test (e.g. slides: no test crop shares a
    slide with a training one): test = every crop of ``test_groups``; validation = a share ``val_fraction`` of the
    other crops, stratified by class and seeded (a class with fewer than 2 of them trains whole)."""
    from sklearn.model_selection import train_test_split  # here: a refused command need not import it (1 s)

    groups = np.asarray(groups).astype(str)
    wanted = [str(g) for g in test_groups]
    known = sorted(set(groups.tolist()))
    unknown = [g for g in wanted if g not in known]
    if unknown:
        shown = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
        raise ValueError(f"test groups {unknown} are not groups of the data (its groups: {shown})")
    index = np.arange(len(y))
    test = index[np.isin(groups, wanted)]
    rest = index[~np.isin(groups, wanted)]
    if not len(rest):
        raise ValueError(f"the test groups {wanted} hold every crop: leave at least one group to train on")
    lone = np.isin(y[rest], [k for k, n in enumerate(np.bincount(y[rest])) if n < 2])
    train, val = train_test_split(rest[~lone], test_size=val_fraction, stratify=y[rest[~lone]], random_state=seed)
    return {"train": np.sort(np.concatenate([train, rest[lone]])), "val": np.sort(val), "test": np.sort(test)}


def read_split(path: str, n: int) -> dict[str, np.ndarray]:
    """A fixed train/validation/test split saved as index arrays; checked to be disjoint and in range."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"split file {path} not found: --split takes an .npz of 'train', 'val' and 'test' "
                                "index arrays (leave it out for a seeded 60/20/20 split, --split-seed)")
    with np.load(path, allow_pickle=False) as saved:
        missing = {"train", "val", "test"} - set(saved.files)
        if missing:
            raise ValueError(f"split file {path} lacks {sorted(missing)}; it needs 'train', 'val' and 'test' indices")
        split = {part: np.sort(saved[part].astype(np.int64)) for part in ("train", "val", "test")}
    for part, index in split.items():
        if len(index) == 0:
            raise ValueError(f"split file {path}: the '{part}' part is empty")
        if index.min() < 0 or index.max() >= n:
            raise ValueError(f"split file {path}: '{part}' holds indices outside the data's 0–{n - 1}")
    every = np.concatenate(list(split.values()))
    if len(np.unique(every)) != len(every):
        raise ValueError(f"split file {path}: train, val and test overlap (or repeat an index)")
    return split


def thin_classes(index: np.ndarray, y: np.ndarray, classes: list[str], specs: list[str], seed: int) -> np.ndarray:
    """Keep only a seeded share of some classes' crops: a fraction, ``["M=0.1"]`` (the hard setting of paper 000), or
    a count, ``["M=34"]`` (a count equal to a fraction's rounded share draws the same crops)."""
    rng = np.random.default_rng(seed)
    for spec in specs:
        name, _, value = spec.partition("=")
        members = index[y[index] == classes.index(name)] if name in classes else index[:0]
        try:
            count = int(value) if value.isdigit() else int(round(float(value) * len(members)))
        except ValueError:
            count = -1
        if name not in classes or not value or count < 0 or ("." in value and not 0 < float(value) <= 1):
            raise ValueError(f"keep {spec!r}: use CLASS=FRACTION (0–1) or CLASS=COUNT with a class of {classes}")
        if value.isdigit() and count == 0:
            raise ValueError(f"keep {spec!r}: 0 crops would leave {name} out of training; keep at least 1, or "
                             "leave the class out of the data")
        if count > len(members):
            raise ValueError(f"keep {spec!r}: the training part holds only {len(members)} crops of {name}; "
                             f"keep at most {len(members)}")
        keep = rng.choice(members, max(1, count), replace=False)
        index = np.sort(np.concatenate([index[y[index] != classes.index(name)], keep]))
    return index


def add_generator_data_arguments(p) -> None:
    """What every generator trainer reads: labelled crops, the label map, the classifier's split seed
    (a generator sees only the training split) and thinned classes (``--keep-fraction M=0.1``)."""
    p.add_argument("--data", required=True)
    p.add_argument("--labels-csv")
    p.add_argument("--label-map", default="identity")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (as the classifier's)")
    p.add_argument("--stratify-by", metavar="LABEL_MAP",
                   help="stratify the split by another label map's classes (default: this run's), e.g. jurkat4 for a "
                        "7-class run on the split its 4-class start learnt from")
    p.add_argument("--keep-fraction", nargs="+", default=[], metavar="CLASS=F",
                   help="keep only a fraction of a class's training crops, e.g. M=0.1")
    p.add_argument("--size", type=int, help="bring every crop to SIZE×SIZE (mixed sizes default to the median side)")
    p.add_argument("--fit", choices=FIT_POLICIES, help="how crops reach --size: resize (default) or pad")


def fit_record(data: LabelledData, args) -> dict:
    """What a config (and then the card) records about the crops' size: the size fitted to and how,
    or the policy asked for when the crops already had one size."""
    fit = data.crops.fit.fit if data.crops.fit is not None else getattr(args, "fit", None)
    return {"fit": fit, "size": getattr(args, "size", None)}


def stratification(data: LabelledData, stratify_by: str | None) -> tuple[np.ndarray, list[str]]:
    """The labels a split is stratified by: the data's classes, or those of another label map over the same original
    labels (``--stratify-by jurkat4`` puts a 7-class run on the split that 4-class models learnt from)."""
    if not stratify_by:
        return data.y, data.classes
    return apply_label_map(data.crops.labels, resolve_label_map(stratify_by, data.crops.labels))


def split_record(data: LabelledData, args) -> dict:
    """Which split a generator learnt from, for its config and card: the seed and the classes it was stratified by."""
    stratify_by = getattr(args, "stratify_by", None)
    return {"seed": args.split_seed, "stratify_by": stratify_by, "classes": stratification(data, stratify_by)[1]}


def training_indices(y: np.ndarray, classes: list[str], split_seed: int, keep_fraction: list[str] = (),
                     only_classes: list[str] | None = None, stratify: np.ndarray | None = None) -> np.ndarray:
    """The classifier's training split (``stratified_split(stratify, split_seed)["train"]``, ``stratify`` being ``y``
    unless given), thinned by ``keep_fraction`` (``["M=0.1"]``) and restricted to ``only_classes`` — what a generator
    may see."""
    train = stratified_split(y if stratify is None else stratify, split_seed)["train"]
    index = thin_classes(train, y, classes, list(keep_fraction), split_seed)
    if only_classes:
        unknown = set(only_classes) - set(classes)
        if unknown:
            raise ValueError(f"--only-classes {sorted(unknown)} not among the classes {classes}")
        index = index[np.isin(y[index], [classes.index(c) for c in only_classes])]
    return index


def robust_range(images: np.ndarray) -> dict:
    """A generator's normalisation: each channel's 0.1–99.9 percentile range mapped to [-1, 1]."""
    data = images.astype(np.float64)
    low = np.percentile(data, 0.1, axis=(0, 2, 3))
    high = np.percentile(data, 99.9, axis=(0, 2, 3))
    high = np.where(high > low, high, low + 1)
    return {"type": "minmax_range", "low": low.tolist(), "high": high.tolist()}


def load_extra(path: str, label_map: dict[str, list[str]], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Extra training crops (e.g. generated ones): an .npz/TIFF folder with labels, mapped to the classes."""
    from napari_cellsynth.core.label_maps import apply_label_map

    crops = read_crops(path, allow_empty=True)  # a filter may keep none of a generator's cells
    if crops.labels is None:
        raise ValueError(f"{path}: extra training crops need labels (npz 'labels' or one folder per class)")
    # a crop may carry the class name itself (M) or one of its original labels (Prophase …)
    lookup = {name: sorted({name, *label_map.get(name, [])}) for name in classes}
    y, _ = apply_label_map(crops.labels, lookup)
    return crops.images, y


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of raw intensities (the training split only)."""
    data = images.astype(np.float64)
    mean = data.mean(axis=(0, 2, 3))
    std = data.std(axis=(0, 2, 3))
    std[std == 0] = 1.0
    return mean.tolist(), std.tolist()


SAMPLINGS = ("shuffle", "balanced")


def sampling_weights(y: np.ndarray, how: str) -> np.ndarray | None:
    """How a trainer draws its crops (``--sampling``): ``shuffle`` (None: each crop once a pass) or ``balanced``
    (each crop drawn with probability 1 / (classes × its class's count), so every class equally often)."""
    if how != "balanced":
        return None
    counts = np.bincount(y)
    return 1.0 / counts[y]


class CropBatches:
    """Raw crops held as one float32 tensor; batches come out augmented and normalised.

    ``shuffle`` (default: the same as ``augment``) draws a new order every epoch; training always
    shuffles, also without augmentation, or a fixed order (real crops, then all extra crops) would end
    every epoch on a run of one class.  Augmentation (training only): random horizontal/vertical
    flips, 90° rotations and (unless ``brightness`` is off) a brightness factor in [0.5, 1.5] applied to the raw
    intensities before normalisation; ``max_shift`` > 0 then moves each crop by a whole number of pixels in
    [-max_shift, max_shift] in y and in x, the uncovered border filled by repeating the edge (:meth:`shift`).
    ``normalization`` is a card's normalisation entry.

    ``device`` holds the crops (and does the augmentation) there, e.g. on a GPU; the random draws stay
    on the CPU generator, so a run's batches are the same on every device.

    ``weights`` (one per crop) draws each pass's crops with replacement in proportion to them instead of
    shuffling (class-balanced sampling: ``1 / count`` of each crop's class).
    """

    def __init__(self, images: np.ndarray, y: np.ndarray, normalization: dict, batch_size: int,
                 augment: bool, seed: int, brightness: bool = True, shuffle: bool | None = None,
                 device: str | torch.device = "cpu", weights: np.ndarray | None = None, max_shift: int = 0):
        self.device = torch.device(device)
        self.images = torch.from_numpy(images.astype(np.float32)).to(self.device)
        self.y = torch.from_numpy(y.astype(np.int64)).to(self.device)
        scale, offset = affine_coefficients(normalization, images.shape[1])
        self.scale = torch.tensor(scale, dtype=torch.float32, device=self.device)[None, :, None, None]
        self.offset = torch.tensor(offset, dtype=torch.float32, device=self.device)[None, :, None, None]
        self.batch_size = batch_size
        self.augment = augment
        self.brightness = brightness
        if max_shift < 0 or max_shift >= min(images.shape[-2:]):
            raise ValueError(f"max_shift must be 0 or more and below the crop side {min(images.shape[-2:])}, "
                             f"got {max_shift}")
        self.max_shift = int(max_shift)
        self.shuffle = augment if shuffle is None else shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """Raw crops with this batcher's random flips, turns, brightness and shift (its own generator)."""
        n = len(x)
        g = self.generator

        def per_sample(values: torch.Tensor) -> torch.Tensor:
            return values.to(self.device)[:, None, None, None]

        flip_h = per_sample(torch.rand(n, generator=g) < 0.5)
        flip_v = per_sample(torch.rand(n, generator=g) < 0.5)
        x = torch.where(flip_h, x.flip(-1), x)
        x = torch.where(flip_v, x.flip(-2), x)
        if x.shape[-1] == x.shape[-2]:
            turns = per_sample(torch.randint(0, 4, (n,), generator=g))
            turned, result = x, x
            for k in (1, 2, 3):  # the whole batch turned at once; each crop keeps its own number of turns
                turned = torch.rot90(turned, 1, dims=(-2, -1))
                result = torch.where(turns == k, turned, result)
            x = result
        if self.brightness:
            x = x * per_sample(0.5 + torch.rand(n, generator=g))
        if self.max_shift:  # drawn last: without a shift the draws (and so the batches) are what they were
            offsets = torch.randint(-self.max_shift, self.max_shift + 1, (n, 2), generator=g)
            x = self.shift(x, offsets.to(self.device), self.max_shift)
        return x

    @staticmethod
    def shift(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
        """Move crop ``i`` of N×C×H×W ``x`` by ``offsets[i] = (dy, dx)`` pixels (``|d| ≤ pad``):
        ``out[i, :, y, x] = x[i, :, y - dy, x - dx]``, the uncovered border the nearest edge pixel.
        Padded once by edge replication, then every crop's window gathered at once."""
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
        rows = torch.arange(h, device=x.device)[None, :] + pad - offsets[:, :1]  # N×H
        cols = torch.arange(w, device=x.device)[None, :] + pad - offsets[:, 1:]  # N×W
        batch = torch.arange(n, device=x.device)[:, None, None]
        # advanced indices around the channel slice put the channels last: N×H×W×C
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()

    def __iter__(self):
        if self.weights is not None:
            order = torch.multinomial(self.weights, len(self.y), replacement=True, generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(len(self.y), generator=self.generator)
        else:
            order = torch.arange(len(self.y))
        order = order.to(self.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.images[index]
            if self.augment:
                x = self.augmented(x)
            yield x * self.scale + self.offset, self.y[index]
