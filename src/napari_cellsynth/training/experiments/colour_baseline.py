"""A three-feature reference for the translocation task: is the signal in the crops at all?

    python -m napari_cellsynth.training.experiments.colour_baseline --out runs/exp-transloc

A translocated chromosome carries a segment of its partner's colour, so its pixels' chromaticity
(R, G, B divided by their sum) varies more than a uniformly painted chromosome's.  Per crop:
the summed standard deviation of the chromaticity over the chromosome's pixels, the summed
10–90 % percentile spread of it, and the chromosome's area.  A class-balanced logistic regression
(scikit-learn) on the training split, scored on the test split of ``experiments.translocation``'s
``crops.npz`` / ``split.npz``.  Writes ``colour_baseline.json`` beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.data.translocations import RARE


def colour_features(images: np.ndarray) -> np.ndarray:
    """N×3 features of N×3×H×W RGB crops whose background is 0."""
    rows = []
    for image in images.astype(np.float64):
        own = image.sum(axis=0) > 0
        if not own.any():
            raise ValueError("a crop without chromosome pixels (all zero); rebuild the data set")
        pixels = image[:, own].T + 1.0
        chroma = pixels / pixels.sum(axis=1, keepdims=True)
        spread = np.percentile(chroma, 90, axis=0) - np.percentile(chroma, 10, axis=0)
        rows.append([chroma.std(axis=0).sum(), spread.sum(), float(own.sum())])
    return np.asarray(rows)


def colour_scores(features: np.ndarray, y: np.ndarray, train: np.ndarray,
                  parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """P(translocation) for each part's crops from the class-balanced logistic regression fitted on ``train``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    model.fit(features[train], y[train])
    return {name: model.predict_proba(features[index])[:, 1] for name, index in parts.items()}


def evaluate(out: Path) -> dict:
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    missing = [name for name in ("crops.npz", "split.npz") if not (out / name).is_file()]
    if missing:
        raise ValueError(f"{out} has no {' or '.join(missing)}; pass the --out folder of "
                         "python -m napari_cellsynth.training.experiments.translocation")

    with np.load(out / "crops.npz", allow_pickle=False) as crops, np.load(out / "split.npz") as split:
        features, y = colour_features(crops["images"]), (crops["labels"] == RARE).astype(int)
        train, test = split["train"], split["test"]
    score = colour_scores(features, y, train, {"test": test})["test"]
    precision, recall, f1, _ = precision_recall_fscore_support(y[test], score > 0.5, average="binary",
                                                               zero_division=0)
    result = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
              "roc_auc": float(roc_auc_score(y[test], score)),
              "feature_auc_test": [float(roc_auc_score(y[test], features[test, k])) for k in range(3)],
              "features": ["chromaticity std", "chromaticity 10-90 % spread", "area"]}
    write_json_atomic(out / "colour_baseline.json", result)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.colour_baseline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the experiments.translocation folder (crops.npz, split.npz)")
    result = evaluate(Path(p.parse_args(argv).out))
    print(f"colour-heterogeneity logistic regression: precision {result['precision']:.3f} recall "
          f"{result['recall']:.3f} F1 {result['f1']:.3f} ROC AUC {result['roc_auc']:.3f}")
    return result


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.colour_baseline"))
