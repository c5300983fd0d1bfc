"""The typed sections of a bundle's card: each a frozen view, built once from the card's JSON, that names what an
incomplete section lacks in one line.  Which kinds have which sections is the card classes' business (``cards``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BundleError

if TYPE_CHECKING:  # read lazily: these modules import heavier libraries
    from .schedules import BridgeSchedule, NoiseSchedule

CELLPOSE_NBASE = (32, 64, 128, 256)  # Cellpose 3's own widths: a Cellpose card that records none has these
CELLPOSE_THRESHOLDS = (0.4, 0.0)  # Cellpose's own flow and cell-probability thresholds


def _read_section(card, what: str, build):
    """``build()`` a typed view of one of the card's sections, with a one-line error when it is incomplete."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # AttributeError: a list where a dict belongs
        raise BundleError(f"bundle '{card.name}': its {what} section is incomplete ({err}); re-export it") from err


@dataclass(frozen=True)
class DdpmSection:
    """A DDPM card's typed view: the schedule the network was trained with (prediction type and
    zero-terminal SNR included), the null class of classifier-free guidance, and the per-channel
    range of the training crops in the network's normalised scale (static x̂₀ thresholding)."""

    schedule: "NoiseSchedule"
    null_class: int
    x0_bounds: dict | None

    @classmethod
    def from_card(cls, card) -> "DdpmSection":
        from .schedules import NoiseSchedule

        return _read_section(card, "ddpm", lambda: cls(
            NoiseSchedule.from_card(card.extra["schedule"]), int(card.extra["null_class"]), card.extra.get("x0_bounds")))


@dataclass(frozen=True)
class BridgeSection:
    """A BBDM card's typed view: the Brownian bridge it was trained with."""

    schedule: "BridgeSchedule"

    @classmethod
    def from_card(cls, card) -> "BridgeSection":
        from .schedules import BridgeSchedule

        return _read_section(card, "bridge", lambda: cls(BridgeSchedule.from_card(card.extra["schedule"])))


@dataclass(frozen=True)
class ConditionSection:
    """A translator's (BBDM, CycleGAN) typed view of its input: the condition's channel names (DAPI)
    and how its raw intensities are normalised."""

    channels: list[str]
    normalization: dict

    @classmethod
    def from_card(cls, card) -> "ConditionSection":
        return _read_section(card, "condition", lambda: cls(
            list(card.extra["condition"]["channels"]), dict(card.extra["condition"]["normalization"])))


@dataclass(frozen=True)
class GanSection:
    """A GAN card's typed view: the latent size and whether the generator takes a class."""

    latent: int
    conditional: bool

    @classmethod
    def from_card(cls, card) -> "GanSection":
        return _read_section(card, "gan", lambda: cls(int(card.extra["gan"]["latent"]),
                                                                 bool(card.extra["gan"]["conditional"])))


@dataclass(frozen=True)
class FidelitySection:
    """A generator's measured fidelity (``cellsynth study --bundles-out``): per class, the share of its cells that a
    real-data classifier with no part in making them calls the class, beside that classifier's recall on real test
    cells; precision, recall, density and coverage on its features; SSIM-max to the training cells (memorisation);
    coverage of finer labels.  Each number a ``{"mean", "std"}`` over the study's seeds.  ``sampling`` says how the
    cells were made (fidelity depends on it); ``measured_by`` is the study's command."""

    classes: dict[str, dict]
    sampling: str
    seeds: list[int]
    independent: bool
    measured_by: str

    @classmethod
    def from_card(cls, card) -> "FidelitySection | None":
        data = card.extra.get("fidelity")
        if not data:
            return None
        return _read_section(card, "fidelity", lambda: cls(
            dict(data["classes"]), str(data["sampling"]), list(data["seeds"]), bool(data["independent"]),
            str(data["measured_by"])))

    def to_dict(self) -> dict:
        return {"classes": self.classes, "sampling": self.sampling, "seeds": self.seeds,
                "independent": self.independent, "measured_by": self.measured_by}

    def lines(self) -> list[str]:
        """One readable line per class."""
        out = []
        for name, f in self.classes.items():
            def m(key: str) -> str:
                return f"{f[key]['mean']:.3f}" if key in f else "?"
            out.append(f"{name}: {m('class_fidelity')} of generated cells called {name} by an independent real-data "
                       f"classifier (its recall on real {name}: {m('real_test_recall')}); precision {m('precision')}, "
                       f"recall {m('recall')}, coverage {m('coverage')}; SSIM-max {m('ssim_max')} (real test cells "
                       f"{m('ssim_max_real_test')}); {len(self.seeds)} seeds; {self.sampling}")
        return out


