"""The record of one ``cellsynth train pretrain`` run (SimCLR on unlabelled crops, the stand-in for ImageNet
weights): its settings, the crops it saw and the backbone it made, read back by ``--init-from`` and the pretraining
experiment with ``PretrainRun.read(run)`` (:mod:`.run_record`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .run_record import RunRecord, Settings


@dataclass(frozen=True)
class PretrainSettings(Settings):
    """``cellsynth train pretrain``'s options, as one run parsed them (see its ``--help`` for each one)."""

    data: str
    out: str
    exclude: str | None = None
    size: int | None = None
    fit: str | None = None
    arch: str | None = None
    width: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup: float | None = None
    temperature: float | None = None
    projection_dim: int | None = None
    shift: float | None = None
    crop_scale: float | None = None
    noise: float | None = None
    max_minutes: float | None = None
    ckpt_every: int | None = None
    threads: int | None = None
    device: str | None = None
    seed: int | None = None
    resume: bool = False
    quiet: bool = False


@dataclass(frozen=True, kw_only=True)
class PretrainRun(RunRecord):
    """What one pretraining run was; ``steps_run`` and ``seconds`` are written when it ends (None before)."""

    TASK = "pretrain"
    TRAINER = "cellsynth train pretrain"
    SETTINGS = PretrainSettings

    method: str
    data: str
    crops: int
    channels: list[str]
    image_size: list[int]
    normalization: dict[str, Any]
    steps: int
    settings: PretrainSettings
    exclude: str | None = None
    dtype: str | None = None
    fit: str | None = None
    arch: str | None = None
    width: int | None = None
    steps_run: int | None = None
    seconds: float | None = None

    def finished(self, steps_run: int, seconds: float) -> "PretrainRun":
        return replace(self, steps_run=steps_run, seconds=seconds)

    def as_start(self) -> dict:
        """What a classifier that starts from this run records of it (its config's ``init_from``)."""
        return {"data": self.data, "crops": self.crops, "steps": self.steps_run or self.steps, "method": self.method}
