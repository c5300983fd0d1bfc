"""Does a shift augmentation make object mode agree with stack mode? (issue 14's leftover)

    python -m napari_cellsynth.training.experiments.shift --jurkat ../shared/data/jurkat/jurkat_cells.npz \
        --shifts 0 0.1 --seeds 0 1 2 --steps 600 --threads 1 --out runs/shift

Object mode (:func:`napari_cellsynth.core.classify.classify_objects`, the default fixed window at native
scale) centres each window on the object of a labels layer, so its windows sit a few pixels off the
training crops; stack mode (:func:`~napari_cellsynth.core.classify.classify_crops`) gets the crops as
they are.  Every run here trains the classifier of the test suite's fixture (``tests/conftest.py``:
``jurkat_slice``, ResNet-18 width 16, 4 classes, the plugin's 226 sample cells left out) with the
default recipe (AdamW) and one ``--shift``, exports it, tiles the 226 sample cells into one slide with
their DNA channel's objects (as ``tests/test_napari.py: cells_on_a_slide``) and classifies them both
ways.  Per run: agreement of the two modes, each mode's accuracy on the sample cells' labels, and the
test macro-F1 of ``metrics_test.json``; ``summary.json``: mean ± population std over seeds per shift.
A run folder already holding ``metrics_test.json`` is not trained again (the experiments' one runner).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, run_folder, train_arms
from napari_cellsynth.training.records.classifier_run import ClassifierRun


def jurkat_slice(jurkat: Path, out: Path, per_class: int | None = 300) -> Path:
    """Every mitotic cell plus ``per_class`` (300) of each interphase class, seeded, without the plugin's sample cells
    (so that they can be scored on): the tests' data slice too.  ``per_class=None``: every cell but the samples."""
    from napari_cellsynth._sample_data import load_jurkat_sample

    sample_index = load_jurkat_sample()["source_index"]
    with np.load(jurkat, allow_pickle=False) as data:
        labels = data["labels"]
        rng = np.random.default_rng(0)
        keep = np.setdiff1d(np.arange(len(labels)), sample_index)
        chosen = []
        for name in np.unique(labels):
            members = keep[labels[keep] == name]
            fewer = per_class is not None and len(members) > per_class
            chosen.append(rng.choice(members, per_class, replace=False) if fewer else members)
        index = np.sort(np.concatenate(chosen))
        np.savez(out, images=data["images"][index], labels=labels[index], channels=data["channels"])
    return out


def cells_on_a_slide(count: int):
    """Real Jurkat sample cells tiled into one 3-channel image, each cell's object from its DNA channel
    (the napari tests use it too)."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label as connected

    from napari_cellsynth._sample_data import load_jurkat_sample

    sample = load_jurkat_sample()
    picks = np.linspace(0, len(sample["images"]) - 1, count).astype(int)
    side = int(np.ceil(np.sqrt(count)))
    image = np.zeros((3, side * 40, side * 40), np.uint16)
    labels = np.zeros(image.shape[1:], np.int32)
    image[:] = np.median(sample["images"][picks], axis=(0, 2, 3)).astype(np.uint16)[:, None, None]
    for n, i in enumerate(picks):
        r, c = divmod(n, side)
        cell = sample["images"][i]
        image[:, r * 40:(r + 1) * 40, c * 40:(c + 1) * 40] = cell
        dna = cell[1].astype(float)
        mask = connected(dna > threshold_otsu(dna))
        biggest = np.argmax(np.bincount(mask.ravel())[1:]) + 1
        labels[r * 40:(r + 1) * 40, c * 40:(c + 1) * 40][mask == biggest] = n + 1
    return image, labels, sample["images"][picks], sample["labels"][picks]


def modes_compared(bundle: Path) -> dict:
    """Object mode vs stack mode of one exported classifier on the 226 sample cells."""
    from napari_cellsynth.core.classify import classify_crops, classify_objects
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.label_maps import apply_label_map
    from napari_cellsynth.core.runtime import OnnxModel

    model = OnnxModel(bundle)
    image, labels, cells, names = cells_on_a_slide(226)
    stack = run_to_end(classify_crops(model, cells))
    objects, by_object = run_to_end(classify_objects(model, image, labels))
    if objects.labels.tolist() != list(range(1, len(cells) + 1)):
        raise RuntimeError("every sample cell should be one object, labelled in order")
    truth, classes = apply_label_map(names, model.card.trained.label_map)
    if classes != model.card.classes:
        raise RuntimeError(f"classes {classes} differ from the bundle's {model.card.classes}")
    return {"cells": len(cells),
            "agreement": float(np.mean(by_object.predicted == stack.predicted)),
            "accuracy_objects": float(np.mean(by_object.predicted == truth)),
            "accuracy_stack": float(np.mean(stack.predicted == truth))}


def shift_arm(data: Path, shift: float, steps: int | None, recipe: list[str]) -> ClassifierArm:
    """The test fixture's classifier (ResNet-18 width 16, 4 classes) trained with one ``--shift``."""
    return ClassifierArm(f"shift{shift:g}", (*recipe, "--data", str(data), "--label-map", "jurkat4", "--width", "16",
                                             "--shift", str(shift), *(("--steps", str(steps)) if steps else ())))


