"""PNG grids per slide for checking the translocation labels by eye (issue 20, deliverable 2).

    python -m napari_cellsynth.training.data.label_grids --chromosomes runs/mfish-v2/chromosomes.npz \
        --out runs/label-check

For each slide with positives: every positive chromosome, then as many negatives of the same slide
drawn at random (seeded).  Each chromosome is drawn twice, as two colour composites of its five
fluorophore planes (planes 1–3 above, 3–5 below, each plane scaled to its 99.5th percentile within
the crop): a segment painted with another chromosome's combinatorial code differs from the rest in
at least one plane, so it shows as a colour change in at least one composite.  Titles give the
chromosome's class and the partner-code fraction the labelling rule measured.  A person looks for a
segment of a second colour; the counts of confirmed positives go into docs/results.md §11.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.data.chromosome_identity import CLASS_NAMES

PER_ROW = 9


def composites(fluorophores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two H×W×3 float images in [0, 1] of a 5×H×W crop: planes 1–3 and planes 3–5."""
    planes = fluorophores.astype(np.float64)
    own = planes.max(axis=0) > 0
    scale = np.array([np.percentile(p[own], 99.5) if own.any() else 1.0 for p in planes])
    planes = np.clip(planes / np.maximum(scale, 1e-9)[:, None, None], 0, 1)
    return planes[:3].transpose(1, 2, 0), planes[2:].transpose(1, 2, 0)


def slide_grid(arrays: dict, slide: str, path: Path, seed: int = 0) -> dict:
    """Write one slide's grid; returns its counts."""
    from matplotlib.figure import Figure

    here = arrays["slide"] == slide
    positives = np.flatnonzero(here & (arrays["translocation"] == 1))
    negatives = np.flatnonzero(here & (arrays["translocation"] == 0))
    negatives = np.sort(np.random.default_rng(seed).choice(negatives, min(len(positives), len(negatives)),
                                                            replace=False))
    groups = [("translocation (positive)", positives), ("normal (negative), random", negatives)]
    rows = sum(max(1, -(-len(members) // PER_ROW)) for _, members in groups)
    fig = Figure(figsize=(PER_ROW * 1.4, rows * 2.9 + 0.6))
    axes = fig.subplots(rows * 2, PER_ROW, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    row = 0
    for name, members in groups:
        for start in range(0, max(1, len(members)), PER_ROW):
            for col, i in enumerate(members[start:start + PER_ROW]):
                upper, lower = composites(arrays["fluorophores"][i])
                axes[2 * row, col].imshow(upper)
                axes[2 * row + 1, col].imshow(lower)
                axes[2 * row, col].set_title(f"#{i} {CLASS_NAMES[arrays['chromosome_class'][i] - 1]} "
                                             f"{arrays['partner_fraction'][i]:.0%}", fontsize=6)
            axes[2 * row, 0].text(-0.15, 0.5, name.split(" ")[0], transform=axes[2 * row, 0].transAxes,
                                  ha="right", va="center", fontsize=7, rotation=90)
            row += 1
    fig.suptitle(f"slide {slide}: {len(positives)} positives (top), {len(negatives)} random negatives (bottom); "
                 "each chromosome as planes 1–3 over planes 3–5", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return {"positives": int(len(positives)), "negatives_shown": int(len(negatives))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.data.label_grids", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chromosomes", required=True, help="chromosomes.npz of napari_cellsynth.training.data.mfish_dataset")
    p.add_argument("--slides", nargs="*", help="slides to draw (default: every slide with positives)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    with np.load(args.chromosomes, allow_pickle=False) as data:
        arrays = {k: data[k] for k in ("fluorophores", "translocation", "partner_fraction", "chromosome_class", "slide")}
    slides = args.slides or sorted(set(arrays["slide"][arrays["translocation"] == 1].tolist()))
    unknown = sorted(set(slides) - set(arrays["slide"].tolist()))
    if unknown:
        raise ValueError(f"slides {unknown} are not in {args.chromosomes}; slides there: "
                         f"{sorted(set(arrays['slide'].tolist()))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {slide: slide_grid(arrays, slide, out / f"labels_{slide}.png", args.seed) for slide in slides}
    for slide, c in counts.items():
        print(f"{out / f'labels_{slide}.png'}: {c['positives']} positives, {c['negatives_shown']} negatives")
    return counts


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.data.label_grids"))
