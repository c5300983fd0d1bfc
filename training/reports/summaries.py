"""Results over repeated runs: mean ± std over seeds, as docs/results.md reports them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
