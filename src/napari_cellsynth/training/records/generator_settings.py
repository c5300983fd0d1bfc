"""The options every generator trainer shares (``data.labelled_crops.add_generator_data_arguments``): which crops it
learns from, how their labels become classes, the classifier's split it keeps to, and how mixed sizes are fitted."""

from __future__ import annotations

from dataclasses import dataclass, field

from .run_record import Settings


@dataclass(frozen=True)
class GeneratorDataSettings(Settings):
    """The generator trainers' data options, typed; each trainer's settings add its own."""

    data: str
    out: str
    labels_csv: str | None = None
    label_map: str | None = None
    split_seed: int | None = None
    stratify_by: str | None = None
    keep_fraction: list[str] = field(default_factory=list)
    size: int | None = None
    fit: str | None = None
