"""The chromosome identity set (1–22, X, Y) of one M-FISH probe set, for an object classifier.

    python -m napari_cellsynth.training.data.chromosome_identity --chromosomes runs/mfish/chromosomes.npz \
        --probe-set V --exclude-slides V26 --out runs/zoo/mfish-vysis-identity.npz

The five fluorophore planes mean different dyes in each probe set (ASI, PSI, Vysis), so a classifier
of identity is trained within one probe set; its channels are named after that set's dyes, in the
order of the slide's planes.  Crops are those of :mod:`mfish_dataset` (centred, native scale, only the
chromosome's own pixels, the rest 0), so the classifier is trained with ``--object-crop window
--object-mask object`` and objects in napari and batch runs are cut alike.  Whole slides can be held out
(``--exclude-slides``), e.g. the slide of the shipped sample metaphase.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth._sample_data import MFISH_PLANES
from napari_cellsynth.core.atomic import atomic_open
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.data.mfish import FLUOROPHORES

CLASS_NAMES = [f"{k:02d}" for k in range(1, 23)] + ["X", "Y"]
# channel names: the planes' file letters (training.data.mfish.FLUOROPHORES); Vysis planes by their dyes, as
# the shipped sample metaphase names its layers
DYES = {probe: [f"{probe}-{letter}" for letter in letters] for probe, letters in FLUOROPHORES.items()}
DYES["V"] = MFISH_PLANES[1:]


def identity_set(chromosomes: dict[str, np.ndarray], probe_set: str, exclude_slides: list[str]) -> dict[str, np.ndarray]:
    keep = (chromosomes["probe_set"] == probe_set) & ~np.isin(chromosomes["slide"], exclude_slides)
    if not keep.any():
        raise ValueError(f"no chromosomes of probe set {probe_set!r} outside slides {exclude_slides}; probe sets "
                         f"here: {sorted(set(chromosomes['probe_set'].tolist()))}")
    return {"images": chromosomes["fluorophores"][keep],
            "labels": np.array(CLASS_NAMES)[chromosomes["chromosome_class"][keep] - 1],
            "channels": np.array(DYES[probe_set]),
            "metaphase": chromosomes["metaphase"][keep], "slide": chromosomes["slide"][keep]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.data.chromosome_identity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chromosomes", required=True, help="chromosomes.npz from napari_cellsynth.training.data.mfish_dataset")
    p.add_argument("--probe-set", default="V", choices=sorted(DYES))
    p.add_argument("--exclude-slides", nargs="*", default=[])
    p.add_argument("--out", required=True, help=".npz to write (images, labels, channels)")
    args = p.parse_args(argv)
    with np.load(args.chromosomes, allow_pickle=False) as data:
        chromosomes = {k: data[k] for k in ("fluorophores", "chromosome_class", "probe_set", "slide", "metaphase")}
    out = identity_set(chromosomes, args.probe_set, args.exclude_slides)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out, "wb") as fh:
        np.savez_compressed(fh, **out)
    print(f"wrote {args.out}: {len(out['labels'])} chromosomes of {len(set(out['metaphase'].tolist()))} metaphases, "
          f"probe set {args.probe_set}, slides {sorted(set(out['slide'].tolist()))}")
    return {k: len(v) for k, v in out.items()}


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.data.chromosome_identity"))
