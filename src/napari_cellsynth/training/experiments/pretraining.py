"""Does self-supervised pretraining on unlabelled crops stand in for ImageNet weights? (issue 14)

    python -m napari_cellsynth.training.experiments.pretraining --jurkat ../shared/data/jurkat/jurkat_cells.npz \
        --sets runs/recipe-sets --chromosomes runs/mfish/chromosomes.npz --datasets jurkat4-300 mfish-rgb-jpeg \
        --seeds 0 1 2 3 4 --width 16 --threads 1 --out runs/pretraining

Per data set: one ``cellsynth train pretrain`` run (SimCLR) on crops the classifier never sees, then the
default classifier recipe from scratch and with ``--init-from`` that run (two arms of the experiments' one runner),
on the same seeded split per seed.  Test macro-F1 and accuracy per run; in
``summary.json`` mean ± population std over seeds per (data set, start).  Run folders already holding
their results are not trained again.

* **jurkat4-300** (``jurkat300.npz``, 300 labelled cells, 180 training crops, ``--label-map jurkat4``):
  pretrained on the other 6,934 Jurkat cells (``jurkat_cells.npz`` minus ``jurkat300.npz``'s
  ``source_index``), unlabelled.
* **mfish-rgb-jpeg** (the folder of RGB JPEGs, every tenth metaphase, 24 classes): pretrained on every
  chromosome of the *other* metaphases (``chromosomes.npz``), cut to its bounding box (+3 px) and saved
  as JPEG as the set's own crops were, brought to 40×40 by ``resize`` as the classifier's reader does.
  No metaphase of the labelled set (so no test chromosome) is among them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.records.pretrain_run import PretrainRun
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, run_folder, train_arms


def mfish_unlabelled(chromosomes: Path, labelled: Path, out: Path) -> Path:
    """Chromosomes of the metaphases absent from the labelled JPEG folder, as its JPEGs were written
    (bounding box + 3 px, quality 90), in one flat folder (no classes)."""
    import imageio.v3 as iio

    from napari_cellsynth.training.data.recipe_datasets import bounding_box

    if (out / "done").is_file():
        return out
    used = {re.match(r"(.+)_\d+$", f.stem).group(1) for f in labelled.glob("*/*.jpg")}
    out.mkdir(parents=True, exist_ok=True)
    with np.load(chromosomes, allow_pickle=False) as data:
        rgb, metaphase = data["rgb"], data["metaphase"]
    for i in np.flatnonzero(~np.isin(metaphase, sorted(used))):
        if rgb[i].any():
            rows, cols = bounding_box(rgb[i])
            iio.imwrite(out / f"{metaphase[i]}_{i:05d}.jpg", np.moveaxis(rgb[i][:, rows, cols], 0, -1), quality=90)
    (out / "done").write_text(json.dumps({"excluded_metaphases": sorted(used)}))
    return out


def data_sets(jurkat: Path | None, sets: Path, chromosomes: Path | None, out: Path, names: list[str]) -> dict:
    """Labelled data, label map and pretraining input of each named set."""
    found = {}
    for name in names:
        if name == "jurkat4-300":
            found[name] = {"data": sets / "jurkat300.npz", "label_map": "jurkat4",
                           "pretrain": {"data": str(jurkat), "exclude": str(sets / "jurkat300.npz")}}
        elif name == "mfish-rgb-jpeg":
            folder = mfish_unlabelled(chromosomes, sets / "mfish-rgb-jpeg", out / "mfish-unlabelled")
            found[name] = {"data": sets / "mfish-rgb-jpeg", "label_map": "identity",
                           "pretrain": {"data": str(folder), "size": 40, "fit": "resize"}}
        else:
            raise ValueError(f"unknown data set {name!r}; choose jurkat4-300 or mfish-rgb-jpeg")
    return found


def pretrained(name: str, spec: dict, out: Path, width: int, steps: int, batch_size: int, threads: int) -> dict:
    from napari_cellsynth.training.trainers import pretrain

    run = out / f"pretrain-{name}"
    done = run / "config.json"
    if not (done.is_file() and (PretrainRun.read(run).steps_run or 0) >= steps):
        pretrain.train(pretrain.config(width=width, steps=steps, batch_size=batch_size, threads=threads, seed=0,
                                       out=str(run), quiet=True, resume=True, **spec["pretrain"]))
    record = PretrainRun.read(run)
    history = json.loads((run / "history.json").read_text())
    return {"run": str(run), "crops": record.crops, "steps": record.steps_run,
            "seconds": round(record.seconds, 1), "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"]}


def start_arms(name: str, spec: dict, start: str, width: int) -> list[ClassifierArm]:
    """The set's two arms: the default classifier recipe from scratch, and from the pretraining run."""
    common = ("--data", str(spec["data"]), "--label-map", spec["label_map"], "--width", str(width))
    return [ClassifierArm(f"{name}/scratch", common), ClassifierArm(f"{name}/pretrained", (*common, "--init-from", start))]


