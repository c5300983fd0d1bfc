"""The model zoo: trained bundles listed in a registry, found by name (``zoo:NAME``), checked by sha256.

The registry is ``registry.json`` in a folder (the checkout's ``models/``, or the folder or URL in
``CELLSYNTH_ZOO``)::

    {"schema": 1, "bundles": {"NAME": {"path": "NAME", "kind": "ddpm", "description": "...",
                              "sha256": {"card.json": "...", "model.onnx": "..."},
                              "metrics": {...}, "results": "docs/results.md §6"}}}

A bundle's files lie in ``path`` beside the registry.  A registry given as a URL is fetched, and
each file of a bundle is downloaded once into ``$CELLSYNTH_CACHE/zoo/NAME`` and checked against
the registry's sha256 before it is used; a mismatch is refused and the download removed.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .bundle import BundleError, sha256_of

PREFIX = "zoo:"
REGISTRY = "registry.json"


def default_location() -> str:
    """``CELLSYNTH_ZOO`` if set, else the ``models/`` folder of this checkout."""
    if os.environ.get("CELLSYNTH_ZOO"):
        return os.environ["CELLSYNTH_ZOO"]
    return str(Path(__file__).resolve().parents[3] / "models")


def _is_url(location: str) -> bool:
    return location.split(":", 1)[0] in ("http", "https", "file")


def cache_root() -> Path:
    return Path(os.environ.get("CELLSYNTH_CACHE", Path.home() / ".cache" / "napari-cellsynth")) / "zoo"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str
    path: str
    sha256: dict
    description: str = ""
    metrics: dict | None = None
    results: str = ""


def read_registry(location: str | None = None) -> dict[str, ZooEntry]:
    location = location or default_location()
    try:
        if _is_url(location):
            with urllib.request.urlopen(f"{location.rstrip('/')}/{REGISTRY}", timeout=30) as response:
                data = json.loads(response.read())
        else:
            data = json.loads((Path(location) / REGISTRY).read_text())
    except (OSError, ValueError) as err:
        raise BundleError(f"no model zoo registry at {location} ({err}); set CELLSYNTH_ZOO to a folder "
                          f"or URL holding {REGISTRY}") from err
    return {name: ZooEntry(name, e["kind"], e.get("path", name), e["sha256"], e.get("description", ""),
                           e.get("metrics"), e.get("results", ""))
            for name, e in data.get("bundles", {}).items()}


def _check(folder: Path, entry: ZooEntry) -> None:
    for file, digest in entry.sha256.items():
        path = folder / file
        if not path.is_file():
            raise BundleError(f"zoo bundle '{entry.name}' lacks {file} in {folder}; restore the folder "
                              f"(git checkout models/) or delete it from the cache to download it again")
        if sha256_of(path) != digest:
            raise BundleError(f"zoo bundle '{entry.name}': {file} does not match the registry's sha256; "
                              f"the file is corrupt or was changed — restore it or download it again")


def resolve(spec: str | os.PathLike, location: str | None = None) -> Path:
    """A bundle folder for ``spec``: ``zoo:NAME`` is looked up in the registry (and fetched if remote);
    anything else is returned as the path it is."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name = text[len(PREFIX):]
    location = location or default_location()
    registry = read_registry(location)
    if name not in registry:
        raise BundleError(f"'{name}' is not in the model zoo at {location}; "
                          f"available: {', '.join(sorted(registry)) or 'none'} (cellsynth zoo list)")
    entry = registry[name]
    if not _is_url(location):
        folder = Path(location) / entry.path
        _check(folder, entry)
        return folder
    folder = cache_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, digest in entry.sha256.items():
        target = folder / file
        if target.is_file() and sha256_of(target) == digest:
            continue
        partial = target.with_suffix(target.suffix + ".part")
        with urllib.request.urlopen(f"{location.rstrip('/')}/{entry.path}/{file}", timeout=60) as response, \
                open(partial, "wb") as fh:
            shutil.copyfileobj(response, fh)
        if sha256_of(partial) != digest:
            partial.unlink()
            raise BundleError(f"zoo bundle '{name}': the downloaded {file} does not match the registry's sha256; "
                              "refused (a corrupt or altered download)")
        partial.replace(target)
    _check(folder, entry)
    return folder


def add_to_registry(folder: str | os.PathLike, description: str, metrics: dict | None = None,
                    results: str = "") -> Path:
    """List the bundle in ``folder`` in the registry beside it (``folder/../registry.json``), with the
    sha256 of each of its files; an entry of the same name is replaced."""
    from .atomic import write_json_atomic
    from .bundle import read_card, verify_files

    folder = Path(folder).resolve()
    card = read_card(folder)
    verify_files(folder, card)
    path = folder.parent / REGISTRY
    registry = json.loads(path.read_text()) if path.is_file() else {"schema": 1, "bundles": {}}
    registry["bundles"][folder.name] = {
        "path": folder.name, "kind": card.kind, "description": description,
        "sha256": {p.name: sha256_of(p) for p in sorted(folder.iterdir()) if p.is_file()},
        "metrics": dict(metrics or {}), "results": results}
    write_json_atomic(path, registry)
    return path