def modes_row(out: Path, shift: float, seed: int) -> dict:
    """One trained run exported and its two modes compared (``modes.json`` in the run)."""
    from napari_cellsynth.export.export_classifier import export_classifier

    run = run_folder(out, f"shift{shift:g}", seed)
    seconds = sum(h["seconds"] for h in json.loads((run / "history.json").read_text()))
    bundle = export_classifier(run, out / "bundles" / f"shift{shift:g}-s{seed}")
    metrics = json.loads((run / "metrics_test.json").read_text())
    row = {"shift": shift, "seed": seed, "max_shift_px": ClassifierRun.read(run).augmentation["max_shift_px"],
           "steps": metrics["steps_run"], "best_step": metrics["best_step"], "train_seconds": round(seconds, 1),
           "test_macro_f1": metrics["macro_f1"], "test_accuracy": metrics["accuracy"], **modes_compared(bundle)}
    write_json_atomic(run / "modes.json", row)
    return row


MEASURES = ("agreement", "accuracy_objects", "accuracy_stack", "test_macro_f1")


def summarise(rows: list[dict], shifts: list[float]) -> list[dict]:
    table = []
    for shift in shifts:
        mine = [r for r in rows if r["shift"] == shift]
        table.append({"shift": shift, "seeds": [r["seed"] for r in mine],
                      **{m: {"mean": float(np.mean([r[m] for r in mine])), "std": float(np.std([r[m] for r in mine]))}
                         for m in MEASURES}})
    return table


def run_experiment(jurkat: str | Path, out: str | Path, shifts=(0.0, 0.1), seeds=(0, 1, 2), steps: int | None = None,
                   threads: int = 1, recipe: tuple[str, ...] = ("--optimizer", "adamw"), cells: str = "slice") -> dict:
    """Train every (shift, seed) on the experiments' one runner (``OUT/shiftS/seedN``, seed by seed, skipped when
    done), then export and compare each.  ``cells``: ``slice`` (the tests' slice) or ``all`` (every
    Jurkat cell but the samples: a large set).  Returns (and writes) ``summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"jurkat_{cells}.npz"
    if not data.is_file():
        jurkat_slice(Path(jurkat), data, 300 if cells == "slice" else None)
    arms = [shift_arm(data, shift, steps, list(recipe)) for shift in shifts]
    train_arms(arms, seeds, out, threads=threads)  # the experiments' one runner
    rows = []
    for seed in seeds:
        for shift in shifts:
            rows.append(modes_row(out, shift, seed))
            print(json.dumps(rows[-1]), file=sys.stderr)
    summary = {"recipe": list(recipe), "steps": steps, "cells": cells, "rows": rows, "table": summarise(rows, list(shifts))}
    write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.shift", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jurkat", required=True, help="jurkat_cells.npz (the shared real data)")
    p.add_argument("--shifts", type=float, nargs="+", default=[0.0, 0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, help="optimizer steps per run (default: the trainer's default schedule)")
    p.add_argument("--epochs", type=int, help="passes per run instead (the test fixture's model: 3)")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"],
                   help="adamw: the default recipe; sgd: the test fixture's (with --warmup 0)")
    p.add_argument("--cells", default="slice", choices=["slice", "all"],
                   help="train on the tests' slice (757 training crops) or on every cell but the samples (about 4,200)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    recipe = ("--optimizer", args.optimizer, *(("--warmup", "0") if args.optimizer == "sgd" else ()),
              *(("--epochs", str(args.epochs)) if args.epochs else ()))
    summary = run_experiment(args.jurkat, args.out, args.shifts, args.seeds, args.steps, args.threads, recipe, args.cells)
    summary["command"] = "python -m napari_cellsynth.training.experiments.shift " + " ".join(argv or sys.argv[1:])
    write_json_atomic(Path(args.out) / "summary.json", summary)
    for row in summary["table"]:
        print(f"shift {row['shift']:g} ({len(row['seeds'])} seeds): " + "  ".join(
            f"{m} {row[m]['mean']:.3f} ± {row[m]['std']:.3f}" for m in MEASURES))
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.shift"))
