"""The study's numbers, read from the runs' ``metrics_test.json``: per-arm mean ± std, paired differences against
``real`` and against ``copies`` (the Wilcoxon signed-rank test over seeds and a bootstrap CI of the mean difference,
both from scipy.stats), and a one-sentence verdict."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from napari_cellsynth.training.reports.summaries import paired_test
from napari_cellsynth.training.runner.classifier_arms import summary_rows

from .arms import BASELINE, CHEAP, UNTHINNED, Arm

# the mean F1 and the mean PR-AUC of the rare classes; and their mean F1 as `cellsynth classify` calls them (at the
# decision thresholds that the trainer chose on validation and kept, which the card carries; else at argmax)
MEASURES = ("rare_f1", "macro_f1", "rare_pr_auc", "rare_f1_classify")
LABELS = {"rare_f1": "F1", "rare_pr_auc": "PR-AUC", "rare_f1_classify": "F1 as classify calls them"}


def seed_metrics(out: Path, arm: str, seeds: list[int]) -> dict[int, dict]:
    from .runner import run_folder

    found = {}
    for seed in seeds:
        path = run_folder(out, arm, seed) / "metrics_test.json"
        if path.is_file():
            found[seed] = json.loads(path.read_text())
    return found


def measure(metrics: dict, name: str, rare: list[str]) -> float:
    if name == "rare_f1_classify":  # the trainer writes "with_thresholds" only where it kept thresholds
        name, metrics = "rare_f1", metrics.get("with_thresholds") or metrics
    if name == "rare_f1":
        return float(np.mean([metrics["per_class"][c]["f1"] for c in rare]))
    if name == "rare_pr_auc":  # a ranking measure: it moves where argmax finds no rare cell at all
        return float(np.mean([metrics["ranking"][c]["pr_auc"] for c in rare]))  # only for runs that rank them all
    return float(metrics[name])


def ranks_rare(metrics: dict, rare: list[str]) -> bool:
    """Whether a run recorded the PR-AUC of every rare class (a trainer before the study's PR-AUC did not; a class
    without test cells has none, though the study refuses such a split before training)."""
    ranking = metrics.get("ranking") or {}
    return all((ranking.get(c) or {}).get("pr_auc") is not None for c in rare)


def collect(out: Path, arms: list[Arm], seeds: list[int], rare: list[str]) -> tuple[dict, list[str]]:
    """Per arm: the runner's summary rows (:func:`~napari_cellsynth.training.runner.classifier_arms.summary_rows`)
    of ``MEASURES``, paired with ``real`` and with ``copies``; and the runs (``ARM seed S``) without the rare classes'
    PR-AUC, which leave PR-AUC out of every row (paired measures need it in every run)."""
    runs = {arm.name: seed_metrics(out, arm.name, seeds) for arm in arms}
    unranked = [f"{arm} seed {seed}" for arm, found in runs.items() for seed, m in found.items()
                if not ranks_rare(m, rare)]
    names = [name for name in MEASURES if not unranked or name != "rare_pr_auc"]
    rows = summary_rows(runs, {name: partial(measure, name=name, rare=rare) for name in names}, (BASELINE, "copies"))
    for name, row in rows.items():  # in how many runs classify would apply thresholds
        row["thresholds_kept"] = sum(bool(m.get("with_thresholds")) for m in runs[name].values())
    return rows, unranked


def verdict(rows: dict, rare: list[str], alpha: float = 0.05, on: str = "rare_f1") -> str:
    """One sentence a microscopist can act on: the best generated arm against the best cheap alternative, on the mean
    F1 (``on="rare_pr_auc"``: the mean PR-AUC) of the rare classes; 'beats' needs every paired test to agree
    (p < alpha and the CI above 0).  With the ``unthinned`` arm, a second sentence: how far the best arm is below the
    real cells before ``--keep``, the room that any way of adding cells had."""
    return _verdict(rows, rare, alpha, on) + room_left(rows, rare, on)


def room_left(rows: dict, rare: list[str], on: str = "rare_f1") -> str:
    """How far the best arm (cheap or generated) is below ``unthinned``, paired by seed; '' without that arm."""
    others = [name for name in rows if name != UNTHINNED]
    if UNTHINNED not in rows or not others:
        return ""
    best = max(others, key=lambda n: rows[n][on]["mean"])
    test = paired_from_rows(rows, best, UNTHINNED, on)
    if not test:
        return ""
    ceiling = rows[UNTHINNED][on]
    p = f", Wilcoxon p {test['p_wilcoxon']:.3g}" if test["p_wilcoxon"] is not None else ""
    return (f" Before --keep thinned them, the real cells reach {' and '.join(rare)} {LABELS[on]} {ceiling['mean']:.3f}"
            f" ± {ceiling['std']:.3f}; the best arm here, {best}, is {test['mean']:+.3f} from that (95 % CI "
            f"{test['ci95'][0]:+.3f} to {test['ci95'][1]:+.3f}{p}, {len(test['seeds'])} paired seeds): "
            + ("the room that any way of adding cells had." if test["mean"] < 0 else
               "on this measure it did no worse than the real cells it stood in for, so adding cells had no room left "
               "to fill here."))


def _verdict(rows: dict, rare: list[str], alpha: float, on: str) -> str:
    what = " and ".join(rare) + " " + LABELS[on]
    if BASELINE not in rows:
        return "No run has finished yet."
    if on == "rare_f1" and not any(v for row in rows.values() for v in row["per_seed"][on].values()):
        ranked = "rare_pr_auc" in rows[BASELINE]
        return (f"No arm's classifier found a single {' or '.join(rare)} test cell at argmax (no true positive: {what} "
                "0 in every arm and seed), so F1 cannot rank the arms: "
                + ("read the PR-AUC verdict, which ranks the test cells by probability, or train longer (--steps)."
                   if ranked else "train longer (--steps)."))

    def best(names) -> str | None:
        present = [n for n in names if n in rows]
        return max(present, key=lambda n: rows[n][on]["mean"]) if present else None

    def beats(a: str, b: str) -> dict | None:
        test = paired_from_rows(rows, a, b, on)
        if test and test["p_wilcoxon"] is not None and test["p_wilcoxon"] < alpha and test["ci95"][0] > 0:
            return test
        return None

    def show(name: str) -> str:
        return f"{name} ({what} {rows[name][on]['mean']:.3f} ± {rows[name][on]['std']:.3f})"

    def too_few(a: str, b: str) -> str:
        n = len(set(rows[a]["per_seed"][on]) & set(rows[b]["per_seed"][on]))
        return (f" With {n} paired seeds no Wilcoxon test can reach p < {alpha:g} (its smallest two-sided p is "
                f"{2 / 2 ** n:.3g}); run at least 6." if 2 / 2 ** n >= alpha else "")

    cheap = best([BASELINE, *CHEAP])
    generated = best([n for n in rows if n.startswith("generated-")])
    few = too_few(generated or cheap, cheap if generated else BASELINE)
    if cheap == BASELINE:
        advice = "keep the real cells alone: no cheap alternative scored higher"
    elif beats(cheap, BASELINE):
        advice = f"use {cheap}, which needs no generator and beats the real cells alone"
    else:
        advice = (f"{cheap} scored highest of the cheap arms but did not beat the real cells alone "
                  f"({rows[BASELINE][on]['mean']:.3f}) on the paired seeds")
    if generated is None:
        return f"No generated arm ran. Of the cheap ones, {show(cheap)}: {advice}.{few}"
    if not any(name in rows for name in CHEAP):  # the real cells alone are no alternative to a generator
        test = paired_from_rows(rows, generated, BASELINE, on)
        against = (f"{test['mean']:+.3f} (95 % CI {test['ci95'][0]:+.3f} to {test['ci95'][1]:+.3f}, Wilcoxon p "
                   f"{test['p_wilcoxon']:.3g}, {len(test['seeds'])} paired seeds)"
                   if test and test["p_wilcoxon"] is not None else "not yet paired")
        return (f"No cheap alternative ({', '.join(CHEAP)}) ran, so this study cannot say whether a generator is worth "
                f"it; add them to --arms. Against the real cells alone, {show(generated)}: {against}.{few}")
    win = beats(generated, cheap)
    if win:
        return (f"Use {show(generated)}: it beats the best cheap alternative, {show(cheap)}, by "
                f"{win['mean']:+.3f} (95 % CI {win['ci95'][0]:+.3f} to {win['ci95'][1]:+.3f}, Wilcoxon p "
                f"{win['p_wilcoxon']:.3g}, {len(win['seeds'])} paired seeds).")  # a win needs p < alpha: never few
    return (f"Generated cells did not beat the cheap alternatives here: the best generated arm, {show(generated)}, is "
            f"not better than {show(cheap)} on {len(rows[generated]['seeds'])} paired seeds; {advice}.{few}")


def paired_from_rows(rows: dict, a: str, b: str, on: str = "rare_f1") -> dict | None:
    """The paired difference ``a − b`` of measure ``on`` from two arms' per-seed values (:func:`paired_test`)."""
    ours, theirs = rows[a]["per_seed"][on], rows[b]["per_seed"][on]
    seeds = sorted(set(ours) & set(theirs), key=int)
    if not seeds:
        return None
    return paired_test(seeds, np.array([ours[s] - theirs[s] for s in seeds]))
