"""The record of one ``cellsynth train gan`` run (paper 001's WGAN-GP and WGAN-div): its settings, the data it learnt
from, its loss and its generator's shape.

:class:`GanSettings` is the typed view of the trainer's options (``trainers.gan.build_parser``), mapped once;
:class:`GanRun` is what the run folder's ``config.json`` holds, read back with ``GanRun.read(run)``
(:mod:`.run_record`) by the exporter and the quality-over-training curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .generator_settings import GeneratorDataSettings
from .run_record import RunRecord, TrainingData


@dataclass(frozen=True)
class GanSettings(GeneratorDataSettings):
    """``cellsynth train gan``'s options, as one run parsed them (see its ``--help`` for each one)."""

    only_class: str | None = None
    loss: str | None = None
    div_points: str | None = None
    n_critic: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    latent: int | None = None
    base: int | None = None
    steps: int | None = None
    ema: float | None = None
    snapshot_every: int | None = None
    sample_every: int | None = None
    ckpt_every: int | None = None
    device: str | None = None
    max_minutes: float | None = None
    seed: int | None = None
    resume: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class GanRun(TrainingData, RunRecord):
    """What one WGAN run was.  ``net`` is the generator's shape (latent, base, num_classes: 0 for a one-class run,
    channels, size); ``div_points`` is None unless the loss is WGAN-div."""

    TASK = "gan"
    TRAINER = "cellsynth train gan"
    SETTINGS = GanSettings

    loss: str
    train_counts: dict[str, int]
    net: dict[str, Any]
    settings: GanSettings
    div_points: str | None = None
    fit: str | None = None
    size: int | None = None
    split: dict[str, Any] | None = None

    @property
    def conditional(self) -> bool:
        """Whether the generator takes a class (a run on several classes)."""
        return self.net["num_classes"] > 0
