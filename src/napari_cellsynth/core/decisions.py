"""Decision thresholds for rare classes, chosen on a validation split and carried in a classifier's card.

A classifier trained on data where one class is 1 % of the crops rarely gives that class the largest
probability, even when it ranks its cells well.  A threshold per rare class turns a good ranking into
decisions: a crop is called class ``k`` when ``p_k ≥ t_k``; when several thresholded classes pass, the one
furthest above its threshold (largest ``p_k / t_k``) wins; when none passes, the argmax of the other classes
is the call.  With two classes this is the usual ``p_positive ≥ t``.

Thresholds are chosen one class at a time on the validation crops (the F1-maximising point of the class's
precision-recall curve), for classes whose validation share is below half of a uniform share and that hold at
least ``min_positives`` validation crops, and kept only when they raise validation macro-F1 over the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .metrics import classification_metrics

MIN_POSITIVES = 5
RESAMPLES = 200
CONFIDENCE = 0.9


@dataclass(frozen=True)
class DecisionRule:
    """Per-class thresholds on the softmax probability (classes not named are decided by argmax)."""

    thresholds: dict[str, float]
    chosen_on: str = "validation"
    criterion: str = ("per-class F1 on the precision-recall curve; kept only when validation macro-F1 rises in "
                      f"{CONFIDENCE:.0%} of {RESAMPLES} paired bootstrap resamples")
    record: dict = field(default_factory=dict)  # what was measured when they were chosen

    def to_dict(self) -> dict:
        return {"thresholds": dict(self.thresholds), "chosen_on": self.chosen_on, "criterion": self.criterion,
                "record": dict(self.record)}

    @classmethod
    def from_dict(cls, data: dict) -> "DecisionRule":
        return cls({str(k): float(v) for k, v in data["thresholds"].items()}, str(data.get("chosen_on", "")),
                   str(data.get("criterion", "")), dict(data.get("record", {})))

    def check(self, classes: list[str]) -> None:
        unknown = sorted(set(self.thresholds) - set(classes))
        if unknown:
            raise ValueError(f"threshold for {', '.join(unknown)}, which the classifier does not have; its classes "
                             f"are {', '.join(classes)}")
        bad = {k: t for k, t in self.thresholds.items() if not 0.0 < t <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in (0, 1]: {bad}")

    def predict(self, probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
        """Class indices for probabilities (N×K) under the rule."""
        probabilities = np.asarray(probabilities)
        if not self.thresholds:
            return probabilities.argmax(axis=1)
        self.check(classes)
        index = np.array([classes.index(name) for name in self.thresholds])
        cut = np.array(list(self.thresholds.values()))
        ratio = probabilities[:, index] / cut
        others = probabilities.copy()
        others[:, index] = -np.inf
        fallback = others.argmax(axis=1) if len(index) < len(classes) else probabilities.argmax(axis=1)
        return np.where(ratio.max(axis=1) >= 1.0, index[ratio.argmax(axis=1)], fallback)


def parse_thresholds(items: list[str], classes: list[str]) -> DecisionRule:
    """``CLASS=T`` items (``--threshold``) as a rule; ``none`` alone means plain argmax."""
    if items == ["none"]:
        return DecisionRule({}, chosen_on="given: none (argmax)")
    thresholds = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            thresholds[name] = float(value) if sep else float("nan")
        except ValueError:
            thresholds[name] = float("nan")
        if not sep or not np.isfinite(thresholds[name]):
            raise ValueError(f"--threshold {item!r}: give CLASS=T with T in (0, 1], e.g. {classes[-1]}=0.3, "
                             "or 'none' for argmax")
    rule = DecisionRule(thresholds, chosen_on="given on the command line")
    rule.check(classes)
    return rule


def _macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> float:
    return classification_metrics(truth, predicted, classes)["macro_f1"]


def paired_gain_share(truth: np.ndarray, a: np.ndarray, b: np.ndarray, classes: list[str],
                      resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The share of bootstrap resamples of the crops in which predictions ``b`` have a higher macro-F1 than ``a``."""
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(resamples):
        pick = rng.integers(0, len(truth), len(truth))
        wins += _macro_f1(truth[pick], b[pick], classes) > _macro_f1(truth[pick], a[pick], classes)
    return wins / resamples


def choose_thresholds(probabilities: np.ndarray, truth: np.ndarray, classes: list[str],
                      min_positives: int = MIN_POSITIVES, confidence: float = CONFIDENCE) -> DecisionRule:
    """The rule for one classifier from its validation probabilities (N×K) and true class indices (N)."""
    from sklearn.metrics import precision_recall_curve

    probabilities, truth = np.asarray(probabilities, np.float64), np.asarray(truth)
    n, k = probabilities.shape
    counts = np.bincount(truth, minlength=k)
    thresholds, per_class = {}, {}
    for c, name in enumerate(classes):
        if counts[c] < min_positives or counts[c] >= n / (2 * k):
            continue
        precision, recall, cuts = precision_recall_curve(truth == c, probabilities[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = int(np.argmax(f1))
        thresholds[name] = float(cuts[best])
        per_class[name] = {"validation_crops": int(counts[c]), "validation_f1_at_threshold": round(float(f1[best]), 4)}
    argmax_f1 = _macro_f1(truth, probabilities.argmax(axis=1), classes)
    record = {"validation_crops": int(n), "validation_macro_f1_argmax": round(argmax_f1, 4), "classes": per_class,
              "min_positives": min_positives}
    if not thresholds:
        return DecisionRule({}, record={**record, "kept": False, "why": "no class is rare with enough validation "
                                                                        "crops"})
    rule = DecisionRule(thresholds)
    decided = rule.predict(probabilities, classes)
    record["validation_macro_f1_thresholds"] = round(_macro_f1(truth, decided, classes), 4)
    share = paired_gain_share(truth, probabilities.argmax(axis=1), decided, classes)
    record["bootstrap_share_higher"] = share
    if share < confidence:
        return DecisionRule({}, record={**record, "kept": False, "candidates": thresholds,
                                        "why": f"validation macro-F1 rose in {share:.0%} of {RESAMPLES} resamples, "
                                               f"under {confidence:.0%}"})
    return DecisionRule(thresholds, record={**record, "kept": True})
