"""Paper 004's experiment (Tables 4–6): do synthetic translocations from DAPI lift the classifier?

    python -m napari_cellsynth.training.experiments.translocation --data runs/mfish/chromosomes.npz \
        --test-slides A20 V26 A04 V14 P09 --seeds 0 1 2 --epochs 30 --width 16 \
        --bbdm runs/exp-transloc/bbdm-bundle --cyclegan runs/exp-transloc/cyclegan-bundle \
        --synthetic 600 --bbdm-steps 50 --filter bbdm --out runs/exp-transloc

The classifier follows paper 004's appendix B: Adam at 1e-3, batch 32 (Nesterov SGD at the
project's default 0.05 diverged once synthetic crops raised the positive share; docs/results.md §8).
Binary classification normal vs translocation on the RGB crops (:mod:`training.data.translocations`),
test slides held out.  Per conventional augmentation setting (``off``: none, ``on``: flips, 90°
rotations, brightness) and per seed, the ResNet is trained on

- the real training chromosomes only (Table 3), and with ``--balanced-baseline`` also with a
  class-balanced loss (the cheap answer to imbalance that synthesis has to beat);
- real + synthetic translocations of each generator given (``--bbdm``, ``--cyclegan``): the
  bundle turns ``--synthetic`` donor DAPI crops (training slides, never a positive) into FISH crops
  labelled translocation (Tables 5–6); one synthetic set per generator serves every seed;
- with ``--filter GENERATOR``, real + the synthetic crops the UMAP filter keeps (Table 4 counts; the filter is
  fitted on the features of the real training chromosomes from the real-only, augmented, first-seed
  classifier).

Generators must be trained on the training slides only (``--exclude-slides`` = the test slides).
The classifiers are arms on the experiments' runner (``FOLDER/aug-off|on/seedN``; the filtered ones after the
real-only ones whose features the filter needs).  Every step skips what is on disk, so the experiment resumes;
several processes may share ``--out`` as long as they run different ``--only`` parts.
The generator report (FID/KID on the classifier's
ResNet features, SSIM-max against the real training translocations, the SSIM density plot and a
real-vs-synthetic grid) is written when the run holds everything.  Writes ``summary.json`` and
``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.translate import TranslationSettings, provenance, translate_crops
from napari_cellsynth.training.data.translocations import (RARE, chromosome_masks, donors, load_chromosomes,
                                                           slide_split, write_classification_set)
from napari_cellsynth.training.experiments.baseline import markdown_table
from napari_cellsynth.training.reports.summaries import summarize_runs
from napari_cellsynth.training.runner.classifier_arms import (ClassifierArm, add_runner_options, arm_metrics, run_folder,
                                                              train_arms)

NAMES = {"bbdm": "BBDM", "cyclegan": "CycleGAN"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.translocation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="chromosomes.npz of training.data.mfish_dataset")
    p.add_argument("--test-slides", nargs="+", required=True)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--augment", nargs="+", default=["off", "on"], choices=["off", "on"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--bbdm", help="BBDM bundle (fine-tuned on the training translocations)")
    p.add_argument("--cyclegan", help="CycleGAN bundle (DAPI → translocation FISH)")
    p.add_argument("--synthetic", type=int, default=600, help="synthetic translocations per generator")
    p.add_argument("--bbdm-steps", type=int, default=50, help="bridge sampling steps (skip steps of the 1000)")
    p.add_argument("--eta", type=float, default=1.0)
    p.add_argument("--filter", nargs="+", default=[], choices=list(NAMES),
                   help="also train on these generators' UMAP-filtered synthetic crops")
    p.add_argument("--balanced-baseline", action="store_true",
                   help="also train on real data only with a class-balanced loss (the cheap alternative to synthesis)")
    p.add_argument("--variants", nargs="+", default=["plain", "filtered"], choices=["plain", "filtered"],
                   help="synthetic sets to train with: all generated crops (plain) and/or the filter's kept ones")
    p.add_argument("--only", nargs="+", choices=["real", "real-balanced", "bbdm", "cyclegan"],
                   help="run only these parts (to split the work over processes)")
    p.add_argument("--collect-only", action="store_true",
                   help="train and generate nothing: summarise the runs on disk (and list the missing ones)")
    add_runner_options(p)
    p.add_argument("--out", required=True)
    return p


def prepare(args, out: Path) -> tuple[dict, dict]:
    chromosomes = load_chromosomes(args.data)
    split = slide_split(chromosomes, args.test_slides, args.val_fraction, args.split_seed)
    if not (out / "split.npz").is_file():
        counts = write_classification_set(chromosomes, split, out)
        write_json_atomic(out / "dataset.json", {"test_slides": args.test_slides, "counts": counts,
                                                 "donors": int(len(donors(chromosomes, args.test_slides)))})
    return chromosomes, split


def classifier_arm(folder: str, augment: str, args, out: Path, extra: list[Path] = (),
                   balanced: bool = False) -> ClassifierArm:
    """``FOLDER/aug-AUGMENT``: paper 004's classifier on the slide split's crops (+ ``extra`` training crops)."""
    options = ["--data", str(out / "crops.npz"), "--split", str(out / "split.npz"), "--epochs", str(args.epochs),
               "--width", str(args.width), "--batch-size", str(args.batch_size), "--optimizer", args.optimizer,
               "--lr", str(args.lr), "--weight-decay", str(args.weight_decay),
               "--class-weights", "balanced" if balanced else "none"]
    options += ["--no-augment"] if augment == "off" else []
    options += ["--extra-train", *map(str, extra)] if extra else []
    return ClassifierArm(f"{folder}/aug-{augment}", tuple(options))


def synthesize(kind: str, bundle: str, chromosomes: dict, args, out: Path) -> Path:
    """``synthetic-<kind>.npz``: ``--synthetic`` donor DAPI crops translated to FISH, labelled translocation."""
    path = out / f"synthetic-{kind}.npz"
    if path.is_file() or args.collect_only:
        return path
    pool = donors(chromosomes, args.test_slides)
    pick = np.sort(np.random.default_rng(args.split_seed).choice(pool, min(args.synthetic, len(pool)), replace=False))
    model = OnnxModel(bundle, kind=kind)
    settings = TranslationSettings(steps=args.bbdm_steps, eta=args.eta, seed=args.split_seed, batch_size=32)
    dapi = chromosomes["dapi"][pick]
    print(f"{NAMES[kind]}: translating {len(pick)} donor DAPI crops", file=sys.stderr)
    images = run_to_end(translate_crops(model, dapi, chromosome_masks(dapi), settings))
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=images, labels=np.array([RARE] * len(images)), donor_index=pick, dapi=dapi,
                 provenance=np.array(json.dumps(provenance(model, settings))))
    return path


def feature_classifier(out: Path, args) -> OnnxModel:
    """The real-only, augmented, first-seed classifier as a bundle (features for the filter and the report)."""
    from napari_cellsynth.export.export_classifier import export_classifier

    bundle = out / "feature-classifier"
    if not (bundle / "card.json").is_file():
        export_classifier(out / "real" / "aug-on" / f"seed{args.seeds[0]}", bundle)
    return OnnxModel(bundle, kind="classifier")


def umap_filtered(kind: str, synthetic: Path, split: dict, out: Path, args) -> tuple[Path, dict]:
    """``kept-<kind>.npz``: the synthetic crops inside the translocation ellipse; Table 4's counts."""
    from napari_cellsynth.core.filtering import run_filter
    from napari_cellsynth.core.umap_plot import save_filter_figure

    path, counts_path = out / f"kept-{kind}.npz", out / f"filter-{kind}.json"
    if path.is_file() or args.collect_only:
        return path, json.loads(counts_path.read_text()) if counts_path.is_file() else {}
    with np.load(out / "crops.npz", allow_pickle=False) as crops:
        real, labels = crops["images"][split["train"]], crops["labels"][split["train"]]
    with np.load(synthetic, allow_pickle=False) as saved:
        images = saved["images"]
    result = run_to_end(run_filter(feature_classifier(out, args), real, labels, images, RARE,
                                   random_state=args.split_seed))
    save_filter_figure(out / f"umap_filter-{kind}.png", result.fitted, result.points, result.keep)
    counts = {"before": int(len(images)), "after": int(result.keep.sum()), "level": float(result.fitted.level_),
              "component_weight": float(result.fitted.weights_[result.fitted.component_])}
    write_json_atomic(counts_path, counts)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=images[result.keep], labels=np.array([RARE] * int(result.keep.sum())))
    return path, counts


