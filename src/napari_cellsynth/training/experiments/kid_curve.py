"""A DDPM's or a GAN's quality over training: KID and FID of each snapshot against real cells.

    python -m napari_cellsynth.training.experiments.kid_curve --run runs/ddpm-v --classifier runs/bundles/jurkat4-feat \
        --class M --count 128 --steps 20 --out runs/ddpm-v/kid_curve.json
    python -m napari_cellsynth.training.experiments.kid_curve --run runs/wgan-div-Metaphase --reference train \
        --classifier zoo:classifier-jurkat7 --count 256 --out runs/wgan-div-Metaphase/kid_curve.json

A DDPM run keeps fp16 EMA snapshots (``cellsynth train ddpm --snapshot-every N``: ``snapshots/ema_<step>.pt``), a
GAN run generator snapshots (``cellsynth train gan --snapshot-every N``: ``snapshots/G_<step>.pt``).  Each one is
exported to a bundle (the same exporter and parity check as ``cellsynth export``), makes ``--count`` cells of
``--class`` (a DDPM with DPM-Solver++(2M) over ``--steps`` network calls, a GAN in one pass) through ONNX Runtime,
and is scored on the classifier bundle's features against the real cells of that class in one part of the run's
split: ``--reference val`` (default; cells the generator never saw, as ``bench/bench_generate.py --reference val``)
or ``train`` (the cells it learnt from, as paper 001 picks its GAN checkpoints by FID; for a class with too few
held-out cells to score).  Steps already in ``--out`` are skipped, so a killed run resumes; ``kid_curve.png`` plots
the curve.

``--bundle NAME …`` adds exported bundles of the same recipe to the curve at the training step their card records:
the zoo's generator trained 11k steps on a lent GPU beside the snapshots of a replica trained on the CPU (results
§6b).  A bundle whose card records other data (label map or training counts) than the run is refused.
``--floor OTHER`` scores real cells through the same measure, once: the class's cells of the split's test part
(the floor: what a perfect generator gets at this sample size) and OTHER's (a wrong class, for scale); the plot
draws both as levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.bundle import read_card
from napari_cellsynth.core.classify import bundle_features
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.label_maps import apply_label_map, resolve_label_map
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.export.export_ddpm import export_ddpm
from napari_cellsynth.export.export_gan import export_gan
from napari_cellsynth.training.data.labelled_crops import stratified_split
from napari_cellsynth.training.experiments.snapshot_curve import (earlier_rows, plot_curves, run_snapshots,
                                                                  score_snapshots)
from napari_cellsynth.training.records.registry import read_run
from napari_cellsynth.training.reports.generator_metrics import frechet_distance, kernel_inception_distance

GENERATORS = ("ddpm", "gan")  # the runs whose snapshots the curve scores


def held_out_real(run: Path, class_name: str, data: str | None, part: str = "val") -> np.ndarray:
    """The real cells of ``class_name`` in one part (``val``, ``train`` or ``test``) of the run's split (the split
    the run recorded: its seed, stratified by its own classes or by ``--stratify-by``'s)."""
    record = read_run(run, GENERATORS)
    crops = read_crops(data or record.data, size=record.size, fit=record.fit)
    y, classes = apply_label_map(crops.labels, record.label_map)
    if class_name not in classes:
        raise ValueError(f"class {class_name!r} is not one of the run's classes {classes}")
    stratify_by = record.settings.stratify_by
    strata = apply_label_map(crops.labels, resolve_label_map(stratify_by, crops.labels))[0] if stratify_by else y
    index = stratified_split(strata, record.settings.split_seed)[part]
    return crops.images[index[y[index] == classes.index(class_name)]]


def same_recipe_bundle(run: Path, name: str) -> tuple[Path, int]:
    """An exported bundle that learnt from the run's data and split (label map and training counts as the run's),
    and the training step its card records."""
    from napari_cellsynth.core.zoo import resolve

    record = read_run(run, GENERATORS)
    card = read_card(name)
    data = (card.training or {}).get("data") or {}
    if card.kind != record.TASK:
        raise ValueError(f"--bundle {name} is a {card.kind} bundle, but {run} trains a {record.TASK}")
    if data.get("label_map") != record.label_map or data.get("train_counts") != record.train_counts:
        raise ValueError(f"--bundle {name} learnt from {data.get('train_counts')} with another label map or split "
                         f"than {run} ({record.train_counts}); pass a bundle of the same recipe and data")
    steps = (card.training or {}).get("steps")
    if not isinstance(steps, int):
        raise ValueError(f"--bundle {name}'s card does not record its training steps; it cannot stand on the curve")
    return resolve(name), steps


