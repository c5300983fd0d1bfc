"""Model bundles: a folder holding ``model.onnx``, ``card.json`` and optional ``.npz`` arrays.

The card is the bundle's contract with the data: what kind of model it is, which
classes and channels it expects, the input size, how raw intensities are
normalised, how it was trained and the sha256 of every file it ships.  Nothing in
a bundle is ever unpickled: the card is JSON, arrays are ``.npz`` loaded with
``allow_pickle=False`` and the network is ONNX.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import write_json_atomic
from .downloads import sha256_of
from .errors import BundleError
from .precision import Int8Variant
from .zoo import resolve

if TYPE_CHECKING:  # read lazily: these modules import heavier libraries or this one
    from .decisions import DecisionRule
    from .schedules import BridgeSchedule, NoiseSchedule
    from .sizing import SizeFit

CARD_NAME = "card.json"
CARD_SCHEMA_VERSION = 1
KNOWN_KINDS = ("classifier", "ddpm", "bbdm", "gan", "cyclegan", "cellpose")
CELLPOSE_NBASE = (32, 64, 128, 256)  # Cellpose 3's own widths: a Cellpose card that records none has these
CELLPOSE_THRESHOLDS = (0.4, 0.0)  # Cellpose's own flow and cell-probability thresholds
_REQUIRED = {
    "schema_version": int,
    "kind": str,
    "name": str,
    "channels": list,
    "input": dict,
    "normalization": dict,
    "files": dict,
}


def _read_section(card: "Card", kinds: tuple[str, ...], what: str, build):
    """``build()`` a typed view of one of the card's kind-specific sections, with a one-line error when the
    card is of another kind or the section is incomplete."""
    if card.kind not in kinds:
        raise BundleError(f"bundle '{card.name}' is a {card.kind} bundle; the {what} section belongs to "
                          f"{' and '.join(kinds)} bundles")
    try:
        return build()
    except (KeyError, TypeError, ValueError) as err:
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
    def from_card(cls, card: "Card") -> "DdpmSection":
        from .schedules import NoiseSchedule

        return _read_section(card, ("ddpm",), "ddpm", lambda: cls(
            NoiseSchedule.from_card(card.extra["schedule"]), int(card.extra["null_class"]), card.extra.get("x0_bounds")))


@dataclass(frozen=True)
class BridgeSection:
    """A BBDM card's typed view: the Brownian bridge it was trained with."""

    schedule: "BridgeSchedule"

    @classmethod
    def from_card(cls, card: "Card") -> "BridgeSection":
        from .schedules import BridgeSchedule

        return _read_section(card, ("bbdm",), "bridge", lambda: cls(BridgeSchedule.from_card(card.extra["schedule"])))


@dataclass(frozen=True)
class ConditionSection:
    """A translator's (BBDM, CycleGAN) typed view of its input: the condition's channel names (DAPI)
    and how its raw intensities are normalised."""

    channels: list[str]
    normalization: dict

    @classmethod
    def from_card(cls, card: "Card") -> "ConditionSection":
        return _read_section(card, ("bbdm", "cyclegan"), "condition", lambda: cls(
            list(card.extra["condition"]["channels"]), dict(card.extra["condition"]["normalization"])))


