"""Build the chromosome data set from ADIR M-FISH metaphases (paper 004's task).

    python -m napari_cellsynth.training.data.mfish_dataset --root ../shared/data/mfish --size 64 --out runs/mfish

Per metaphase: each fluorophore plane is thresholded (Otsu over the chromosome pixels) into a
per-pixel 5-bit code.  Each class's code (1–22, X = 23, Y = 24) is learnt per probe set from the
normal (46,XX / 46,XY) metaphases: a plane is "on" for a class when more than 40 % of its pixels are.
A folder without normal metaphases of a probe set (new, held-out slides of aberrant cells) learns the codes
from another folder's normal metaphases of the same probe set: ``--codes-from ../shared/data/mfish``.
A metaphase's karyotype code is its folder name's ending (``54`` in ``V26__54``); a code that README.TXT does
not list gets no karyotype, so its chromosomes are labelled unknown (-1), and the builder warns in one line.
Chromosome instances are the connected components of each class in the karyotype image, overlap
pixels (255) left out, components under ``--min-area`` pixels dropped.

**Translocation label** (the rule, documented):
* positive: a chromosome of class c in a metaphase whose karyotype (README.TXT) lists a translocation
  or insertion between c and a partner p, and whose pixels carry p's fluorophore code over a connected
  segment of at least ``--min-segment`` pixels and ``--min-fraction`` of the chromosome;
* negative (``--negatives unmentioned``, the default since issue 20): every chromosome of a normal
  karyotype, and in an aberrant karyotype every chromosome whose class the karyotype never names (no
  loss, gain, translocation, insertion, derivative or note of it: :func:`mfish.mentioned_classes`).
  ``--negatives normal-karyotypes`` is the first rule: negatives only from normal karyotypes, which
  put every positive slide's labelled chromosomes in one class, so a classifier could tell the
  classes apart by the slide alone (docs/results.md §11);
* unknown: everything else (the named classes' other chromosomes, EX).

RGB: of the five fluorophore planes, the three whose on/off codes are most balanced over the 24
classes (on for closest to half of them) become R, G, B, per probe set; the choice is written to
``dataset.json``.  Crops are ``--size`` pixels, centred on the chromosome, at the original scale when
it fits (larger ones are scaled down), holding only the chromosome's own pixels (the rest set to 0).

Outputs: ``chromosomes.npz`` (every instance: ``dapi`` N×1×S×S, ``rgb`` N×3×S×S, ``fluorophores``
N×5×S×S, ``chromosome_class``, ``translocation`` 1/0/-1, ``partner_fraction``, ``metaphase``, ``slide``,
``probe_set``), ``translocation_task.npz`` (``images`` = RGB crops and ``labels`` translocation/normal
for the labelled ones, with ``slide`` for splits by slide), ``translocation_planes.npz`` (the same with DAPI and
the five fluorophore planes as six channels: what ``cellsynth study --config paper004`` reads), ``dataset.json``
(codes, RGB choice, counts) and ``examples.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from skimage.filters import threshold_otsu
from skimage.measure import label as connected

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.crops import extract_object_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.data.mfish import (OVERLAP, Metaphase, list_metaphases, parse_karyotype_codes,
                                                  read_metaphase)
from napari_cellsynth.training.data.translocations import PLANES, dapi_and_planes, labelled_task

NORMAL_CODES = ("XX", "XY")
ON_FRACTION = 0.4


def pixel_codes(metaphase: Metaphase) -> np.ndarray:
    """5×H×W booleans: each fluorophore plane above its Otsu threshold over the chromosome pixels."""
    chromosomes = (metaphase.karyotype > 0) & (metaphase.karyotype != OVERLAP) if metaphase.karyotype is not None \
        else metaphase.dapi > threshold_otsu(metaphase.dapi)
    return np.stack([plane > threshold_otsu(plane[chromosomes]) for plane in metaphase.fluorophores])


def learn_class_codes(metaphases: list[Metaphase]) -> dict[str, np.ndarray]:
    """Per probe set, a 25×5 boolean table (row = class 1–24; row 0 unused) from normal metaphases."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for mp in metaphases:
        if mp.code not in NORMAL_CODES:
            continue
        on = pixel_codes(mp)
        s = sums.setdefault(mp.probe_set, np.zeros((25, 5)))
        n = counts.setdefault(mp.probe_set, np.zeros(25))
        for k in range(1, 25):
            mask = mp.karyotype == k
            if mask.any():
                s[k] += on[:, mask].mean(axis=1)
                n[k] += 1
    return {ps: (sums[ps] / np.maximum(counts[ps], 1)[:, None]) > ON_FRACTION for ps in sums}


