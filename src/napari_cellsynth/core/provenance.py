"""The part of every provenance record that names the model and the software; each job adds what it ran."""

from __future__ import annotations

from datetime import datetime, timezone


def bundle_provenance(card) -> dict:
    """The bundle's name, kind, sha256 and channels, when, and which napari-cellsynth."""
    from .. import __version__

    return {"bundle": card.name, "bundle_sha256": card.model_sha256, "kind": card.kind, "channels": card.channels,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "napari_cellsynth": __version__}
