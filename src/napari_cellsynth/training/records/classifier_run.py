"""The record of one ``cellsynth train classifier`` run: its settings and what it found in the data.

The trainer's parser (``trainers.classifier.build_parser``) is the one source of the options' defaults, choices and
help.  :class:`ClassifierSettings` is their typed view, mapped once from the parsed namespace; the run's shift, which
the trainer resolves from the data's size, is written into it then, not changed later.  :class:`ClassifierRun` is
what the run folder's ``config.json`` holds, built once by the trainer and read back with :meth:`ClassifierRun.read`.

Runs written before a field existed still load: a setting they did not record reads as ``None`` (``False`` for a
switch), which :meth:`ClassifierRun.from_dict` fills in; a record of another task, or one missing what every run has
written (the data, classes, channels, crop size, normalisation, counts and settings), is refused in one line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

TASK = "classifier"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ClassifierSettings:
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

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "ClassifierSettings":
        """The parsed options, typed; a name the record does not know is a programming error (a new option needs
        its field here: ``tests/test_run_records.py`` checks that the two stay the same)."""
        given = vars(args)
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"ClassifierSettings has no field for the option(s) {', '.join(unknown)}")
        return cls(**given)

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> "ClassifierSettings":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in recorded.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """What the run folder records: every option but ``quiet``, which changes nothing the run computes."""
        return {k: v for k, v in asdict(self).items() if k != "quiet"}

    @property
    def recipe(self) -> dict[str, Any]:
        """The settings a bundle's card lists as the training recipe."""
        return {"optimizer": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay,
                "batch_size": self.batch_size, "sampling": self.sampling, "patience": self.patience,
                "shift": self.shift}


@dataclass(frozen=True)
class ClassifierRun:
    """What one classifier run was: its settings, the data it read and what it found there."""

    data: str
    label_map: dict[str, list[str]]
    classes: list[str]
    channels: list[str]
    image_size: list[int]
    dtype: str
    value_range: list[float]
    normalization: dict[str, Any]
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

    @property
    def train_crops(self) -> int:
        return sum(self.counts["train"].values())

    def to_dict(self) -> dict[str, Any]:
        record = {"task": TASK}
        for f in fields(self):
            value = getattr(self, f.name)
            record["args" if f.name == "settings" else f.name] = value.to_dict() if f.name == "settings" else value
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "the record") -> "ClassifierRun":
        if record.get("task", TASK) != TASK:
            raise ValueError(f"{where} is a {record.get('task')} run, not a classifier run; pass the --out folder of "
                             "cellsynth train classifier")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if ("args" if name == "settings" else name) not in record]
        if missing:
            raise ValueError(f"{where} is incomplete (no {', '.join(missing)}): it was not written by cellsynth train "
                             "classifier; train the run again")
        known = {f.name for f in fields(cls)} - {"settings"}
        return cls(settings=ClassifierSettings.from_dict(record["args"]),
                   **{k: v for k, v in record.items() if k in known})

    @classmethod
    def read(cls, run: str | Path) -> "ClassifierRun":
        """The record in ``run/config.json``, with a one-line error naming the fix when it is missing or not a
        classifier run's."""
        path = Path(run) / CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"{run} has no {CONFIG_NAME}: pass the --out folder of cellsynth train classifier")
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} cannot be read ({err}); train the run again") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path} is not a run record (a JSON object); train the run again")
        return cls.from_dict(record, str(path))
