"""The record of one ``cellsynth train classifier`` run: its settings and what it found in the data.

:class:`ClassifierSettings` is the typed view of the trainer's options (``trainers.classifier.build_parser``),
mapped once from the parsed namespace; the run's shift, which the trainer resolves from the data's size, is written
into it then, not changed later.  :class:`ClassifierRun` is what the run folder's ``config.json`` holds, built once by
the trainer and read back with ``ClassifierRun.read(run)`` (:mod:`.run_record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .run_record import RunRecord, Settings, TrainingData


@dataclass(frozen=True)
class ClassifierSettings(Settings):
    """``cellsynth train classifier``'s options, as one run parsed them (see its ``--help`` for each one)."""

    data: str
    out: str
    labels_csv: str | None = None
    label_map: str | None = None
    exclude: str | None = None
    keep_fraction: list[str] = field(default_factory=list)
    extra_train: list[str] = field(default_factory=list)
    focused: list[str] = field(default_factory=list)
    focused_generated: list[str] = field(default_factory=list)
    focused_parts: list[str] | None = None
    size: int | None = None
    fit: str | None = None
    object_crop: str | None = None
    object_mask: str | None = None
    pixel_size: float | None = None
    arch: str | None = None
    width: int | None = None
    init_from: str | None = None
    epochs: int | None = None
    steps: int | None = None
    min_steps: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup: float | None = None
    evaluations: int | None = None
    patience: int | None = None
    sampling: str | None = None
    select_on: str | None = None  # None: written before the option, i.e. macro-f1
    no_augment: bool = False
    shift: float | None = None
    class_weights: str | None = None
    seed: int | None = None
    split_seed: int | None = None
    split: str | None = None
    bf16: bool = False
    threads: int | None = None
    device: str | None = None
    resume: bool = False
    quiet: bool = False

    @property
    def recipe(self) -> dict[str, Any]:
        """The settings a bundle's card lists as the training recipe."""
        return {"optimizer": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay,
                "batch_size": self.batch_size, "sampling": self.sampling, "patience": self.patience,
                "select_on": self.select_on or "macro-f1",
                "shift": self.shift}


@dataclass(frozen=True)
class ClassifierRun(TrainingData, RunRecord):
    """What one classifier run was: its settings, the data it read and what it found there."""

    TASK = "classifier"
    TRAINER = "cellsynth train classifier"
    SETTINGS = ClassifierSettings

    counts: dict[str, dict[str, int]]
    settings: ClassifierSettings
    fit: str | None = None
    train_only_classes: list[str] = field(default_factory=list)
    object_crop: str | None = None
    object_mask: str = "none"
    pixel_size: float | None = None
    extra_train: list[dict] = field(default_factory=list)
    excluded: int = 0
    init_from: dict | None = None
    augmentation: dict[str, Any] | None = None
    schedule: dict[str, int] | None = None

    def with_schedule(self, schedule: dict[str, int]) -> "ClassifierRun":
        return replace(self, schedule=dict(schedule))

    def as_start(self) -> dict:
        """What a classifier that starts from this run's backbone records of it (its config's ``init_from``)."""
        return {"data": self.data, "classes": self.classes, "counts": self.counts,
                "method": "supervised classifier (its best.pt, head dropped)"}

    @property
    def train_crops(self) -> int:
        return sum(self.counts["train"].values())


# the validation scores a run may keep its checkpoint by (``--select-on``): its history's key and the score's name
SELECTION_SCORES = {"macro-f1": ("val_macro_f1", "macro-F1"), "pr-auc": ("val_pr_auc", "PR-AUC")}


def kept_validation(history: list[dict], best_step: int | None) -> dict:
    """The validation entry of the checkpoint a run kept (``best_step``, its test metrics' and ``best.pt``'s, chosen
    by ``--select-on``); the best macro-F1's where the step is not known."""
    return next((h for h in history if best_step is not None and h.get("step") == best_step), None) or max(
        history, key=lambda h: h["val_macro_f1"])
