"""The part of every provenance record that names the model and the software; each job adds what it ran."""

from __future__ import annotations

from datetime import datetime, timezone


def bundle_provenance(card) -> dict:
    """The bundle's name, kind, sha256 and channels, when, and which napari-cellsynth."""
    from .. import __version__

    return {"bundle": card.name, "bundle_sha256": card.model_sha256, "kind": card.kind, "channels": card.channels,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "napari_cellsynth": __version__}


def model_provenance(model) -> dict:
    """:func:`bundle_provenance` of a loaded model (:class:`runtime.OnnxModel`), with the weights that ran and why
    (fp32 or an int8 variant) and the execution provider."""
    ran = model.card.files.get(model.runs_as.file, {}).get("sha256")
    return bundle_provenance(model.card) | {"runs_as": model.runs_as.record | {"sha256": ran,
                                                                             "provider": model.providers[0]}}
