"""A bundle's card, one frozen class per kind: what the model is, which classes and channels it takes, its input size,
how raw intensities are normalised, how it was trained, the sha256 of every file, the names of its graph's inputs and
outputs, and the typed sections its kind has (``card_sections``).

``Card(kind=…)`` and :meth:`Card.from_dict` build the kind's class (:data:`CARD_KINDS`), so callers ask a card for
what its kind knows and never branch on the kind: a classifier's card has ``decision`` and ``feature_dim``, a DDPM's
``ddpm`` and ``fidelity``, a GAN's ``gan``, a translator's ``condition`` (every generator's ``fidelity``); asking a
card for another kind's section is a one-line :class:`BundleError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from .card_sections import (BridgeSection, CellposeSection, ConditionSection, DdpmSection, FidelitySection,
                            GanSection, TrainingSection, _SectionView)
from .errors import BundleError
from .precision import Int8Variant

if TYPE_CHECKING:  # read lazily: these modules import heavier libraries
    from .decisions import DecisionRule
    from .sizing import SizeFit

CARD_SCHEMA_VERSION = 1
_REQUIRED = {
    "schema_version": int,
    "kind": str,
    "name": str,
    "channels": list,
    "input": dict,
    "normalization": dict,
    "files": dict,
}
CARD_KINDS: dict[str, type["Card"]] = {}  # kind → its card class, filled by register_kind


def register_kind(kind: str):
    """Class decorator: the card class of bundles of ``kind``."""
    def register(cls):
        cls.KIND = kind
        CARD_KINDS[kind] = cls
        return cls
    return register


@dataclass(frozen=True)
class Card:
    """The JSON card of a bundle, frozen: a card with another section is a new card (:meth:`with_sections`,
    :meth:`with_training`, ``dataclasses.replace``).  ``extra`` keeps kind-specific sections; their typed views
    (``card.ddpm``, ``card.trained`` …) are built once, when :func:`read_card` checks them.  ``Card(kind=…)`` is the
    kind's class (:data:`CARD_KINDS`)."""

    KIND: ClassVar[str] = ""
    INPUTS: ClassVar[tuple[str, ...]] = ()  # the graph's input names, in the order the exporter traces them
    SECTIONS: ClassVar[tuple[str, ...]] = ("trained",)  # the typed sections read_card checks
    ONNX_GRAPH: ClassVar[bool] = True  # its network is model.onnx, run by ONNX Runtime

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

    trained = _SectionView(TrainingSection)

    def __new__(cls, *args, **kwargs):
        kind = kwargs.get("kind", args[0] if args else None)
        return super().__new__(CARD_KINDS.get(kind, cls) if cls is Card else cls)

    def __post_init__(self):
        if self.kind not in CARD_KINDS:
            raise BundleError(f"card '{self.name}': unknown bundle kind {self.kind!r}; expected one of "
                              f"{tuple(CARD_KINDS)}")
        if self.kind != self.KIND:  # replace(card, kind=…): a card of another kind is made anew, Card(kind=…)
            raise BundleError(f"card '{self.name}' is a {self.KIND} card and cannot become a {self.kind} one; make a "
                              f"new Card(kind={self.kind!r}, …)")

    def __getattr__(self, name: str):
        """Another kind's section: a one-line error naming the kinds that have it."""
        owners = [kind for kind, cls in CARD_KINDS.items() if name in cls.SECTIONS]
        if name.startswith("_") or not owners or name in type(self).SECTIONS:  # its own section failed inside
            raise AttributeError(name)
        raise BundleError(f"bundle '{self.__dict__.get('name')}' is a {self.__dict__.get('kind')} bundle; the "
                          f"{name} section belongs to {' and '.join(owners)} bundles")

    def with_sections(self, **sections: Any) -> "Card":
        """This card with kind-specific sections set (``decision=…``, ``export=…``): a new card."""
        return replace(self, extra={**self.extra, **sections})

    def with_training(self, **entries: Any) -> "Card":
        """This card with entries of its ``training`` section set: a new card."""
        return replace(self, training={**self.training, **entries})

    def check_sections(self) -> "Card":
        """Read every typed section of this card's kind (:attr:`SECTIONS`); a :class:`BundleError` names the first
        incomplete one."""
        for section in self.SECTIONS:
            getattr(self, section)
        return self

    @property
    def int8(self) -> Int8Variant | None:
        """The bundle's int8 variant (``cellsynth export int8``), None when it has none."""
        return Int8Variant.from_card(self)

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
    def graph_inputs(self) -> tuple[str, ...]:
        """The input names this card's graph takes: its kind's :attr:`INPUTS`."""
        return self.INPUTS

    def feeds(self, *arrays) -> dict:
        """The graph's feeds: ``arrays`` named by :attr:`graph_inputs`, in order."""
        if len(arrays) != len(self.graph_inputs):
            raise BundleError(f"bundle '{self.name}': its graph takes {list(self.graph_inputs)}, not {len(arrays)} "
                              "inputs")
        return dict(zip(self.graph_inputs, arrays))

    def graph_image_shape(self, inputs, outputs, folder) -> list:
        """The shape of the graph's image tensor that must match the card's channels and size: its first input's."""
        return inputs[0].shape

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


