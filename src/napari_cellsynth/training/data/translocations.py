"""The translocation classification set of paper 004 (Tables 5–6) from the M-FISH builder's chromosomes.

Two classes: ``translocation`` (the builder's positives) and ``normal`` (chromosomes of normal
karyotypes); chromosomes the labelling rule left undecided are not used.  The classifier sees the
RGB crop (three fluorophore planes).  Whole slides are held out for the test split, so no test
chromosome shares a slide with a training one; the validation split (model selection only) is a
stratified seeded share of the remaining chromosomes.

The DAPI crops of the training slides' other chromosomes (normal and undecided, never a test slide,
never a positive) are the *donors* a DAPI → FISH generator turns into synthetic translocations, as
paper 004 turns its unannotated DAPI chromosomes (Table 2) into synthetic ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open

CLASSES = ("normal", "translocation")
RARE = CLASSES[1]


def load_chromosomes(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = {"dapi", "rgb", "slide", "translocation", "metaphase"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; build it with "
                             "python -m napari_cellsynth.training.data.mfish_dataset")
        keys = ("dapi", "rgb", "slide", "translocation", "metaphase")
        keys += ("fluorophores",) if "fluorophores" in data.files else ()
        return {k: data[k] for k in keys}


PLANES = ("DAPI", "plane 1", "plane 2", "plane 3", "plane 4", "plane 5")  # DAPI and the five fluorophore planes


def labelled_task(chromosomes: dict[str, np.ndarray], images: np.ndarray, channels) -> dict[str, np.ndarray]:
    """The labelled chromosomes (translocation ≥ 0) as crops a classifier and ``cellsynth study`` read: ``images``
    (one per chromosome, e.g. RGB or DAPI + the five planes), ``labels`` (normal / translocation), ``channels``, and
    each chromosome's ``slide``, ``metaphase`` and ``chromosome_class``."""
    labelled = chromosomes["translocation"] >= 0
    task = {"images": images[labelled], "channels": np.array(channels),
            "labels": np.array(CLASSES)[chromosomes["translocation"][labelled]],
            "slide": chromosomes["slide"][labelled], "metaphase": chromosomes["metaphase"][labelled]}
    if "chromosome_class" in chromosomes:
        task["chromosome_class"] = chromosomes["chromosome_class"][labelled]
    return task


def dapi_and_planes(chromosomes: dict[str, np.ndarray]) -> np.ndarray:
    """N×6×S×S: each chromosome's DAPI and five fluorophore planes (what a DAPI → planes translator paints)."""
    return np.concatenate([chromosomes["dapi"], chromosomes["fluorophores"]], axis=1)


def load_pairs(path: str, exclude_slides: list[str], only_translocations: bool) -> dict[str, np.ndarray]:
    """DAPI and RGB crops (N×1×S×S, N×3×S×S uint8) of the chromosomes to train on, and their five fluorophore
    planes (N×5×S×S) where the data set has them."""
    arrays = load_chromosomes(path)
    keep = ~np.isin(arrays["slide"], exclude_slides)
    if only_translocations:
        keep &= arrays["translocation"] == 1
    if not keep.any():
        raise ValueError(f"no chromosomes left in {path} after excluding slides {exclude_slides}"
                         f"{' and keeping translocations only' if only_translocations else ''}")
    return {k: v[keep] for k, v in arrays.items()}


def slide_split(chromosomes: dict[str, np.ndarray], test_slides: list[str], val_fraction: float,
                seed: int) -> dict[str, np.ndarray]:
    """Indices into the *labelled* chromosomes (translocation ≥ 0): test = the test slides' chromosomes."""
    from napari_cellsynth.training.data.labelled_crops import group_split  # imports torch: not for a refusal

    labelled = np.flatnonzero(chromosomes["translocation"] >= 0)
    unknown = sorted(set(test_slides) - set(chromosomes["slide"].tolist()))
    if unknown:
        raise ValueError(f"test slides {unknown} are not in the data (slides: "
                         f"{sorted(set(chromosomes['slide'][labelled].tolist()))})")
    y = chromosomes["translocation"][labelled]
    split = group_split(y, chromosomes["slide"][labelled], test_slides, seed, val_fraction)
    for k, name in enumerate(CLASSES):
        if not (y[split["test"]] == k).any():
            raise ValueError(f"the test slides {test_slides} hold no '{name}' chromosome; add a slide that has one")
    return split


def donors(chromosomes: dict[str, np.ndarray], test_slides: list[str]) -> np.ndarray:
    """Indices (into all chromosomes) whose DAPI crops may seed synthetic translocations."""
    return np.flatnonzero(~np.isin(chromosomes["slide"], test_slides) & (chromosomes["translocation"] != 1))


def write_classification_set(chromosomes: dict[str, np.ndarray], split: dict[str, np.ndarray], out: Path) -> dict:
    """``crops.npz`` (images = RGB crops, labels = class names, slide) and ``split.npz``; returns the counts."""
    labelled = np.flatnonzero(chromosomes["translocation"] >= 0)
    labels = np.array(CLASSES)[chromosomes["translocation"][labelled]]
    with atomic_open(out / "crops.npz", "wb") as fh:
        np.savez(fh, images=chromosomes["rgb"][labelled], labels=labels, channels=np.array(["R", "G", "B"]),
                 slide=chromosomes["slide"][labelled], metaphase=chromosomes["metaphase"][labelled])
    with atomic_open(out / "split.npz", "wb") as fh:
        np.savez(fh, **split)
    return {part: {name: int((labels[index] == name).sum()) for name in CLASSES} for part, index in split.items()}


def chromosome_masks(dapi: np.ndarray) -> np.ndarray:
    """Each crop's own pixels: the builder zeroed every other pixel, so DAPI > 0 marks the chromosome."""
    return dapi[:, 0] > 0
