"""Classify crops or labelled objects with a classifier bundle.

The functions here are generators: they ``yield (done, total)`` as batches finish
and ``return`` the result, so a widget can run them in a worker with a progress
bar and tests can run them directly (:func:`run_to_end`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .crops import ObjectCrops, as_channels_first, extract_object_crops
from .decisions import DecisionRule
from .images import prepare
from .runtime import OnnxModel

Progress = Generator[tuple[int, int], None, "ClassificationResult"]


@dataclass
class ClassificationResult:
    classes: list[str]
    probabilities: np.ndarray  # (N, K)
    features: np.ndarray  # (N, D) penultimate-layer features
    decision: DecisionRule | None = None  # per-class thresholds (the card's, or given); None: argmax

    @property
    def predicted(self) -> np.ndarray:
        if self.decision is None:
            return self.probabilities.argmax(axis=1)
        return self.decision.predict(self.probabilities, self.classes)

    @property
    def predicted_names(self) -> list[str]:
        return [self.classes[i] for i in self.predicted]

    @property
    def confidence(self) -> np.ndarray:
        """The probability of each crop's call (the largest one, unless a threshold made the call)."""
        return self.probabilities[np.arange(len(self.probabilities)), self.predicted]

    def table(self) -> dict[str, np.ndarray | list]:
        """Columns for a CSV or a napari ``features`` table."""
        columns: dict[str, np.ndarray | list] = {
            "class": self.predicted_names,
            "confidence": np.round(self.confidence, 6),
        }
        for k, name in enumerate(self.classes):
            columns[f"p_{name}"] = np.round(self.probabilities[:, k], 6)
        return columns


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def classify_crops(model: OnnxModel, images: np.ndarray, batch_size: int = 64,
                   decision: DecisionRule | None = None) -> Progress:
    """Classify raw crops (N×C×H×W, or what :func:`images.as_stack` accepts).  Calls follow ``decision``, by
    default the card's thresholds (``DecisionRule({})``: plain argmax)."""
    batch = prepare(images, model.card)
    total = len(batch)
    logits, features = [], []
    yield 0, total
    for done, outputs in model.run_batches(batch, batch_size):
        logits.append(outputs["logits"])
        features.append(outputs["features"])
        yield done, total
    decision = model.card.decision if decision is None else decision
    return ClassificationResult(model.card.classes, softmax(np.concatenate(logits)), np.concatenate(features),
                                decision if decision and decision.thresholds else None)


OBJECT_CROPS = ("window", "resize")


def classify_objects(model: OnnxModel, image: np.ndarray, labels: np.ndarray, batch_size: int = 64,
                     margin: float = 0.15, crop: str | None = None,
                     decision: DecisionRule | None = None) -> Generator[tuple[int, int], None,
                                                                              tuple[ObjectCrops, ClassificationResult]]:
    """One crop per object of ``labels`` from ``image`` (C×H×W or H×W), then classify them.

    ``crop`` defaults to the way the bundle's training crops were cut (``card.object_crop``).
    ``crop="window"`` cuts the bundle's H×W window at native resolution centred on each object, so cells
    keep their scale (``margin`` is not used; an object larger than the window is scaled down to fit).
    ``crop="resize"`` grows each object's bounding box by ``margin`` and resizes it to H×W, which changes
    the objects' scale.  A bundle trained on crops that hold only their object's pixels (``card.object_mask`` =
    ``object``, as the M-FISH chromosome set's) gets object crops with everything else set to 0.
    """
    crop = crop or model.card.object_crop
    if crop not in OBJECT_CROPS:
        raise ValueError(f"crop must be one of {OBJECT_CROPS}, got {crop!r}")
    labels = np.asarray(labels)
    image = as_channels_first(image, model.card.n_channels, labels.shape)
    only = model.card.object_mask == "object"
    if crop == "window":
        objects = extract_object_crops(image, labels, model.card.image_size, margin=0.0, keep_scale=True,
                                       only_object=only)
    else:
        objects = extract_object_crops(image, labels, model.card.image_size, margin=margin, only_object=only)
    result = yield from classify_crops(model, objects.crops, batch_size, decision)
    return objects, result


def bundle_features(model: OnnxModel, images: np.ndarray, batch_size: int = 128) -> Generator:
    """Penultimate-layer features of raw crops through a classifier bundle (a progress generator)."""
    result = yield from classify_crops(model, images, batch_size)
    return result.features.astype(np.float64)
