"""Training recipes compared on several real data sets (issue 14): does the default learn small data?

    python -m napari_cellsynth.training.experiments.recipes --sets runs/recipe-sets \
        --jurkat ../shared/data/jurkat/jurkat_cells.npz --datasets jurkat4-300 mfish-rgb-jpeg \
        --recipes legacy-sgd default --seeds 0 1 2 3 4 --jobs 2 --out runs/recipes

``--sets`` is the folder ``python -m napari_cellsynth.training.data.recipe_datasets`` writes.  Every (data set,
recipe) is an arm of the experiments' one runner (``training.runner``): each seed one ``cellsynth train
classifier`` run (``--jobs`` at a time on local processes, each with ``--threads``), resumed or skipped when done.
``summary.json``/``summary.md``: test macro-F1 and accuracy, mean ± std over seeds, against the macro-F1 of always
answering the training split's majority class; the optimizer steps run and the seconds each run took.  With two
recipes or more, every recipe is also paired with the first one seed by seed (a seed fixes the split and the
initialisation): the change in test macro-F1, with two-sided Wilcoxon signed-rank and paired t-tests (scipy.stats),
over all classes and over those with at least 20 test crops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.metrics import majority_macro_f1
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, train_arms
from napari_cellsynth.training.records.classifier_run import ClassifierRun
from napari_cellsynth.training.reports.summaries import write_summary

# each recipe spells out every setting it depends on, so that it stays the same when defaults change
# (the table of results §1b was measured before --shift existed: those recipes pin --shift 0)
RECIPES = {
    # the trainer's defaults before issue 14: SGD, 30 passes whatever the data's size
    "legacy-sgd": ["--optimizer", "sgd", "--lr", "0.05", "--weight-decay", "5e-4", "--epochs", "30",
                   "--warmup", "0", "--patience", "0", "--shift", "0"],
    "legacy-adam": ["--optimizer", "adam", "--lr", "1e-3", "--weight-decay", "5e-4", "--epochs", "30",
                    "--warmup", "0", "--patience", "0", "--shift", "0"],
    "sgd-1000": ["--optimizer", "sgd", "--lr", "0.05", "--weight-decay", "5e-4", "--min-steps", "1000",
                 "--warmup", "0", "--patience", "0", "--shift", "0"],
    "adamw-30-epochs": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--epochs", "30",
                        "--warmup", "0.05", "--patience", "0", "--shift", "0"],
    "adamw-1000": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps", "1000",
                   "--warmup", "0.05", "--patience", "0", "--shift", "0"],
    "adamw-1000-early-stop": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps",
                              "1000", "--warmup", "0.05", "--patience", "10", "--shift", "0"],
    "adamw-1000-balanced": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps", "1000",
                            "--warmup", "0.05", "--patience", "0", "--sampling", "balanced", "--shift", "0"],
    # the default since the shift augmentation (results §1b, "Shift augmentation")
    "adamw-1000-shift": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps", "1000",
                         "--warmup", "0.05", "--patience", "0", "--shift", "0.1"],
    # issue 36 item 1: the default's two fastest levers on a 2-core CPU (results §2c), each alone
    "adamw-1000-shift-width32": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps",
                                 "1000", "--warmup", "0.05", "--patience", "0", "--shift", "0.1", "--width", "32"],
    "adamw-1000-shift-bf16": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps",
                              "1000", "--warmup", "0.05", "--patience", "0", "--shift", "0.1", "--bf16"],
    "adamw-1000-shift-width32-bf16": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps",
                                      "1000", "--warmup", "0.05", "--patience", "0", "--shift", "0.1", "--width", "32",
                                      "--bf16"],
    "adamw-1000-shift-0.05": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--min-steps",
                              "1000", "--warmup", "0.05", "--patience", "0", "--shift", "0.05"],
    "adamw-1000-balanced-early-stop": ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05",
                                       "--min-steps", "1000", "--warmup", "0.05", "--patience", "10",
                                       "--sampling", "balanced", "--shift", "0"],
}


def dataset_arguments(sets: Path, jurkat: str | None) -> dict[str, list[str]]:
    return {
        "jurkat4-full": ["--data", str(jurkat), "--label-map", "jurkat4"],
        "jurkat7-full": ["--data", str(jurkat), "--label-map", "jurkat7"],
        "jurkat4-300": ["--data", str(sets / "jurkat300.npz"), "--label-map", "jurkat4"],
        "mfish24": ["--data", str(sets / "mfish24.npz")],
        "mfish-rgb-jpeg": ["--data", str(sets / "mfish-rgb-jpeg")],
    }


def run_majority_macro_f1(run: Path) -> float:
    """The majority-vote floor of one run's split (:func:`core.metrics.majority_macro_f1`)."""
    counts = ClassifierRun.read(run).counts
    return majority_macro_f1(counts["train"], counts["test"])


