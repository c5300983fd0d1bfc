"""The record of one ``cellsynth train cellpose`` run (Cellpose 3 from scratch on M-FISH DAPI planes): its settings,
where its model file is, the metaphases and slides it learnt from and held out, and its held-out AP.  It is the run
folder's ``report.json`` (written when the run ends), read by ``export cellpose`` with ``CellposeRun.read(run)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .run_record import RunRecord, Settings


@dataclass(frozen=True)
class CellposeSettings(Settings):
    """``cellsynth train cellpose``'s options, as one run parsed them (see its ``--help`` for each one)."""

    root: str
    out: str
    epochs: int | None = None
    limit: int | None = None
    test_slides: list[str] | None = None
    bsize: int | None = None
    images_per_epoch: int | None = None
    learning_rate: float | None = None
    nbase: list[int] | None = None
    init_from: str | None = None
    seed: int | None = None
    pseudo_labels_from: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False


@dataclass(frozen=True, kw_only=True)
class CellposeRun(RunRecord):
    """What one Cellpose run was; ``test`` is :func:`data.chromosome_masks.average_precision` on the held-out
    metaphases, at the ``thresholds`` chosen on the training metaphases (runs before they were chosen: Cellpose's).
    Runs from before the record was typed have no ``settings`` (None)."""

    TASK = "cellpose"
    TRAINER = "cellsynth train cellpose"
    SETTINGS = CellposeSettings
    FILE = "report.json"

    model: str
    root: str
    nbase: list[int]
    bsize: int
    epochs: int
    images_per_epoch: int
    learning_rate: float
    train_metaphases: int
    test_metaphases: int
    held_out_slides: list[str]
    train_seconds: float
    test: dict[str, Any]
    final_train_loss: float | None = None
    settings: CellposeSettings | None = None
    thresholds: dict[str, Any] | None = None  # reports.mask_thresholds.choose_thresholds on the training metaphases
    test_at_defaults: dict[str, Any] | None = None  # ``test`` at Cellpose's own thresholds (0.4, 0.0)
    init_from: dict[str, Any] | None = None  # the model training went on from: its identity (files' sha256)
    # the unlabelled metaphases trained on with pseudo-labels: the labelling model's identity, each one's objects
    pseudo_labelled: dict[str, Any] | None = None
