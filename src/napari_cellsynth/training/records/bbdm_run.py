"""The record of one ``cellsynth train bbdm`` run (paper 004's Brownian bridge, DAPI → FISH planes): its settings,
the chromosome pairs it learnt from, its bridge schedule and its U-Net's shape.  The exporter and the quality curve
read it with ``BbdmRun.read(run)`` (:mod:`.run_record`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .run_record import RunRecord, Settings
from .translator_data import TranslatorData


@dataclass(frozen=True)
class BbdmSettings(Settings):
    """``cellsynth train bbdm``'s options, as one run parsed them (see its ``--help`` for each one)."""

    data: str
    out: str
    exclude_slides: list[str] = field(default_factory=list)
    only_translocations: bool = False
    target: str | None = None
    timesteps: int | None = None
    variance_scale: float | None = None
    loss: str | None = None
    base: int | None = None
    channel_mult: list[int] | None = None
    dropout: float | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    ema: float | None = None
    snapshot_every: int | None = None
    sample_steps: int | None = None
    init_from: str | None = None
    sample_every: int | None = None
    ckpt_every: int | None = None
    seed: int | None = None
    resume: bool = False
    quiet: bool = False


@dataclass(frozen=True, kw_only=True)
class BbdmRun(TranslatorData, RunRecord):
    """What one BBDM run was.  ``schedule`` is the bridge's card (``core.schedules.BridgeSchedule``); runs from
    before ``--target`` made RGB planes."""

    TASK = "bbdm"
    TRAINER = "cellsynth train bbdm"
    SETTINGS = BbdmSettings

    schedule: dict[str, Any]
    loss: str
    train_count: int
    settings: BbdmSettings
    only_translocations: bool = False
    init_from: str | None = None

    @property
    def planes(self) -> str:
        return self.target or "rgb"

    @property
    def made_class(self) -> str:
        """What the bundle makes: translocated chromosomes, or any chromosome."""
        return "translocation" if self.only_translocations else "any"