@dataclass(frozen=True)
class GanSection:
    """A GAN card's typed view: the latent size and whether the generator takes a class."""

    latent: int
    conditional: bool

    @classmethod
    def from_card(cls, card: "Card") -> "GanSection":
        return _read_section(card, ("gan",), "gan", lambda: cls(int(card.extra["gan"]["latent"]),
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
    def from_card(cls, card: "Card") -> "FidelitySection | None":
        data = card.extra.get("fidelity")
        if not data:
            return None
        return _read_section(card, ("ddpm", "gan"), "fidelity", lambda: cls(
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
    def from_card(cls, card: "Card") -> "CellposeSection":
        def build():
            net = card.extra.get("cellpose") or {}
            return cls(tuple(int(n) for n in net.get("nbase", CELLPOSE_NBASE)), int(net.get("nchan", 2)),
                       str(net.get("weights", "fp32")), net.get("thresholds"))

        return _read_section(card, ("cellpose",), "cellpose", build)

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
    def from_card(cls, card: "Card") -> "TrainingSection":
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

        return _read_section(card, KNOWN_KINDS, "training", build)


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


@dataclass(frozen=True)
class Card:
    """The JSON card of a bundle, frozen: a card with another section is a new card (:meth:`with_sections`,
    :meth:`with_training`, ``dataclasses.replace``).  ``extra`` keeps kind-specific sections; their typed views
    (``card.ddpm``, ``card.trained`` …) are built once, when :func:`read_card` checks them."""

    kind: str
    name: str
    channels: list[str]
    input: dict[str, Any]
    normalization: dict[str, Any]
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = CARD_SCHEMA_VERSION

    ddpm = _SectionView(DdpmSection)
    bridge = _SectionView(BridgeSection)
    condition = _SectionView(ConditionSection)
    gan = _SectionView(GanSection)
    fidelity = _SectionView(FidelitySection)  # None until measured
    cellpose = _SectionView(CellposeSection)
    trained = _SectionView(TrainingSection)
    # the typed sections each kind's card must read: checked when a bundle is read (read_card), so that a damaged
    # card is refused then, in one line, and not at its first use
    SECTIONS = {"classifier": ("trained", "decision", "int8"), "ddpm": ("trained", "ddpm", "fidelity"),
                "bbdm": ("trained", "bridge", "condition"), "gan": ("trained", "gan", "fidelity"),
                "cyclegan": ("trained", "condition"), "cellpose": ("trained", "cellpose")}

    def with_sections(self, **sections: Any) -> "Card":
        """This card with kind-specific sections set (``decision=…``, ``export=…``): a new card."""
        return replace(self, extra={**self.extra, **sections})

    def with_training(self, **entries: Any) -> "Card":
        """This card with entries of its ``training`` section set: a new card."""
        return replace(self, training={**self.training, **entries})

    def check_sections(self) -> "Card":
        """Read every typed section of this card's kind (:attr:`SECTIONS`); a :class:`BundleError` names the first
        incomplete one."""
        for section in self.SECTIONS.get(self.kind, ()):
            getattr(self, section)
        return self

    @property
    def int8(self) -> Int8Variant | None:
        """A classifier's int8 variant, None when it has none."""
        return Int8Variant.from_card(self)

    @property
    def feature_dim(self) -> int | None:
        """A classifier's feature width (its ``features`` output), None when the card does not record it."""
        dim = self.outputs.get("feature_dim")
        return int(dim) if dim else None

    @property
    def object_crop(self) -> str:
        """How the training crops were cut: ``window`` (fixed window, native scale) or ``resize`` (the
        object's box resized). Cards from before this was recorded: ``resize`` when mixed sizes were
        resized to fit (``input.fit``), else ``window``."""
        return self.input.get("object_crop") or ("resize" if self.input.get("fit") == "resize" else "window")

    @property
    def object_mask(self) -> str:
        """``object`` when the training crops held only their object's pixels (the rest set to 0), else ``none``."""
        return self.input.get("object_mask", "none")

    @property
    def rarest_class(self) -> str | None:
        """The class with the fewest training crops among ``classes`` (None when the card has no counts)."""
        counts = self.trained.counts
        known = [c for c in self.classes if counts and c in counts]
        return min(known, key=counts.get) if known else None

    @property
    def decision(self) -> "DecisionRule | None":
        """A classifier's decision thresholds for its rare classes, chosen on validation (the card's ``decision``
        section); None: every crop gets its most probable class."""
        from .decisions import DecisionRule

        data = self.extra.get("decision")
        if not data or not data.get("thresholds"):
            return None
        try:
            rule = DecisionRule.from_dict(data)
            rule.check(self.classes)
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"bundle '{self.name}': its decision section is invalid ({err}); re-export it") from err
        return rule

    @property
    def output_names(self) -> list[str]:
        """The graph's outputs, as the card names them (a classifier's ``logits`` and ``features``)."""
        return [str(name) for name in self.outputs.get("names", [])]

    @property
    def output_name(self) -> str:
        """The one output of a generator or translator (``eps`` or ``v``, ``images``, ``prediction``, ``fake``)."""
        names = self.output_names
        if not names:
            raise BundleError(f"bundle '{self.name}': its card names no output; re-export it")
        return names[0]

    @property
    def model_sha256(self) -> str:
        return self.files["model.onnx"]["sha256"]

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.input["size"]
        return int(height), int(width)

    @property
    def size_fit(self) -> "SizeFit | None":
        """How crops of another size are brought to ``image_size`` (``input.fit``), or None: refused."""
        from .sizing import SizeFit

        fit = self.input.get("fit")
        return SizeFit(self.image_size, fit) if fit else None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "name": self.name,
            "classes": list(self.classes),
            "channels": list(self.channels),
            "input": self.input,
            "normalization": self.normalization,
            "outputs": self.outputs,
            "training": self.training,
            "versions": self.versions,
            "files": self.files,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "card") -> "Card":
        validate_card_dict(data, source)
        known = {"schema_version", "kind", "name", "classes", "channels", "input",
                 "normalization", "outputs", "training", "versions", "files"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(
            kind=data["kind"], name=data["name"], channels=list(data["channels"]),
            input=data["input"], normalization=data["normalization"], files=data["files"],
            classes=list(data.get("classes", [])), outputs=data.get("outputs", {}),
            training=data.get("training", {}), versions=data.get("versions", {}),
            extra=extra, schema_version=data["schema_version"],
        )


def validate_card_dict(data: Any, source: str = "card") -> None:
    """Raise :class:`BundleError` naming the first problem with a card's content."""
    if not isinstance(data, dict):
        raise BundleError(f"{source}: the card must be a JSON object, got {type(data).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise BundleError(f"{source}: the card has no '{key}' entry; re-export the bundle")
        if not isinstance(data[key], kind):
            raise BundleError(f"{source}: card entry '{key}' must be a {kind.__name__}")
    if data["schema_version"] > CARD_SCHEMA_VERSION:
        raise BundleError(
            f"{source}: card schema {data['schema_version']} is newer than this napari-cellsynth "
            f"understands ({CARD_SCHEMA_VERSION}); upgrade napari-cellsynth")
    if data["kind"] not in KNOWN_KINDS:
        raise BundleError(f"{source}: unknown bundle kind '{data['kind']}'; expected one of {KNOWN_KINDS}")
    if data["input"].get("object_mask", "none") not in ("none", "object"):
        raise BundleError(f"{source}: card 'input.object_mask' must be 'none' or 'object', "
                          f"got {data['input']['object_mask']!r}")
    fit = data["input"].get("fit")
    if fit is not None and fit not in ("resize", "pad"):
        raise BundleError(f"{source}: card 'input.fit' must be 'resize', 'pad' or absent, got {fit!r}")
    size = data["input"].get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise BundleError(f"{source}: card 'input.size' must be [height, width] in pixels, got {size!r}")
    if not data["channels"]:
        raise BundleError(f"{source}: card 'channels' is empty; a bundle needs at least one channel")
    if data["kind"] == "classifier" and len(data.get("classes", [])) < 2:
        raise BundleError(f"{source}: a classifier card needs at least two 'classes'")
    norm = data["normalization"]
    if norm.get("type") == "standardize":
        for key in ("mean", "std"):
            values = norm.get(key)
            if not isinstance(values, list) or len(values) != len(data["channels"]):
                raise BundleError(
                    f"{source}: normalization '{key}' needs one value per channel "
                    f"({len(data['channels'])}), got {values!r}")
        if any(float(s) <= 0 for s in norm["std"]):
            raise BundleError(f"{source}: normalization 'std' must be positive")
    elif norm.get("type") not in ("none", "minmax_range"):
        raise BundleError(f"{source}: unknown normalization type {norm.get('type')!r}")
    for name, entry in data["files"].items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise BundleError(f"{source}: file name {name!r} in the card must be a plain name")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{source}: card file entry {name!r} needs a 'sha256' string")


def save_bundle(folder: str | os.PathLike, card: Card, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``card.json`` (and ``arrays.npz``) into ``folder``, recording every file's sha256.

    ``model.onnx`` (and any other file already named in ``card.files``) must already be in ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(card.files)
    if arrays:
        tmp = folder / ".arrays.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, folder / "arrays.npz")
        names += [] if "arrays.npz" in names else ["arrays.npz"]
    for name in names:
        if not (folder / name).is_file():
            raise BundleError(f"{folder}: card names '{name}' but the file is not in the bundle")
    files = {name: {"sha256": sha256_of(folder / name)} for name in names}
    write_json_atomic(folder / CARD_NAME, replace(card, files=files).to_dict())
    return folder


def read_card(folder: str | os.PathLike) -> Card:
    folder = resolve(folder)  # a path, or zoo:NAME
    if not folder.exists():
        raise BundleError(f"bundle {folder} does not exist; pass the folder that holds card.json and model.onnx")
    if folder.is_file():
        if folder.name == CARD_NAME or folder.suffix == ".onnx":
            folder = folder.parent
        else:
            raise BundleError(f"{folder} is a file; pass the bundle folder (with card.json and model.onnx)")
    card_path = folder / CARD_NAME
    if not card_path.is_file():
        hint = ("; it looks like a training run: make a bundle of it with cellsynth export KIND RUN --out BUNDLE"
                if (folder / "config.json").is_file() or (folder / "report.json").is_file() else
                "; is this a napari-cellsynth bundle?")
        raise BundleError(f"{folder} has no {CARD_NAME}{hint}")
    try:
        data = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{card_path} is not valid JSON ({err}); the bundle is corrupt, re-export it") from err
    return Card.from_dict(data, source=str(card_path)).check_sections()


def verify_files(folder: str | os.PathLike, card: Card) -> None:
    """Check every file the card names exists and matches its recorded sha256."""
    folder = Path(folder)
    for name, entry in card.files.items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"bundle {folder} is missing '{name}' named in its card")
        actual = sha256_of(path)
        if actual != entry["sha256"]:
            raise BundleError(
                f"bundle {folder}: '{name}' does not match its recorded sha256 "
                f"(card {entry['sha256'][:12]}…, file {actual[:12]}…); the file is corrupt or was "
                "changed after export: re-export or re-download the bundle")


def load_arrays(folder: str | os.PathLike, card: Card) -> dict[str, np.ndarray]:
    """The bundle's ``arrays.npz`` as plain arrays (never unpickled)."""
    path = Path(folder) / "arrays.npz"
    if "arrays.npz" not in card.files:
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as err:
        raise BundleError(f"{path} holds pickled objects, which are refused: {err}") from err


def check_kind(card: Card, expected: str | tuple[str, ...], source: str) -> None:
    """``expected``: one kind, or several kinds that all fit (e.g. the generators, ddpm or gan)."""
    kinds = (expected,) if isinstance(expected, str) else tuple(expected)
    if card.kind not in kinds:
        wanted = " or ".join(f"'{k}'" for k in kinds)
        raise BundleError(
            f"bundle {source} is a '{card.kind}' bundle, but a {wanted} bundle is needed here; "
            f"choose a {' or '.join(kinds)} bundle")