@dataclass(frozen=True)
class CellposeSection:
    """A Cellpose card's typed view: its network's shape (channels per level, input channels), how its weights
    are stored (``fp16`` or ``fp32``; Cellpose computes in fp32 either way) and the flow and cell-probability
    thresholds it segments with by default (chosen on its training images, see ``thresholds``; Cellpose's own
    0.4 and 0.0 for a card without them)."""

    nbase: tuple[int, ...]
    nchan: int
    weights: str
    thresholds: dict | None = None  # how the thresholds were chosen: on what, the grid, the score there

    @classmethod
    def from_card(cls, card) -> "CellposeSection":
        def build():
            net = card.extra.get("cellpose") or {}
            return cls(tuple(int(n) for n in net.get("nbase", CELLPOSE_NBASE)), int(net.get("nchan", 2)),
                       str(net.get("weights", "fp32")), net.get("thresholds"))

        return _read_section(card, "cellpose", build)

    @property
    def mask_thresholds(self) -> tuple[float, float]:
        """(flow, cell probability) to segment with: the chosen ones, else Cellpose's."""
        chosen = self.thresholds
        return (float(chosen["flow"]), float(chosen["cellprob"])) if chosen else CELLPOSE_THRESHOLDS


@dataclass(frozen=True)
class TrainingSection:
    """What every card may say of its training, typed; each field None (or empty) when the card does not record it:
    the training data's path as the exporting machine knew it (``source``), the map from its original labels to the
    classes (``label_map``; None: the labels are the classes), training crops per class (``counts``: generators'
    ``train_counts``, classifiers' split ``counts.train``), a classifier's architecture, width and metrics on its
    test split (``test_metrics``); a generator's U-Net shape (``net``), the run it was fine-tuned from
    (``init_from``) and its split (seed and stratifying classes); the slides a translator left out of its training
    data (``exclude_slides``); a Cellpose model's held-out slides and its AP@0.5 on them."""

    source: str | None = None
    label_map: dict[str, list[str]] | None = None
    counts: dict[str, int] | None = None
    test_metrics: dict[str, Any] | None = None
    arch: str | None = None
    width: int | None = None
    net: dict | None = None
    init_from: dict | None = None
    split: dict | None = None
    exclude_slides: tuple[str, ...] = ()
    held_out_slides: tuple[str, ...] = ()
    test_ap50: float | None = None

    @classmethod
    def from_card(cls, card) -> "TrainingSection":
        def build():
            t, data = card.training, card.training.get("data") or {}
            ap50 = t.get("test_ap50")
            counts = data.get("train_counts") or (data.get("counts") or {}).get("train")
            return cls(str(data["source"]) if data.get("source") else None, data.get("label_map") or None,
                       {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else None,
                       t.get("test_metrics") or None,
                       t.get("arch"), None if t.get("width") is None else int(t["width"]),
                       dict(t["net"]) if t.get("net") else None, t.get("init_from"), data.get("split"),
                       tuple(data.get("exclude_slides") or ()), tuple(t.get("held_out_slides") or ()),
                       None if ap50 is None else float(ap50[0] if isinstance(ap50, list) else ap50))

        return _read_section(card, "training", build)


class _SectionView:
    """``card.ddpm`` and the like: the typed view of a kind-specific section, built once per card (the card is
    frozen: a changed card is a new one, :meth:`Card.with_sections`, with views of its own)."""

    def __init__(self, section: type):
        self.section = section

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, card, owner=None):
        if card is None:
            return self
        built = card.__dict__.setdefault("_sections", {})  # beside the frozen fields, not one of them
        if self.name not in built:
            built[self.name] = self.section.from_card(card)
        return built[self.name]
