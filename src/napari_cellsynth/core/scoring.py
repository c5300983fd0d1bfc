"""Scoring a classifier on labelled crops beyond argmax F1: ranking quality for every class (PR-AUC, ROC-AUC),
counts per group (a slide, a patient, a plate), and bootstrap intervals that resample whole groups when groups
are given (crops of one slide are not independent)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import classification_metrics

GROUPS_SHOWN = 40


def ranking_metrics(truth: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> dict:
    """One-vs-rest PR-AUC (average precision) and ROC-AUC of each class's probability, with its prevalence;
    None where the crops hold no positive or no negative of the class."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {}
    for k, name in enumerate(classes):
        positive = np.asarray(truth) == k
        both = 0 < positive.sum() < len(positive)
        out[name] = {"prevalence": float(positive.mean()),
                     "pr_auc": float(average_precision_score(positive, probabilities[:, k])) if both else None,
                     "roc_auc": float(roc_auc_score(positive, probabilities[:, k])) if both else None}
    return out


def group_counts(truth: np.ndarray, predicted: np.ndarray, groups: np.ndarray, classes: Sequence[str]) -> dict:
    """Per group: crops, accuracy, and per class how many crops are that class, are called it, and both."""
    out = {}
    for group in sorted(set(groups.tolist())):
        mask = groups == group
        t, p = truth[mask], predicted[mask]
        out[str(group)] = {"n": int(mask.sum()), "accuracy": float(np.mean(t == p)),
                           "true": {c: int(np.sum(t == k)) for k, c in enumerate(classes)},
                           "called": {c: int(np.sum(p == k)) for k, c in enumerate(classes)},
                           "hits": {c: int(np.sum((t == k) & (p == k))) for k, c in enumerate(classes)}}
    return out


def bootstrap_intervals(truth: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray,
                        classes: Sequence[str], n_resamples: int, groups: np.ndarray | None = None,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of macro-F1 and of each class's F1 and PR-AUC over resamples of the crops, or of
    whole groups when ``groups`` is given (scipy.stats.bootstrap resamples observations only, not clusters)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    units = np.arange(len(truth)) if groups is None else np.unique(groups)
    members = [np.array([u]) for u in units] if groups is None else [np.flatnonzero(groups == u) for u in units]
    draws = {"macro_f1": [], **{f"f1:{c}": [] for c in classes}, **{f"pr_auc:{c}": [] for c in classes}}
    for _ in range(n_resamples):
        pick = np.concatenate([members[i] for i in rng.integers(0, len(units), len(units))])
        t, p = truth[pick], predicted[pick]
        metrics = classification_metrics(t, p, classes)
        draws["macro_f1"].append(metrics["macro_f1"])
        for k, c in enumerate(classes):
            if np.any(t == k):
                draws[f"f1:{c}"].append(metrics["per_class"][c]["f1"])
                if not np.all(t == k):
                    draws[f"pr_auc:{c}"].append(average_precision_score(t == k, probabilities[pick, k]))
    tail = (1 - level) / 2 * 100

    def interval(values):
        return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))] if values else None
    return {"level": level, "resamples": n_resamples, "unit": "crop" if groups is None else "group",
            "units": int(len(units)), "macro_f1": interval(draws["macro_f1"]),
            "f1": {c: interval(draws[f"f1:{c}"]) for c in classes},
            "pr_auc": {c: interval(draws[f"pr_auc:{c}"]) for c in classes}}


def score_labelled(truth: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                   groups: np.ndarray | None = None, bootstrap: int = 0, seed: int = 0) -> dict:
    """Everything :func:`format_scores` prints, as one JSON-ready dict."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = classification_metrics(truth, predicted, classes)
    scores["ranking"] = ranking_metrics(truth, probabilities, classes)
    if groups is not None:
        scores["groups"] = group_counts(truth, predicted, np.asarray(groups).astype(str), classes)
    if bootstrap:
        scores["bootstrap"] = bootstrap_intervals(truth, predicted, probabilities, classes, bootstrap,
                                                  None if groups is None else np.asarray(groups).astype(str), seed)
    return scores


def _interval(values) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "—"


def format_scores(scores: dict) -> str:
    """PR-AUC and ROC-AUC per class, bootstrap intervals and per-group counts as plain-text tables (the
    per-class PPV / recall / F1 table is :func:`metrics.format_table`)."""
    classes = scores["classes"]
    width = max(8, *(len(c) for c in classes))
    boot = scores.get("bootstrap")
    head = f"{'class':<{width}}  {'share':>6}  {'PR-AUC':>6}  {'ROC-AUC':>7}"
    head += f"  {'F1 ' + str(int(boot['level'] * 100)) + '% CI':>16}  {'PR-AUC CI':>16}" if boot else ""
    lines = [head]
    for name in classes:
        row = scores["ranking"][name]
        pr = "—" if row["pr_auc"] is None else f"{row['pr_auc']:.3f}"
        roc = "—" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
        line = f"{name:<{width}}  {row['prevalence']:6.3f}  {pr:>6}  {roc:>7}"
        if boot:
            line += f"  {_interval(boot['f1'][name]):>16}  {_interval(boot['pr_auc'][name]):>16}"
        lines.append(line)
    if boot:
        lines.append(f"macro-F1 {int(boot['level'] * 100)}% CI {_interval(boot['macro_f1'])} "
                     f"({boot['resamples']} resamples of {boot['units']} {boot['unit']}s)")
    if "groups" in scores:
        lines.append("")
        gwidth = max(5, *(len(g) for g in list(scores["groups"])[:GROUPS_SHOWN]))
        lines.append(f"{'group':<{gwidth}}  {'n':>5}  {'acc':>5}  " + "  ".join(f"{c} true/called/hit" for c in classes))
        shown = list(scores["groups"].items())[:GROUPS_SHOWN]
        for group, row in shown:
            cells = "  ".join(f"{row['true'][c]:>{len(c) + 5}}/{row['called'][c]}/{row['hits'][c]}" for c in classes)
            lines.append(f"{group:<{gwidth}}  {row['n']:5d}  {row['accuracy']:5.3f}  {cells}")
        if len(scores["groups"]) > GROUPS_SHOWN:
            lines.append(f"… {len(scores['groups']) - GROUPS_SHOWN} more groups in the metrics JSON")
    return "\n".join(lines)