def run_row(out: Path, arm: str, seed: int) -> dict:
    run = run_folder(out, arm, seed)
    seconds = sum(h["seconds"] for h in json.loads((run / "history.json").read_text()))
    metrics = json.loads((run / "metrics_test.json").read_text())
    name, start = arm.split("/")
    return {"dataset": name, "start": start, "seed": seed,
            "steps": metrics["steps_run"], "best_step": metrics["best_step"], "train_seconds": round(seconds, 1),
            "test_macro_f1": metrics["macro_f1"], "test_accuracy": metrics["accuracy"]}


MEASURES = ("test_macro_f1", "test_accuracy", "train_seconds")


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for key in dict.fromkeys((r["dataset"], r["start"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["start"]) == key]
        table.append({"dataset": key[0], "start": key[1], "seeds": [r["seed"] for r in mine],
                      **{m: {"mean": float(np.mean([r[m] for r in mine])), "std": float(np.std([r[m] for r in mine]))}
                         for m in MEASURES}})
    return table


def run_experiment(sets: str | Path, out: str | Path, jurkat: str | Path | None = None,
                   chromosomes: str | Path | None = None, datasets=("jurkat4-300",), seeds=(0, 1, 2, 3, 4),
                   width: int = 16, pretrain_steps: int = 1500, batch_size: int = 128, threads: int = 1) -> dict:
    """Pretrain once per data set, then train from scratch and from the pretraining on the experiments' one runner
    (``OUT/SET/scratch|pretrained/seedN``, seed by seed, skipped when done).  Returns (and writes) ``summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = data_sets(Path(jurkat) if jurkat else None, Path(sets), Path(chromosomes) if chromosomes else None,
                      out, list(datasets))
    summary = {"width": width, "pretrain_steps": pretrain_steps, "batch_size": batch_size, "pretraining": {},
               "rows": []}
    for name, spec in specs.items():
        summary["pretraining"][name] = pretrained(name, spec, out, width, pretrain_steps, batch_size, threads)
        write_json_atomic(out / "summary.json", summary)
        arms = start_arms(name, spec, summary["pretraining"][name]["run"], width)
        train_arms(arms, seeds, out, threads=threads)  # the experiments' one runner
        summary["rows"] += [run_row(out, arm.name, seed) for seed in seeds for arm in arms]
        summary["table"] = summarise(summary["rows"])
        write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.pretraining",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", required=True, help="recipe_datasets' output (jurkat300.npz, mfish-rgb-jpeg/)")
    p.add_argument("--jurkat", help="jurkat_cells.npz (for jurkat4-300's pretraining crops)")
    p.add_argument("--chromosomes", help="chromosomes.npz (for mfish-rgb-jpeg's pretraining crops)")
    p.add_argument("--datasets", nargs="+", default=["jurkat4-300"], choices=["jurkat4-300", "mfish-rgb-jpeg"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--width", type=int, default=16, help="ResNet-18 width (16: CPU speed; the default 64 is too slow on a CPU)")
    p.add_argument("--pretrain-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128, help="pretraining batch (2 views per crop)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    summary = run_experiment(args.sets, args.out, args.jurkat, args.chromosomes, args.datasets, args.seeds,
                             args.width, args.pretrain_steps, args.batch_size, args.threads)
    summary["command"] = "python -m napari_cellsynth.training.experiments.pretraining " + " ".join(argv or sys.argv[1:])
    write_json_atomic(Path(args.out) / "summary.json", summary)
    for row in summary["table"]:
        print(f"{row['dataset']} {row['start']} ({len(row['seeds'])} seeds): " + "  ".join(
            f"{m} {row[m]['mean']:.3f} ± {row[m]['std']:.3f}" for m in MEASURES))
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.pretraining"))