@register_kind("classifier")
@dataclass(frozen=True)
class ClassifierCard(Card):
    """A classifier's card: crops in, ``logits`` and ``features`` out; the decision thresholds chosen on validation
    and its int8 variant."""

    INPUTS: ClassVar[tuple[str, ...]] = ("images",)
    SECTIONS: ClassVar[tuple[str, ...]] = ("trained", "decision", "int8")

    @property
    def feature_dim(self) -> int | None:
        """A classifier's feature width (its ``features`` output), None when the card does not record it."""
        dim = self.outputs.get("feature_dim")
        return int(dim) if dim else None

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
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise BundleError(f"bundle '{self.name}': its decision section is invalid ({err}); re-export it") from err
        return rule


@register_kind("ddpm")
@dataclass(frozen=True)
class DdpmCard(Card):
    """A class-conditional DDPM's card: the noisy image, the timestep and the class in, ε or v out."""

    INPUTS: ClassVar[tuple[str, ...]] = ("x", "t", "class")
    SECTIONS: ClassVar[tuple[str, ...]] = ("trained", "ddpm", "fidelity")
    ddpm = _SectionView(DdpmSection)
    fidelity = _SectionView(FidelitySection)  # None until measured


@register_kind("bbdm")
@dataclass(frozen=True)
class BbdmCard(Card):
    """A Brownian-bridge translator's card (DAPI → fluorophores): the bridge's state and timestep in, the
    prediction out; the condition's channels and normalisation."""

    INPUTS: ClassVar[tuple[str, ...]] = ("x", "t")
    SECTIONS: ClassVar[tuple[str, ...]] = ("trained", "bridge", "condition", "fidelity")
    bridge = _SectionView(BridgeSection)
    condition = _SectionView(ConditionSection)
    fidelity = _SectionView(FidelitySection)  # of the cells it paints: None until a study measured them


@register_kind("gan")
@dataclass(frozen=True)
class GanCard(Card):
    """A GAN generator's card: latents (and the class, when conditional) in, images out."""

    INPUTS: ClassVar[tuple[str, ...]] = ("z", "class")
    SECTIONS: ClassVar[tuple[str, ...]] = ("trained", "gan", "fidelity")
    gan = _SectionView(GanSection)
    fidelity = _SectionView(FidelitySection)

    @classmethod
    def inputs_for(cls, conditional: bool) -> tuple[str, ...]:
        """Latents, and the class when the generator is conditional."""
        return cls.INPUTS[:2 if conditional else 1]

    @property
    def graph_inputs(self) -> tuple[str, ...]:
        return self.inputs_for(self.gan.conditional)

    def graph_image_shape(self, inputs, outputs, folder) -> list:
        """A generator takes latents and makes images of the card's shape: its output is the image tensor."""
        latent = self.gan.latent
        if [d if isinstance(d, int) else None for d in inputs[0].shape[1:]] != [latent]:
            raise BundleError(f"bundle {folder}: ONNX input shape {inputs[0].shape} does not match its card's latent "
                              f"size {latent}; the bundle is inconsistent, re-export it")
        return outputs[0].shape


@register_kind("cyclegan")
@dataclass(frozen=True)
class CycleganCard(Card):
    """A CycleGAN translator's card: the condition (DAPI) in, the fake image out."""

    INPUTS: ClassVar[tuple[str, ...]] = ("x",)
    SECTIONS: ClassVar[tuple[str, ...]] = ("trained", "condition", "fidelity")
    condition = _SectionView(ConditionSection)
    fidelity = _SectionView(FidelitySection)


@register_kind("cellpose")
@dataclass(frozen=True)
class CellposeCard(Card):
    """A Cellpose model's card: no ONNX graph (its weights run in Cellpose's own network); the network's shape and
    the thresholds it segments with."""

    SECTIONS: ClassVar[tuple[str, ...]] = ("trained", "cellpose")
    ONNX_GRAPH: ClassVar[bool] = False
    cellpose = _SectionView(CellposeSection)


KNOWN_KINDS = tuple(CARD_KINDS)


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
