"""The record of one ``cellsynth train ddpm`` run: its settings, the data it learnt from, its schedule and its
U-Net's shape.

:class:`DdpmSettings` is the typed view of the trainer's options (``trainers.ddpm.build_parser``), mapped once after
the options left unset were resolved (the U-Net's shape and the schedule: the start's when fine-tuning, else the
defaults).  :class:`DdpmRun` is what the run folder's ``config.json`` holds, read back with ``DdpmRun.read(run)``
(:mod:`.run_record`) by the exporter, ``--init-from``, ``--resume`` and the experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .generator_settings import GeneratorDataSettings
from .run_record import RunRecord, TrainingData


@dataclass(frozen=True)
class DdpmSettings(GeneratorDataSettings):
    """``cellsynth train ddpm``'s options, as one run resolved them (see its ``--help`` for each one)."""

    only_classes: list[str] | None = None
    schedule: str | None = None
    schedule_params: str | None = None
    timesteps: int | None = None
    prediction: str | None = None
    base: int | None = None
    channel_mult: list[int] | None = None
    attention_gates: bool | None = None
    dropout: float | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    class_lr: float | None = None
    sampling: str | None = None
    ema: float | None = None
    snapshot_every: int | None = None
    p_uncond: float | None = None
    zero_terminal_snr: bool | None = None
    bf16: bool = False
    device: str | None = None
    max_minutes: float | None = None
    init_from: str | None = None
    sample_every: int | None = None
    ckpt_every: int | None = None
    seed: int | None = None
    resume: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class DdpmRun(TrainingData, RunRecord):
    """What one DDPM run was.  ``schedule`` is the noise schedule's card (``core.schedules.NoiseSchedule``), ``net``
    the U-Net's shape as ``nets.unet.unet_from_net`` takes it, ``split`` the seed and classes the training split was
    stratified by, ``init_from`` the start's record when fine-tuning."""

    TASK = "ddpm"
    TRAINER = "cellsynth train ddpm"
    SETTINGS = DdpmSettings

    schedule: dict[str, Any]
    train_counts: dict[str, int]
    net: dict[str, Any]
    settings: DdpmSettings
    fit: str | None = None
    size: int | None = None
    split: dict[str, Any] | None = None
    init_from: dict[str, Any] | None = None

    @property
    def prediction(self) -> str:
        """The network's target: ``epsilon`` or ``v``."""
        return self.schedule.get("prediction", "epsilon")
