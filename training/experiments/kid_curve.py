"""A DDPM's quality over training: KID and FID of each EMA snapshot against held-out real cells.

    python -m napari_cellsynth.training.experiments.kid_curve --run runs/ddpm-v --classifier runs/bundles/jurkat4-feat \
        --class M --count 128 --steps 20 --out runs/ddpm-v/kid_curve.json

The run keeps fp16 EMA snapshots (``cellsynth train ddpm --snapshot-every N``: ``snapshots/ema_<step>.pt``).
Each one is exported to a bundle (the same exporter and parity check as ``cellsynth export ddpm``), samples
``--count`` cells of ``--class`` with DPM-Solver++(2M) over ``--steps`` network calls through ONNX Runtime, and
is scored on the classifier bundle's features against the real cells of that class in the validation part
of the run's split (cells the generator never saw; ``bench/bench_generate.py --reference val`` uses the same).
Steps already in ``--out`` are skipped, so a killed run resumes; ``kid_curve.png`` plots the curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.classify import bundle_features
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.label_maps import apply_label_map
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.export.export_ddpm import export_ddpm
from napari_cellsynth.training.data.labelled_crops import stratified_split
from napari_cellsynth.training.experiments.snapshot_curve import (earlier_rows, plot_curves, run_snapshots,
                                                                  score_snapshots)
from napari_cellsynth.training.reports.generator_metrics import frechet_distance, kernel_inception_distance


def held_out_real(run: Path, class_name: str, data: str | None) -> np.ndarray:
    """The real cells of ``class_name`` in the validation part of the run's split."""
    config = json.loads((run / "config.json").read_text())
    crops = read_crops(data or config["data"], size=config.get("size"), fit=config.get("fit"))
    y, classes = apply_label_map(crops.labels, config["label_map"])
    if class_name not in classes:
        raise ValueError(f"class {class_name!r} is not one of the run's classes {classes}")
    val = stratified_split(y, config["args"]["split_seed"])["val"]
    return crops.images[val[y[val] == classes.index(class_name)]]


def score_snapshot(run: Path, step: int, classifier: OnnxModel, real_features: np.ndarray, args, scratch: Path) -> dict:
    bundle = export_ddpm(run, scratch / f"ema_{step:06d}", snapshot=step, data=args.data)
    settings = GenerationSettings(args.class_name, args.count, "dpm_solver_pp_2m", args.steps, seed=args.seed,
                                  batch_size=32)
    images = run_to_end(generate(OnnxModel(bundle, kind="ddpm"), settings)).images
    fake = run_to_end(bundle_features(classifier, images))
    kid, kid_std = kernel_inception_distance(real_features, fake, subset_size=min(100, len(fake)))
    return {"step": step, "kid_x1000": 1e3 * kid, "kid_x1000_std": 1e3 * kid_std,
            "fid": frechet_distance(real_features, fake)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.kid_curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a DDPM run folder with snapshots/ema_<step>.pt")
    p.add_argument("--classifier", required=True, help="classifier bundle (or zoo:NAME) whose features KID uses")
    p.add_argument("--class", dest="class_name", required=True)
    p.add_argument("--count", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="network calls of DPM-Solver++(2M)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="the training data, where the run's recorded path no longer holds")
    p.add_argument("--out", required=True, help="JSON to write (kid_curve.png beside it)")
    args = p.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    steps = run_snapshots(run, "ddpm")
    rows = earlier_rows(out, {"count": args.count, "steps": args.steps})
    classifier = OnnxModel(args.classifier, kind="classifier")
    real = held_out_real(run, args.class_name, args.data)
    real_features = run_to_end(bundle_features(classifier, real))
    record = {"run": str(run), "classifier": args.classifier, "class": args.class_name, "count": args.count,
              "steps": args.steps, "sampler": "dpm_solver_pp_2m", "reference": f"{len(real)} validation cells",
              "rows": rows}
    score_snapshots(out, record, steps,
                    lambda step, scratch: score_snapshot(run, step, classifier, real_features, args, scratch),
                    lambda row: f"KID×10³ {row['kid_x1000']:.2f} ± {row['kid_x1000_std']:.2f}, FID {row['fid']:.2f}")
    plot_curves(record["rows"], out.with_name("kid_curve.png"),
                f"{run.name}: {args.class_name}, DPM-Solver++(2M)-{args.steps}, {len(real)} held-out real cells",
                [("kid_x1000", "KID × 10³ (held-out real cells)")])
    return record


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.kid_curve"))