def summarise(out: Path, datasets: list[str], recipes: list[str], seeds: list[int]) -> dict:
    rows = []
    for name in datasets:
        for recipe in recipes:
            runs = [out / name / recipe / f"seed{s}" for s in seeds]
            done = [r for r in runs if (r / "metrics_test.json").is_file()]
            if not done:
                continue
            metrics = [json.loads((r / "metrics_test.json").read_text()) for r in done]
            f1 = np.array([m["macro_f1"] for m in metrics])
            accuracy = np.array([m["accuracy"] for m in metrics])
            seconds = [sum(h["seconds"] for h in json.loads((r / "history.json").read_text())) for r in done]
            record = ClassifierRun.read(done[0])
            rows.append({
                "dataset": name, "recipe": recipe, "seeds": len(done),
                "train_crops": record.train_crops, "classes": len(record.classes),
                "macro_f1": [float(f1.mean()), float(f1.std())],
                "accuracy": [float(accuracy.mean()), float(accuracy.std())],
                "majority_macro_f1": float(np.mean([run_majority_macro_f1(r) for r in done])),
                "steps": [int(m["steps_run"]) for m in metrics], "best_step": [m.get("best_step") for m in metrics],
                "seconds": float(np.mean(seconds)),
            })
    paired = [paired_recipes(out, name, recipes[0], recipe, seeds) for name in datasets for recipe in recipes[1:]]
    return {"rows": rows, "paired": [p for p in paired if p is not None]}


LARGE_CLASS = 20  # test crops a class needs for its F1 to count in the paired macro-F1 of large classes


def paired_change(old: np.ndarray, new: np.ndarray) -> dict:
    """Per-seed values, seeds higher and lower, the mean change, and two-sided Wilcoxon signed-rank and paired
    t-test p-values (scipy.stats)."""
    from scipy.stats import ttest_rel, wilcoxon

    change = new - old
    return {"before": old.tolist(), "after": new.tolist(), "mean_change": float(change.mean()),
            "seeds_higher": int(np.sum(change > 0)), "seeds_lower": int(np.sum(change < 0)),
            "p_wilcoxon": float(wilcoxon(new, old).pvalue) if np.any(change != 0) else 1.0,
            "p_ttest": float(ttest_rel(new, old).pvalue) if np.any(change != change[0]) else None}


def paired_recipes(out: Path, dataset: str, before: str, after: str, seeds: list[int]) -> dict | None:
    """Test macro-F1 of two recipes on the seeds both finished (:func:`paired_change`); None with fewer than 2 seeds.
    Also the same for the macro-F1 over the classes with at least :data:`LARGE_CLASS` test crops, whose F1 is not
    decided by a handful of cells (Jurkat 7-class tests 3 Anaphase and 4 Telophase cells)."""
    def metrics(recipe: str, seed: int) -> tuple[dict, dict] | None:
        run = out / dataset / recipe / f"seed{seed}"
        if not (run / "metrics_test.json").is_file():
            return None
        counts = ClassifierRun.read(run).counts if (run / "config.json").is_file() else {}
        return json.loads((run / "metrics_test.json").read_text()), counts

    pairs = [(s, metrics(before, s), metrics(after, s)) for s in seeds]
    pairs = [(s, a, b) for s, a, b in pairs if a is not None and b is not None]
    if len(pairs) < 2:
        return None
    macro = paired_change(np.array([a[0]["macro_f1"] for _, a, _ in pairs]),
                          np.array([b[0]["macro_f1"] for _, _, b in pairs]))
    result = {"dataset": dataset, "before": before, "after": after, "seeds": [s for s, _, _ in pairs],
              "macro_f1_before": macro.pop("before"), "macro_f1_after": macro.pop("after"), **macro}
    counts = pairs[0][1][1].get("test")
    if counts and all("per_class" in m for _, a, b in pairs for m, _ in (a, b)):
        large = [name for name, n in counts.items() if n >= LARGE_CLASS]
        def large_f1(m): return float(np.mean([m["per_class"][name]["f1"] for name in large]))
        if large:  # none on a set of small classes (mfish-rgb-jpeg: about 5 test crops a class)
            result["large_classes"] = {"classes": large, **paired_change(
                np.array([large_f1(a[0]) for _, a, _ in pairs]), np.array([large_f1(b[0]) for _, _, b in pairs]))}
    return result


