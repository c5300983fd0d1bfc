"""Synthetic translocations spliced from two normal chromosomes of one metaphase.

    python -m napari_cellsynth.training.data.spliced_translocations --chromosomes runs/mfish-v2/chromosomes.npz \
        --exclude-slides A20 V26 A04 V14 P09 --count 1000 --out runs/spliced.npz
    cellsynth train classifier --data ... --extra-train runs/spliced.npz ...

A reciprocal translocation leaves a derivative chromosome whose end carries a segment of its
partner, painted in the partner's M-FISH colour code (the positives of the label-check grids look
exactly so).  :func:`splice` makes one: the terminal share ``f`` of a *recipient* chromosome (cut
across its principal axis, at a random end) takes its fluorophore planes from the matching end of a
*donor* of another class, read along the donor's own principal axis (:func:`scipy.ndimage.map_coordinates`),
so the segment keeps the donor's real texture and intensity.  The recipient's DAPI plane and outline
stay as they are.  Donor points that fall outside the donor are filled with the donor's mean colour
scaled by the recipient's DAPI.  Donor and recipient come from one metaphase, so the probe set and the
staining are the same.

With ``interstitial`` the segment is a band inside the chromosome instead of its end (an insertion,
or the middle band some of the labelled positives show), painted from a band of the donor.

This is a hand-made generator of the rare class, built from the labelling rule itself (a chromosome
with ≥ 10 % of its partner's code); it is used only for training crops and never for validation or
test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_cellsynth.core.atomic import atomic_open
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.data.translocations import RARE

FRACTION = (0.15, 0.5)
INTERSTITIAL_FRACTION = (0.1, 0.3)


def principal_frame(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, unit long axis and unit cross axis (row, column vectors) of a binary mask."""
    points = np.argwhere(mask).astype(np.float64)
    centre = points.mean(axis=0)
    if len(points) < 2:
        return centre, np.array([1.0, 0.0]), np.array([0.0, 1.0])
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    long_axis = vectors[:, -1]
    return centre, long_axis, np.array([-long_axis[1], long_axis[0]])


def splice(recipient: np.ndarray, donor: np.ndarray, fraction: float, rng: np.random.Generator,
           interstitial: bool = False) -> np.ndarray:
    """A C×H×W crop (plane 0 DAPI, planes 1… fluorophores, background 0): ``recipient`` with its terminal
    ``fraction`` painted from the end of ``donor`` (with ``interstitial``, a band of that share at a random
    place inside, painted from a band of the donor).  Returns a new array of the recipient's dtype."""
    if recipient.shape != donor.shape or recipient.ndim != 3 or recipient.shape[0] < 2:
        raise ValueError(f"splice needs two C×H×W crops with DAPI and ≥ 1 fluorophore plane, got "
                         f"{recipient.shape} and {donor.shape}")
    if not 0 < fraction < (0.8 if interstitial else 1):
        raise ValueError(f"fraction must be in (0, {0.8 if interstitial else 1}) for "
                         f"{'a band' if interstitial else 'an end'}, got {fraction}")
    own, their = recipient.any(axis=0), donor.any(axis=0)
    if own.sum() < 2 or their.sum() < 2:
        raise ValueError("splice needs a recipient and a donor with chromosome pixels")
    centre, axis, cross = principal_frame(own)
    points = np.argwhere(own).astype(np.float64)
    along = (points - centre) @ axis * rng.choice([-1.0, 1.0])
    start = rng.uniform(0.1, 0.9 - fraction) if interstitial else 1 - fraction
    low, high = np.quantile(along, [start, start + fraction]) if interstitial else (np.quantile(along, start), np.inf)
    segment = (along >= low) & (along <= high)
    anchor = (low + min(high, along.max())) / 2 if interstitial else along.max()
    depth = anchor - along[segment]
    offset = (points[segment] - centre) @ cross

    donor_centre, donor_axis, donor_cross = principal_frame(their)
    donor_axis = donor_axis * rng.choice([-1.0, 1.0])
    donor_along = (np.argwhere(their) - donor_centre) @ donor_axis
    donor_anchor = (rng.uniform(*np.quantile(donor_along, [0.25, 0.75])) if interstitial else donor_along.max())
    source = (donor_centre + np.outer(donor_anchor - depth, donor_axis) + np.outer(offset, donor_cross)).T
    inside = ndimage.map_coordinates(their.astype(np.float64), source, order=1) >= 0.5

    out = recipient.copy()
    rows, cols = points[segment].astype(int).T
    dapi = recipient[0, rows, cols].astype(np.float64)
    donor_dapi = donor[0][their].astype(np.float64).mean()
    top = np.iinfo(recipient.dtype).max if recipient.dtype.kind in "iu" else np.inf
    for plane in range(1, recipient.shape[0]):
        read = ndimage.map_coordinates(donor[plane].astype(np.float64), source, order=1)
        mean_colour = donor[plane][their].astype(np.float64).mean()
        filled = np.where(inside, read, mean_colour * dapi / max(donor_dapi, 1e-6))
        out[plane, rows, cols] = np.clip(np.rint(filled) if top != np.inf else filled, 0, top).astype(out.dtype)
    return out


