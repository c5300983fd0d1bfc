"""The run record (``RUN/run.json``): the settings, the models and their sha256s, the versions, and each stack's status."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from ..bundle import check_kind, read_card, sha256_of, verify_files
from ..images import ImageInputError
from ..segment import BUILT_IN, check_builtin, is_bundle, model_thresholds
from ..zoo import resolve

RECORD = "run.json"  # a batch run's record, in its output folder
RUN_KIND = "cellsynth batch run"  # the record's "kind": what napari's reader recognises

PACKAGES = ("napari-cellsynth", "numpy", "cellpose", "torch", "onnxruntime", "dask", "distributed", "zarr",
            "ome-zarr", "tifffile", "scikit-image")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def cellpose_identity(model: str) -> dict:
    """A built-in model by name, a cellpose bundle (or zoo:NAME) by its files' sha256s, a model file by its sha256."""
    if model in BUILT_IN:
        check_builtin(model)  # offline and not cached: one line now, not a failure in every frame
        return {"model": model, "built_in": True}
    if is_bundle(model):
        identity = bundle_identity(model)
        if identity["kind"] != "cellpose":
            raise ImageInputError(f"--segment-model {model} is a '{identity['kind']}' bundle, not a cellpose one")
        # the thresholds its card gives segmentation where --flow-threshold / --cellprob-threshold are not set
        return {"model": model, **identity, "mask_thresholds": list(model_thresholds(model) or ())}
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"Cellpose model {model!r} is neither a built-in name "
                                f"({', '.join(BUILT_IN[:4])}, …), a cellpose bundle (zoo:NAME) nor an existing model file")
    return {"model": str(path.resolve()), "sha256": sha256_of(path)}


def bundle_identity(bundle: str) -> dict:
    """The bundle's folder, kind, name, classes and file sha256s (verified against its card)."""
    folder = resolve(bundle)
    card = read_card(folder)
    verify_files(folder, card)
    return {"folder": str(Path(folder).resolve()), "kind": card.kind, "name": card.name, "classes": list(card.classes),
            "channels": card.n_channels, "sha256": {name: entry["sha256"] for name, entry in card.files.items()}}


def classifier_identity(bundle: str) -> tuple[dict, object]:
    """:func:`bundle_identity` of a classifier bundle (another kind is refused), and its card; ``runs_as`` says which
    weights its sessions run here (fp32 or int8), so that a rerun elsewhere that would run other weights redoes the
    frames rather than mixing the two."""
    from ..runtime import planned_weights

    card = read_card(resolve(bundle))
    check_kind(card, "classifier", str(bundle))
    identity = bundle_identity(bundle)
    identity.pop("kind")
    return identity | {"runs_as": planned_weights(card).record}, card
