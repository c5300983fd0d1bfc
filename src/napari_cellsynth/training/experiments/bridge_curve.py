"""A BBDM's quality over training: paired SSIM and KID of each EMA snapshot on held-out chromosomes.

    python -m napari_cellsynth.training.experiments.bridge_curve --run runs/bbdm5-asi \
        --classifier zoo:classifier-translocations --slides A20 A04 --count 256 --steps 50 \
        --out runs/bbdm5-asi/bridge_curve.json

The run keeps fp16 EMA snapshots (``cellsynth train bbdm --snapshot-every N``: ``snapshots/ema_<step>.pt``).  Each
one is exported to a bundle (the same exporter and parity check as ``cellsynth export bbdm``) and bridges the DAPI
crops of ``--count`` chromosomes of ``--slides`` (slides the run never trained on: refused otherwise; a seeded
sample) to its target planes through ONNX Runtime, ``--steps`` bridge steps.  Two scores, because the translation
is paired (each DAPI crop has its real planes):

- **SSIM** of each generated plane against the real one, averaged over the chromosome's own pixels (the SSIM map of
  scikit-image, 7 × 7 windows), then over planes and chromosomes (mean ± std over chromosomes);
- **KID** (× 10³) between the classifier bundle's features of the real and the synthetic chromosomes (the
  classifier reads DAPI and the planes, or the planes alone, as its card says); ``real_halves_kid_x1000`` is its
  floor, between two halves of the real chromosomes.

Steps already in ``--out`` are skipped, so a killed run resumes; ``bridge_curve.png`` plots both.  "Levels off"
is read from the curve: the last snapshots within each other's spread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.classify import bundle_features
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.translate import TranslationSettings, classifier_crops, translate_crops
from napari_cellsynth.export.export_bbdm import export_bbdm
from napari_cellsynth.training.data.translocations import chromosome_masks, load_chromosomes
from napari_cellsynth.training.records.bbdm_run import BbdmRun
from napari_cellsynth.training.experiments.snapshot_curve import (earlier_rows, plot_curves, run_snapshots,
                                                                  score_snapshots)
from napari_cellsynth.training.reports.generator_metrics import kernel_inception_distance


def held_out_pairs(record: BbdmRun, slides: list[str], count: int, seed: int) -> dict[str, np.ndarray]:
    """DAPI crops and their real target planes of ``count`` chromosomes of ``slides`` (seeded sample, in order)."""
    excluded = set(record.exclude_slides or [])
    if not set(slides) <= excluded:
        raise ValueError(f"slides {sorted(set(slides) - excluded)} were in the run's training data; give slides it "
                         f"excluded ({' '.join(sorted(excluded))})")
    chromosomes = load_chromosomes(record.data)
    target = record.planes
    if target not in chromosomes:
        raise ValueError(f"{record.data} has no {target!r} planes; rebuild it with the M-FISH data set builder")
    rows = np.flatnonzero(np.isin(chromosomes["slide"], slides))
    if not len(rows):
        raise ValueError(f"no chromosomes of slides {' '.join(slides)} in {record.data}")
    rows = np.sort(np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False))
    return {"dapi": chromosomes["dapi"][rows], "target": chromosomes[target][rows]}


def masked_ssim(real: np.ndarray, fake: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per chromosome: the SSIM map of each plane averaged over the chromosome's pixels, then over planes."""
    from skimage.metrics import structural_similarity

    scores = np.zeros(len(real))
    for i, (r, f, m) in enumerate(zip(real, fake, masks)):
        planes = [structural_similarity(rp.astype(np.float64), fp.astype(np.float64), data_range=255.0, full=True)[1]
                  for rp, fp in zip(r, f)]
        scores[i] = float(np.mean([plane[m].mean() for plane in planes])) if m.any() else np.nan
    return scores


def score_snapshot(run: Path, step: int, pairs: dict, classifier: OnnxModel, real_features: np.ndarray, args,
                   scratch: Path) -> dict:
    model = OnnxModel(export_bbdm(run, scratch / f"ema_{step:06d}", snapshot=step), kind="bbdm")
    masks = chromosome_masks(pairs["dapi"])
    settings = TranslationSettings(steps=args.steps, seed=args.seed, batch_size=32)
    fake = run_to_end(translate_crops(model, pairs["dapi"], masks, settings))
    ssim = masked_ssim(pairs["target"], fake, masks)
    crops = classifier_crops(pairs["dapi"], fake, classifier.card.n_channels)
    fake_features = run_to_end(bundle_features(classifier, crops))
    kid, kid_std = kernel_inception_distance(real_features, fake_features, subset_size=min(100, len(fake)))
    return {"step": step, "ssim": float(np.nanmean(ssim)), "ssim_std": float(np.nanstd(ssim)),
            "kid_x1000": 1e3 * kid, "kid_x1000_std": 1e3 * kid_std}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.bridge_curve",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a BBDM run folder with snapshots/ema_<step>.pt")
    p.add_argument("--classifier", required=True, help="classifier bundle (or zoo:NAME) whose features KID uses")
    p.add_argument("--slides", nargs="+", required=True, help="held-out slides (among the run's --exclude-slides)")
    p.add_argument("--count", type=int, default=256, help="held-out chromosomes (a seeded sample)")
    p.add_argument("--steps", type=int, default=50, help="bridge steps (skip steps of the 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON to write (bridge_curve.png beside it)")
    args = p.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    steps = run_snapshots(run, "bbdm")
    settings = {"slides": sorted(args.slides), "count": args.count, "steps": args.steps, "seed": args.seed,
                "classifier": args.classifier}
    rows = earlier_rows(out, settings)
    pairs = held_out_pairs(BbdmRun.read(run), args.slides, args.count, args.seed)
    classifier = OnnxModel(args.classifier, kind="classifier")
    real_features = run_to_end(bundle_features(classifier, classifier_crops(pairs["dapi"], pairs["target"],
                                                                            classifier.card.n_channels)))
    half = len(real_features) // 2  # the floor: KID between two random halves of the real chromosomes
    order = np.random.default_rng(args.seed).permutation(len(real_features))
    floor, _ = kernel_inception_distance(real_features[order[:half]], real_features[order[half:2 * half]],
                                         subset_size=min(100, half))
    record = {"run": str(run), **settings, "reference": f"{len(pairs['dapi'])} chromosomes of slides "
              f"{' '.join(sorted(args.slides))}", "real_halves_kid_x1000": 1e3 * floor, "rows": rows}
    score_snapshots(out, record, steps,
                    lambda step, scratch: score_snapshot(run, step, pairs, classifier, real_features, args, scratch),
                    lambda row: f"SSIM {row['ssim']:.3f} ± {row['ssim_std']:.3f}, KID×10³ {row['kid_x1000']:.2f} ± "
                                f"{row['kid_x1000_std']:.2f}")
    plot_curves(record["rows"], out.with_name("bridge_curve.png"), f"{run.name}: bridge-{args.steps}, "
                f"{record['reference']}", [("ssim", "paired SSIM (chromosome pixels)"), ("kid_x1000", "KID × 10³")])
    return record


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.bridge_curve"))