def spliced_set(images: np.ndarray, classes: np.ndarray, metaphases: np.ndarray, candidates: np.ndarray,
                n: int, seed: int, fraction: tuple[float, float] = FRACTION, interstitial: float = 0.0,
                interstitial_fraction: tuple[float, float] = INTERSTITIAL_FRACTION) -> dict[str, np.ndarray]:
    """``n`` spliced crops from the chromosomes ``candidates`` (indices into ``images``, N×C×H×W): each a
    random recipient with a donor of another class from its metaphase; a share ``interstitial`` of them
    with a band inside instead of an end.  Returns ``images``, the ``recipient`` and ``donor`` indices, the
    ``fraction`` of each and whether it is ``interstitial``."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if not 0 <= interstitial <= 1:
        raise ValueError(f"interstitial is a share in [0, 1], got {interstitial}")
    rng = np.random.default_rng(seed)
    candidates = np.asarray(candidates)
    donors_of = {}
    for index in candidates:
        same = candidates[(metaphases[candidates] == metaphases[index]) & (classes[candidates] != classes[index])]
        if same.size:
            donors_of[int(index)] = same
    if not donors_of:
        raise ValueError("no metaphase has two chromosomes of different classes among the candidates")
    recipients = rng.choice(sorted(donors_of), size=n)
    out = {"images": np.empty((n, *images.shape[1:]), images.dtype), "recipient": recipients,
           "donor": np.empty(n, np.int64), "fraction": rng.uniform(*fraction, size=n), "interstitial": np.zeros(n, bool)}
    if interstitial:
        inside = out["interstitial"] = rng.random(n) < interstitial
        out["fraction"][inside] = rng.uniform(*interstitial_fraction, size=int(inside.sum()))
    inside = out["interstitial"]
    for k, recipient in enumerate(recipients):
        out["donor"][k] = rng.choice(donors_of[int(recipient)])
        out["images"][k] = splice(images[recipient], images[out["donor"][k]], out["fraction"][k], rng, bool(inside[k]))
    return out


def save_spliced(path: Path, made: dict[str, np.ndarray], **extra: np.ndarray) -> Path:
    """:func:`spliced_set`'s crops as an .npz of labelled crops (``labels`` = translocation, what ``--extra-train``
    and ``--focused-generated`` read), with their provenance and any ``extra`` arrays; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=made["images"], labels=np.full(len(made["images"]), RARE), recipient=made["recipient"],
                 donor=made["donor"], fraction=made["fraction"], interstitial=made["interstitial"], **extra)
    return path


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.data.spliced_translocations",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chromosomes", required=True, help="chromosomes.npz of napari_cellsynth.training.data.mfish_dataset")
    p.add_argument("--exclude-slides", nargs="*", default=[],
                   help="slides never used (the test slides): no recipient or donor comes from them")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--interstitial", type=float, default=0.0, help="share of bands inside instead of ends")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="an .npz of DAPI + fluorophore crops labelled 'translocation'")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out {out}: give a file name ending in .npz")
    with np.load(args.chromosomes, allow_pickle=False) as data:
        missing = {"dapi", "fluorophores", "chromosome_class", "metaphase", "slide", "translocation"} - set(data.files)
        if missing:
            raise ValueError(f"{args.chromosomes} lacks {sorted(missing)}; build it with python -m "
                             "napari_cellsynth.training.data.mfish_dataset")
        arrays = {k: data[k] for k in ("dapi", "fluorophores", "chromosome_class", "metaphase", "slide", "translocation")}
    unknown = sorted(set(args.exclude_slides) - set(arrays["slide"].tolist()))
    if unknown:
        raise ValueError(f"--exclude-slides {unknown} are not in {args.chromosomes}")
    candidates = np.flatnonzero((arrays["translocation"] == 0) & ~np.isin(arrays["slide"], args.exclude_slides))
    images = np.concatenate([arrays["dapi"], arrays["fluorophores"]], axis=1)
    made = spliced_set(images, arrays["chromosome_class"], arrays["metaphase"], candidates, args.count, args.seed,
                       interstitial=args.interstitial)
    channels = np.array(["DAPI"] + [f"plane {k}" for k in range(1, arrays["fluorophores"].shape[1] + 1)])
    save_spliced(out, made, channels=channels, slide=arrays["slide"][made["recipient"]],
                 metaphase=arrays["metaphase"][made["recipient"]])
    print(f"{out}: {args.count} spliced translocations from {len(candidates)} negative chromosomes")
    return out


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.data.spliced_translocations"))
