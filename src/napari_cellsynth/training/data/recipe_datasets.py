"""The real data sets the classifier's default recipe is measured on (issue 14), built from ../shared/data.

    python -m napari_cellsynth.training.data.recipe_datasets --jurkat ../shared/data/jurkat/jurkat_cells.npz \
        --chromosomes runs/mfish/chromosomes.npz --out runs/recipe-sets

``chromosomes.npz`` comes from ``python -m napari_cellsynth.training.data.mfish_dataset``.  Written:

* ``jurkat300.npz``: 300 Jurkat crops drawn stratified by phase (seeded), so the rare phases keep
  their share: a few mitotic cells, tiny classes included (use ``--label-map jurkat4`` or ``jurkat7``).
* ``mfish24.npz``: every chromosome instance as its five fluorophore planes (5×64×64, uint8), labelled
  with its class ``01``–``22``, ``X``, ``Y``: the 24-class identity task of M-FISH karyotyping.
* ``mfish-rgb-jpeg/<class>/*.jpg``: a small RGB set as a user would bring it: chromosomes of every
  ``--jpeg-every``-th metaphase, each cut to its bounding box (+3 px), so sizes differ, saved as JPEG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from napari_cellsynth.core.atomic import atomic_open
from napari_cellsynth.core.entry import run_entry

CLASS_NAMES = [f"{k:02d}" for k in range(1, 23)] + ["X", "Y"]


def jurkat_subset(path: Path, n: int, seed: int) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        labels = data["labels"]
        keep, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
        keep = np.sort(keep)
        return {"images": data["images"][keep], "labels": labels[keep], "channels": data["channels"],
                "source_index": keep}


def bounding_box(crop: np.ndarray, margin: int = 3) -> tuple[slice, slice]:
    rows, cols = np.nonzero(crop.max(axis=0))
    height, width = crop.shape[1:]
    return (slice(max(0, rows.min() - margin), min(height, rows.max() + margin + 1)),
            slice(max(0, cols.min() - margin), min(width, cols.max() + margin + 1)))


def write_jpegs(chromosomes: dict, out: Path, every: int) -> int:
    import imageio.v3 as iio

    metaphases = sorted(set(chromosomes["metaphase"].tolist()))[::every]
    picked = np.flatnonzero(np.isin(chromosomes["metaphase"], metaphases))
    for i in picked:
        crop = chromosomes["rgb"][i]
        if not crop.any():
            continue
        rows, cols = bounding_box(crop)
        folder = out / CLASS_NAMES[chromosomes["chromosome_class"][i] - 1]
        folder.mkdir(parents=True, exist_ok=True)
        iio.imwrite(folder / f"{chromosomes['metaphase'][i]}_{i:05d}.jpg", np.moveaxis(crop[:, rows, cols], 0, -1),
                    quality=90)
    return len(picked)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.data.recipe_datasets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jurkat", required=True)
    p.add_argument("--chromosomes", required=True, help="chromosomes.npz from napari_cellsynth.training.data.mfish_dataset")
    p.add_argument("--jurkat-n", type=int, default=300)
    p.add_argument("--jpeg-every", type=int, default=10, help="use every N-th metaphase for the JPEG set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "jurkat300.npz", "wb") as fh:
        np.savez_compressed(fh, **jurkat_subset(Path(args.jurkat), args.jurkat_n, args.seed))
    with np.load(args.chromosomes, allow_pickle=False) as data:
        chromosomes = {k: data[k] for k in ("fluorophores", "rgb", "chromosome_class", "metaphase")}
    names = np.array(CLASS_NAMES)[chromosomes["chromosome_class"] - 1]
    with atomic_open(out / "mfish24.npz", "wb") as fh:
        np.savez_compressed(fh, images=chromosomes["fluorophores"], labels=names,
                            channels=np.array(["fluor_1", "fluor_2", "fluor_3", "fluor_4", "fluor_5"]))
    n = write_jpegs(chromosomes, out / "mfish-rgb-jpeg", args.jpeg_every)
    print(f"wrote {out}: jurkat300.npz, mfish24.npz ({len(names)} chromosomes), mfish-rgb-jpeg ({n} JPEGs)")


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.data.recipe_datasets"))
