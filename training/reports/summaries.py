"""Results over repeated runs: mean ± std over seeds, as docs/results.md reports them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic


def summarize_runs(runs: Sequence[dict]) -> dict:
    """Mean and std (ddof=0 over seeds) of per-class PPV/recall/F1, macro-F1 and accuracy."""
    classes = runs[0]["classes"]
    summary: dict = {"n_runs": len(runs), "classes": classes, "per_class": {}}
    for name in classes:
        summary["per_class"][name] = {
            key: {"mean": float(np.mean([r["per_class"][name][key] for r in runs])),
                  "std": float(np.std([r["per_class"][name][key] for r in runs]))}
            for key in ("ppv", "recall", "f1")
        }
    for key in ("macro_f1", "accuracy"):
        values = [r[key] for r in runs]
        summary[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return summary


def write_summary(out: Path, summary: dict, table: str, module: str, argv: list[str] | None) -> dict:
    """An experiment's ``summary.json`` (with the command that made it) and ``summary.md`` in ``out``; the table
    is printed too."""
    summary["command"] = f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json_atomic(Path(out) / "summary.json", summary)
    (Path(out) / "summary.md").write_text(table)
    print(table)
    return summary
