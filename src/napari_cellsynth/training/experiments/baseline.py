"""Baseline classifier on real data only, repeated over seeds: mean ± std of per-class metrics.

    python -m napari_cellsynth.training.experiments.baseline --data ../shared/data/jurkat/jurkat_cells.npz \
        --label-map jurkat4 --seeds 0 1 2 --epochs 25 --width 32 --out runs/baseline-jurkat4

Each seed changes the split, the initialisation and the augmentation draws.  One arm (named by the label map) on
the experiments' one runner: the runs go to ``OUT/LABEL_MAP/seedN`` and are skipped when done.  Writes
``summary.json`` and ``summary.md`` (a table for docs/results.md) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, arm_metrics, train_arms
from napari_cellsynth.training.reports.summaries import summarize_runs


def markdown_table(summary: dict, title: str) -> str:
    lines = [f"**{title}** ({summary['n_runs']} seeds, mean ± std)", "",
             "| class | PPV | recall | F1 |", "|---|---|---|---|"]
    for name in summary["classes"]:
        row = summary["per_class"][name]
        cells = [f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" for k in ("ppv", "recall", "f1")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key, label in (("macro_f1", "macro-F1"), ("accuracy", "accuracy")):
        lines.append(f"| **{label}** | | | {summary[key]['mean']:.3f} ± {summary[key]['std']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map", default="jurkat4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True)
    args, train_args = parser.parse_known_args(argv)
    out = Path(args.out)
    arm = ClassifierArm(args.label_map, ("--data", args.data, "--label-map", args.label_map, *train_args))
    train_arms([arm], args.seeds, out)
    runs = [arm_metrics(out, arm.name, args.seeds)[seed] for seed in args.seeds]
    summary = summarize_runs(runs)
    summary["command"] = "python -m napari_cellsynth.training.experiments.baseline " + " ".join(argv or sys.argv[1:])
    write_json_atomic(out / "summary.json", summary)
    table = markdown_table(summary, f"{args.label_map}, real data only")
    (out / "summary.md").write_text(table)
    print(table)
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.baseline"))