def rgb_planes(codes: np.ndarray) -> list[int]:
    """The three planes whose codes are on for the closest to half of the 24 classes."""
    balance = np.abs(codes[1:].mean(axis=0) - 0.5)
    return sorted(np.argsort(balance, kind="stable")[:3].tolist())


def instances(karyotype: np.ndarray, min_area: int) -> tuple[np.ndarray, dict[int, int]]:
    """An instance label image (unique ids) and {instance id: chromosome class}."""
    out = np.zeros(karyotype.shape, np.int32)
    classes: dict[int, int] = {}
    for k in range(1, 25):
        components = connected(karyotype == k)
        for c in range(1, components.max() + 1):
            mask = components == c
            if mask.sum() >= min_area:
                new = len(classes) + 1
                out[mask] = new
                classes[new] = k
    return out, classes


def partner_fraction(on: np.ndarray, mask: np.ndarray, own: np.ndarray, partner: np.ndarray) -> tuple[int, float]:
    """Largest connected segment of ``mask`` whose pixels carry the partner's (not the own) code."""
    if np.array_equal(own, partner):
        return 0, 0.0
    matches = mask & np.all(on == partner[:, None, None], axis=0)
    if not matches.any():
        return 0, 0.0
    components = connected(matches)
    largest = int(np.bincount(components.ravel())[1:].max())
    return largest, largest / int(mask.sum())


def label_metaphase(mp: Metaphase, codes: np.ndarray, karyotypes: dict, args) -> tuple[list[dict], np.ndarray]:
    """One record per chromosome instance (class, translocation label, partner fraction) and the instance image."""
    on = pixel_codes(mp)
    ids, classes = instances(mp.karyotype, args.min_area)
    pairs = karyotypes.get(mp.code, {}).get("translocations", [])
    records = []
    for instance, k in classes.items():
        mask = ids == instance
        partners = [b if a == k else a for a, b in pairs if k in (a, b)]
        best = max((partner_fraction(on, mask, codes[k], codes[p]) for p in partners), default=(0, 0.0),
                   key=lambda x: x[1])
        mentioned = karyotypes.get(mp.code, {}).get("mentioned")
        if mp.code in NORMAL_CODES:
            label = 0
        elif partners and best[0] >= args.min_segment and best[1] >= args.min_fraction:
            label = 1
        elif args.negatives == "unmentioned" and mentioned is not None and k not in mentioned:
            label = 0
        else:
            label = -1
        records.append({"instance": instance, "class": k, "translocation": label, "partner_fraction": best[1]})
    return records, ids


def build(args) -> dict:
    karyotypes = parse_karyotype_codes(Path(args.root) / "README.TXT")
    found = [m for m in list_metaphases(args.root) if not args.only or m[1] in args.only]
    metaphases = [read_metaphase(folder, name) for folder, name in found]
    metaphases = [m for m in metaphases if m.karyotype is not None]
    unlisted = sorted({m.code for m in metaphases if m.code not in karyotypes and m.code not in NORMAL_CODES})
    if unlisted:
        print(f"warning: karyotype code(s) {', '.join(unlisted)} are missing from {Path(args.root) / 'README.TXT'}: "
              "their chromosomes are labelled unknown (-1); add the karyotypes there to label them", file=sys.stderr)
    codes = learn_class_codes(metaphases if not args.codes_from else
                              [read_metaphase(f, n) for f, n in list_metaphases(args.codes_from)])
    choice = {ps: rgb_planes(table) for ps, table in codes.items()}
    rows: dict[str, list] = {k: [] for k in ("dapi", "rgb", "fluorophores", "chromosome_class", "translocation",
                                             "partner_fraction", "metaphase", "slide", "probe_set")}
    size = (args.size, args.size)
    for mp in metaphases:
        if mp.probe_set not in codes:
            print(f"skipping {mp.name}: no normal metaphase of probe set {mp.probe_set} to learn codes from",
                  file=sys.stderr)
            continue
        records, ids = label_metaphase(mp, codes[mp.probe_set], karyotypes, args)
        stack = np.concatenate([mp.dapi[None], mp.fluorophores]).astype(np.float32)
        by_id = {r["instance"]: r for r in records}
        objects = extract_object_crops(np.concatenate([stack, ids[None].astype(np.float32)]), ids, size,
                                       margin=0.1, keep_scale=True)
        for instance, crop in zip(objects.labels, objects.crops):
            own = np.abs(crop[-1] - instance) < 0.5  # this chromosome's pixels only
            planes = np.where(own[None], crop[:-1], 0).round().clip(0, 255).astype(np.uint8)
            r = by_id[int(instance)]
            rows["dapi"].append(planes[:1])
            rows["fluorophores"].append(planes[1:])
            rows["rgb"].append(planes[1:][choice[mp.probe_set]])
            rows["chromosome_class"].append(r["class"])
            rows["translocation"].append(r["translocation"])
            rows["partner_fraction"].append(r["partner_fraction"])
            rows["metaphase"].append(mp.name)
            rows["slide"].append(mp.slide)
            rows["probe_set"].append(mp.probe_set)
    return {"arrays": {k: np.asarray(v) for k, v in rows.items()}, "codes": codes, "rgb_choice": choice,
            "karyotypes": karyotypes, "n_metaphases": len(metaphases)}


