"""The record of one ``cellsynth train cyclegan`` run (paper 004's baseline, DAPI ↔ FISH planes): its settings, the
two domains it learnt from and its networks' shape, read by the exporter with ``CycleGanRun.read(run)``
(:mod:`.run_record`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .run_record import RunRecord, Settings
from .translator_data import TranslatorData


@dataclass(frozen=True)
class CycleGanSettings(Settings):
    """``cellsynth train cyclegan``'s options, as one run parsed them (see its ``--help`` for each one)."""

    data: str
    out: str
    exclude_slides: list[str] = field(default_factory=list)
    target: str | None = None
    planes: str | None = None
    base: int | None = None
    blocks: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lambda_cycle: float | None = None
    lambda_identity: float | None = None
    pool: int | None = None
    sample_every: int | None = None
    ckpt_every: int | None = None
    seed: int | None = None
    resume: bool = False
    quiet: bool = False


@dataclass(frozen=True, kw_only=True)
class CycleGanRun(TranslatorData, RunRecord):
    """What one CycleGAN run was: ``counts`` of its two domains (A: DAPI, B: the FISH planes), ``planes`` the target
    planes (runs from before ``--planes``: RGB)."""

    TASK = "cyclegan"
    TRAINER = "cellsynth train cyclegan"
    SETTINGS = CycleGanSettings

    counts: dict[str, int]
    settings: CycleGanSettings
    planes: str = "rgb"

    @property
    def made_class(self) -> str:
        return "translocation" if self.target == "translocations" else "any"
