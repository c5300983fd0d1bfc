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


def paired_seeds(before: Sequence[dict], after: Sequence[dict], class_name: str) -> dict:
    """Two arms run on the same seeds (``before[i]`` and ``after[i]`` share seed i): each seed's change in
    ``class_name``'s PPV, recall and F1 and in macro-F1, and the one-sided Wilcoxon signed-rank test
    (scipy.stats) that ``after`` raises it.  Seeds with no change are left out of the test (scipy's default);
    with no change at all, p is 1."""
    from scipy.stats import wilcoxon

    if len(before) != len(after):
        raise ValueError(f"paired arms need the same seeds: {len(before)} runs against {len(after)}")
    values = {key: ([r["per_class"][class_name][key] for r in before], [r["per_class"][class_name][key] for r in after])
              for key in ("ppv", "recall", "f1")}
    values["macro_f1"] = ([r["macro_f1"] for r in before], [r["macro_f1"] for r in after])
    result = {"n_seeds": len(before), "class": class_name}
    for key, (old, new) in values.items():
        change = np.subtract(new, old)
        p = float(wilcoxon(new, old, alternative="greater").pvalue) if np.any(change != 0) else 1.0
        result[key] = {"before": [float(v) for v in old], "after": [float(v) for v in new],
                       "seeds_higher": int(np.sum(change > 0)), "mean_change": float(change.mean()), "p_wilcoxon": p}
    return result


def paired_markdown(name: str, paired: dict) -> str:
    """One line per measure: the per-seed values before → after, how many seeds rose, and the test's p."""
    lines = [f"**{name}** ({paired['n_seeds']} paired seeds, one-sided Wilcoxon signed-rank):", ""]
    for key, label in (("ppv", f"{paired['class']} PPV"), ("recall", f"{paired['class']} recall"),
                       ("f1", f"{paired['class']} F1"), ("macro_f1", "macro-F1")):
        row = paired[key]
        seeds = ", ".join(f"{a:.3f} → {b:.3f}" for a, b in zip(row["before"], row["after"]))
        lines.append(f"- {label}: {seeds}; higher in {row['seeds_higher']} of {paired['n_seeds']}, "
                     f"mean change {row['mean_change']:+.3f}, p = {row['p_wilcoxon']:.3g}")
    return "\n".join(lines) + "\n"


def paired_test(seeds: list, diff: np.ndarray) -> dict:
    """Paired differences over seeds: their mean, how many are above 0, the two-sided Wilcoxon signed-rank p and a
    95 % percentile bootstrap CI of the mean (both None below two seeds)."""
    from scipy.stats import bootstrap, wilcoxon

    result = {"seeds": [int(s) for s in seeds], "differences": diff.round(6).tolist(), "mean": float(diff.mean()),
              "higher_in": int((diff > 0).sum()), "p_wilcoxon": None, "ci95": None}
    if len(seeds) >= 2:
        result["p_wilcoxon"] = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        if np.ptp(diff) > 0:
            ci = bootstrap((diff,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                           random_state=0).confidence_interval
            result["ci95"] = [float(ci.low), float(ci.high)]
        else:
            result["ci95"] = [float(diff[0])] * 2
    return result