def examples_png(arrays: dict, path: Path, per_row: int = 8) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(per_row * 1.2, 4 * 1.3))
    axes = fig.subplots(4, per_row)
    rng = np.random.default_rng(0)
    chosen = {}
    for label in (1, 0):
        members = np.flatnonzero(arrays["translocation"] == label)
        chosen[label] = rng.choice(members, min(per_row, len(members)), replace=False) if len(members) else []
    for row, (label, plane) in enumerate([(1, "rgb"), (1, "dapi"), (0, "rgb"), (0, "dapi")]):
        picks = chosen[label]  # the same chromosomes in the RGB row and the DAPI row below it
        for ax in axes[row]:
            ax.axis("off")
        for ax, i in zip(axes[row], picks):
            image = arrays[plane][i]
            ax.imshow(image.transpose(1, 2, 0) if plane == "rgb" else image[0], cmap=None if plane == "rgb" else "gray")
            ax.set_title(f"{arrays['metaphase'][i]} c{arrays['chromosome_class'][i]}", fontsize=6)
        axes[row][0].text(-0.2, 0.5, f"{'transloc.' if label else 'normal'}\n{plane}", transform=axes[row][0].transAxes,
                          ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.data.mfish_dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the mfish folder (with README.TXT)")
    parser.add_argument("--only", nargs="+", help="metaphase names to use (e.g. V260554 V1401XX)")
    parser.add_argument("--codes-from", help="learn the class codes from this folder's normal metaphases (for a folder "
                                             "of held-out slides without normal metaphases of its probe set)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--min-area", type=int, default=40)
    parser.add_argument("--min-segment", type=int, default=20)
    parser.add_argument("--min-fraction", type=float, default=0.1)
    parser.add_argument("--negatives", default="unmentioned", choices=["unmentioned", "normal-karyotypes"],
                        help="where negatives come from: normal karyotypes and the classes an aberrant karyotype "
                             "never names (default), or normal karyotypes only (the first rule)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built = build(args)
    arrays = built["arrays"]
    with atomic_open(out / "chromosomes.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tasks = {"translocation_task.npz": labelled_task(arrays, arrays["rgb"], ["R", "G", "B"])}
    if "fluorophores" in arrays:  # what cellsynth study --config paper004 reads: DAPI and the five planes
        tasks["translocation_planes.npz"] = labelled_task(arrays, dapi_and_planes(arrays), PLANES)
    for name, task in tasks.items():
        with atomic_open(out / name, "wb") as fh:
            np.savez_compressed(fh, **task)
    counts = {"metaphases": built["n_metaphases"], "chromosomes": int(len(arrays["translocation"])),
              "translocation": dict(Counter({1: "positive", 0: "negative", -1: "unknown"}[int(v)]
                                            for v in arrays["translocation"]))}
    summary = {"counts": counts, "rule": {"min_segment": args.min_segment, "min_fraction": args.min_fraction,
                                          "on_fraction": ON_FRACTION, "min_area": args.min_area,
                                          "negatives": args.negatives},
               "rgb_planes": {ps: [f"plane {i}" for i in idx] for ps, idx in built["rgb_choice"].items()},
               "class_codes": {ps: table[1:].astype(int).tolist() for ps, table in built["codes"].items()}}
    write_json_atomic(out / "dataset.json", summary)
    if counts["translocation"].get("positive") and counts["translocation"].get("negative"):
        examples_png(arrays, out / "examples.png")
    print(counts)
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.data.mfish_dataset"))