def report(out: Path, split: dict, synthetic: dict[str, Path], args) -> dict:
    """FID/KID and SSIM-max of each generator's crops (held-out real translocations as the reference)."""
    from napari_cellsynth.training.reports.generator_report import quality, real_vs_generated_grid

    with np.load(out / "crops.npz", allow_pickle=False) as crops:
        images, labels = crops["images"], crops["labels"]
    train = images[split["train"][labels[split["train"]] == RARE]]
    held_out = images[split["val"][labels[split["val"]] == RARE]]
    groups = {"held-out real": held_out}
    for kind, path in synthetic.items():
        with np.load(path, allow_pickle=False) as saved:
            groups[NAMES[kind]] = saved["images"]
    result = quality(feature_classifier(out, args), train, train, groups, out / "ssim_max.png")
    real_vs_generated_grid({name: (train, fake) for name, fake in groups.items() if name != "held-out real"},
                           out / "real_vs_synthetic.png")
    return result


def declare_part(part: str, args, out: Path, chromosomes: dict) -> tuple[dict[str, list[ClassifierArm]], Path | None]:
    """A part's arms (by the label the summary gives them), and the synthetic crops it made (generator parts).  A
    filtered set needs the real-only classifier's features, so its arms are declared after those ran."""
    if part in ("real", "real-balanced"):
        label = "real" + (" (class-balanced loss)" if part == "real-balanced" else "")
        return {label: [classifier_arm(part, a, args, out, balanced=part == "real-balanced") for a in args.augment]}, None
    synthetic = synthesize(part, getattr(args, part), chromosomes, args, out)
    arms = {}
    if "plain" in args.variants:
        arms[f"real + {NAMES[part]}"] = [classifier_arm(part, a, args, out, [synthetic]) for a in args.augment]
    return arms, synthetic


