"""Listing a bundle in a zoo's registry: its kind, the sha256 and size of every file, and the measurements
behind it.  The checkout's ``models/`` is listed in the registry that ships with the package."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import write_json_atomic
from .bundle import read_card, verify_files
from .downloads import sha256_of
from .zoo import CHECKOUT_MODELS, REGISTRY, SHIPPED_REGISTRY, in_checkout


def registry_for(folder: Path) -> Path:
    """The registry that lists a bundle folder: the shipped one for the checkout's ``models/``, else
    ``registry.json`` beside the folder."""
    if in_checkout() and folder.parent.resolve() == CHECKOUT_MODELS.resolve():
        return SHIPPED_REGISTRY
    return folder.parent / REGISTRY


def add_to_registry(folder: str | os.PathLike, description: str, metrics: dict | None = None,
                    results: str = "") -> Path:
    """List the bundle in ``folder`` in its zoo's registry (:func:`registry_for`) with the sha256 and size
    of each of its files; an entry of the same name is replaced.  Returns the registry's path."""
    folder = Path(folder).resolve()
    card = read_card(folder)
    verify_files(folder, card)
    path = registry_for(folder)
    registry = json.loads(path.read_text()) if path.is_file() else {"schema": 1, "bundles": {}}
    files = sorted(p for p in folder.iterdir() if p.is_file())
    registry["bundles"][folder.name] = {
        "path": folder.name, "kind": card.kind, "description": description,
        "sha256": {p.name: sha256_of(p) for p in files}, "sizes": {p.name: p.stat().st_size for p in files},
        "metrics": dict(metrics or {}), "results": results}
    write_json_atomic(path, registry)
    return path