def markdown(summary: dict) -> str:
    lines = ["| data set | train crops | classes | recipe | test macro-F1 | accuracy | majority macro-F1 | "
             "steps run (mean) | s / run |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['dataset']} | {r['train_crops']} | {r['classes']} | {r['recipe']} | "
                     f"{r['macro_f1'][0]:.3f} ± {r['macro_f1'][1]:.3f} | {r['accuracy'][0]:.3f} ± {r['accuracy'][1]:.3f} | "
                     f"{r['majority_macro_f1']:.3f} | {np.mean(r['steps']):.0f} | {r['seconds']:.0f} |")
    if summary.get("paired"):
        lines += ["", "| data set | recipe | against | seeds | test macro-F1 per seed (before → after) | mean change | "
                  "seeds higher / lower | p (Wilcoxon) | p (paired t) | classes with ≥ 20 test crops: mean change "
                  "(higher / lower, p Wilcoxon) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in summary["paired"]:
            per_seed = ", ".join(f"{a:.3f} → {b:.3f}" for a, b in zip(r["macro_f1_before"], r["macro_f1_after"]))
            t = "–" if r["p_ttest"] is None else f"{r['p_ttest']:.3g}"
            large = r.get("large_classes")
            big = (f"{large['mean_change']:+.3f} ({large['seeds_higher']} / {large['seeds_lower']}, "
                   f"p = {large['p_wilcoxon']:.3g}; {len(large['classes'])} classes)") if large else "–"
            lines.append(f"| {r['dataset']} | {r['after']} | {r['before']} | {len(r['seeds'])} | {per_seed} | "
                         f"{r['mean_change']:+.3f} | {r['seeds_higher']} / {r['seeds_lower']} | {r['p_wilcoxon']:.3g} | "
                         f"{t} | {big} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.recipes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", required=True, help="the folder training.data.recipe_datasets wrote")
    p.add_argument("--jurkat", help="jurkat_cells.npz, for the full Jurkat data sets")
    p.add_argument("--datasets", nargs="+", default=["jurkat4-300", "mfish24", "mfish-rgb-jpeg"])
    p.add_argument("--recipes", nargs="+", default=["legacy-sgd", "adamw-1000-shift"], choices=list(RECIPES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    args, extra = p.parse_known_args(argv)  # anything else goes to every run (e.g. --width 32)
    out = Path(args.out)
    known = dataset_arguments(Path(args.sets), args.jurkat)
    unknown = set(args.datasets) - set(known)
    if unknown:
        raise ValueError(f"unknown data set(s) {sorted(unknown)}; choose from {sorted(known)}")
    if any(d.endswith("-full") for d in args.datasets) and not args.jurkat:
        raise ValueError("the full Jurkat data sets need --jurkat PATH/jurkat_cells.npz")
    # the experiment is its arms: a (data set, recipe) pair is an arm, trained by the experiments' one runner
    arms = [ClassifierArm(f"{name}/{recipe}", (*known[name], *RECIPES[recipe], "--device", args.device, *extra))
            for name in args.datasets for recipe in args.recipes]
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the runner's worker processes start with it
    train_arms(arms, args.seeds, out, workers=args.jobs, threads=args.threads)
    summary = summarise(out, args.datasets, args.recipes, args.seeds)
    return write_summary(out, summary, markdown(summary), __spec__.name, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.recipes"))