def declare_filtered(part: str, synthetic: Path, args, out: Path, split: dict, summary: dict) -> dict:
    kept, counts = umap_filtered(part, synthetic, split, out, args)
    if counts:
        summary.setdefault("umap_filter", {})[NAMES[part]] = counts
    return {f"real + {NAMES[part]} (UMAP-filtered)": [classifier_arm(f"{part}-filtered", a, args, out, [kept])
                                                      for a in args.augment]}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chromosomes, split = prepare(args, out)
    parts = ["real", *(["real-balanced"] if args.balanced_baseline else []), *[k for k in NAMES if getattr(args, k)]]
    if args.filter and "on" not in args.augment:
        raise ValueError("--filter uses the augmented real-only classifier's features; keep 'on' in --augment")
    summary: dict = {}
    declared: dict[str, list[ClassifierArm]] = {}
    synthetic = {}  # per generator part run: its synthetic crops (with --collect-only, perhaps not made yet)
    for part in parts:
        if args.only and part not in args.only:
            continue
        arms, made = declare_part(part, args, out, chromosomes)
        declared |= arms
        if made is not None:
            synthetic[part] = made
    run = partial(train_arms, seeds=args.seeds, out=out, workers=args.workers, threads=args.threads,
                  scheduler=args.scheduler)
    if not args.collect_only:
        run([arm for arms in declared.values() for arm in arms])
    filtered = {}
    for part in args.filter:
        if part in synthetic and "filtered" in args.variants:
            filtered |= declare_filtered(part, synthetic[part], args, out, split, summary)
    if not args.collect_only:
        run([arm for arms in filtered.values() for arm in arms])
    runs: dict[str, list] = {}
    for label, arms in (declared | filtered).items():
        for arm in arms:
            found = arm_metrics(out, arm.name, args.seeds)
            summary.setdefault("missing", []).extend(str(run_folder(Path(""), arm.name, seed))
                                                     for seed in args.seeds if seed not in found)
            if found:
                runs[f"{label}, augmentation {arm.name.rpartition('aug-')[2]}"] = list(found.values())
    if not summary.get("missing"):
        summary.pop("missing", None)
    summary["classification"] = {name: summarize_runs(metrics) for name, metrics in runs.items()}
    made = {part: path for part, path in synthetic.items() if path.is_file()}
    if not args.only and made:
        summary["generator_quality"] = report(out, split, made, args)
    summary["dataset"] = json.loads((out / "dataset.json").read_text())
    summary["command"] = "python -m napari_cellsynth.training.experiments.translocation " + " ".join(argv or sys.argv[1:])
    name = "summary" if not args.only else "summary-" + "-".join(args.only)
    write_json_atomic(out / f"{name}.json", summary)
    tables = "\n".join(markdown_table(s, title) for title, s in summary["classification"].items())
    (out / f"{name}.md").write_text(tables)
    print(tables)
    if summary.get("missing"):
        print(f"not trained yet ({len(summary['missing'])}): {', '.join(summary['missing'])}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.translocation"))
