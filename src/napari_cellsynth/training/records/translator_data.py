"""What the two DAPI → FISH translators (BBDM, CycleGAN) record of their data: the chromosome set, the slides held
out, which chromosomes they learnt to make, the target planes and the DAPI condition's normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class TranslatorData:
    """The translators' data record.  ``target`` is what the trainer's ``--target`` chose (BBDM: the planes;
    CycleGAN: all chromosomes or translocations only)."""

    data: str
    channels: list[str]
    image_size: list[int]
    normalization: dict[str, Any]
    condition_normalization: dict[str, Any]
    net: dict[str, Any]
    condition_channels: list[str] = field(default_factory=lambda: ["DAPI"])
    dtype: str = "uint8"
    value_range: list[float] = field(default_factory=lambda: [0, 255])
    exclude_slides: list[str] = field(default_factory=list)
    target: str | None = None

    @property
    def condition(self) -> dict[str, Any]:
        """The card's ``condition`` section: DAPI as the translator reads it."""
        return {"channels": self.condition_channels, "dtype": "uint8", "normalization": self.condition_normalization,
                "to_target": "repeated on every target channel"}