def score_images(images: np.ndarray, classifier: OnnxModel, real_features: np.ndarray) -> dict:
    """KID (× 10³, ± std over subsets) and FID of ``images`` against the reference features."""
    fake = run_to_end(bundle_features(classifier, images))
    kid, kid_std = kernel_inception_distance(real_features, fake, subset_size=min(100, len(fake), len(real_features)))
    return {"kid_x1000": 1e3 * kid, "kid_x1000_std": 1e3 * kid_std, "fid": frechet_distance(real_features, fake)}


def sample_bundle(bundle: Path, kind: str, args) -> np.ndarray:
    settings = GenerationSettings(args.class_name, args.count, "dpm_solver_pp_2m", args.steps, seed=args.seed,
                                  batch_size=32)
    return run_to_end(generate(OnnxModel(bundle, kind=kind), settings)).images


def score_snapshot(run: Path, kind: str, step: int, classifier: OnnxModel, real_features: np.ndarray, args,
                   scratch: Path) -> dict:
    if kind == "gan":
        bundle = export_gan(run, scratch / f"G_{step:06d}", snapshot=step)
    else:
        bundle = export_ddpm(run, scratch / f"ema_{step:06d}", snapshot=step, data=args.data)
    return {"step": step, **score_images(sample_bundle(bundle, kind, args), classifier, real_features)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.kid_curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a DDPM run folder with snapshots/ema_<step>.pt, or a GAN run "
                                                "folder with snapshots/G_<step>.pt")
    p.add_argument("--classifier", required=True, help="classifier bundle (or zoo:NAME) whose features KID uses")
    p.add_argument("--class", dest="class_name", help="the class to generate (default: a one-class run's class)")
    p.add_argument("--count", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="network calls of DPM-Solver++(2M)")
    p.add_argument("--reference", choices=["val", "train"], default="val",
                   help="the part of the run's split whose real cells of the class KID compares with")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="the training data, where the run's recorded path no longer holds")
    p.add_argument("--bundle", nargs="+", default=[], metavar="BUNDLE",
                   help="exported bundles (folders or zoo:NAME) of the same recipe and data, put on the curve at the "
                        "training step their cards record (e.g. a longer run of it on a GPU)")
    p.add_argument("--floor", metavar="OTHER_CLASS",
                   help="also score the class's real test-split cells (the floor) and OTHER_CLASS's (a wrong class, "
                        "for scale) against the same reference")
    p.add_argument("--out", required=True, help="JSON to write (kid_curve.png beside it)")
    args = p.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    record = read_run(run, GENERATORS)
    kind = record.TASK
    if args.class_name is None:
        if len(record.classes) != 1:
            raise ValueError(f"{run} makes the classes {record.classes}; choose one with --class")
        args.class_name = record.classes[0]
    steps = run_snapshots(run, kind)
    bundles = {name: same_recipe_bundle(run, name) for name in args.bundle}
    settings = {"count": args.count, "steps": args.steps, "reference": args.reference, "classifier": args.classifier}
    rows = earlier_rows(out, settings)
    classifier = OnnxModel(args.classifier, kind="classifier")
    real = held_out_real(run, args.class_name, args.data, args.reference)
    real_features = run_to_end(bundle_features(classifier, real))
    record = {"run": str(run), "class": args.class_name, **settings,
              "sampler": "one generator pass" if kind == "gan" else "dpm_solver_pp_2m",
              "reference_cells": len(real), "rows": [r for r in rows if "bundle" not in r],
              "bundles": [r for r in rows if "bundle" in r]}
    line = lambda row: f"KID×10³ {row['kid_x1000']:.2f} ± {row['kid_x1000_std']:.2f}, FID {row['fid']:.2f}"  # noqa: E731
    score_snapshots(out, record, steps,
                    lambda step, scratch: score_snapshot(run, kind, step, classifier, real_features, args, scratch),
                    line)
    for name, (bundle, step) in bundles.items():
        if not any(r["bundle"] == name for r in record["bundles"]):
            row = {"step": step, "bundle": name, **score_images(sample_bundle(bundle, kind, args), classifier,
                                                                real_features)}
            record["bundles"].append(row)
            print(f"{name} (step {step}): {line(row)}", file=sys.stderr)
    if args.floor:
        record["floor"] = {f"real test {name}": score_images(held_out_real(run, name, args.data, "test"), classifier,
                                                             real_features)
                           for name in (args.class_name, args.floor)}
    record["rows"] = record["rows"] + record.pop("bundles")
    write_json_atomic(out, record)
    plot_curves(record["rows"], out.with_name("kid_curve.png"),
                f"{run.name}: {args.class_name}, {record['sampler']}, {len(real)} real cells ({args.reference})",
                [("kid_x1000", f"KID × 10³ ({args.reference} cells)"), ("fid", "FID (classifier features)")],
                levels=record.get("floor"))
    return record


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.kid_curve"))
