"""The model zoo: trained bundles listed in a registry, found by name (``zoo:NAME``), checked by sha256.

The package ships its registry (``napari_cellsynth/zoo_registry.json``)::

    {"schema": 1, "base_url": "https://…/v{version}/models",
     "bundles": {"NAME": {"path": "NAME", "kind": "ddpm", "description": "...",
                          "sha256": {"card.json": "...", "model.onnx": "..."},
                          "sizes": {"card.json": 1234, "model.onnx": 5678},
                          "metrics": {...}, "results": "docs/results.md §6"}}}

Where a bundle's files come from:

1. ``CELLSYNTH_ZOO`` (or ``location``), when set: a folder or URL holding its own ``registry.json`` and
   the bundle folders beside it;
2. otherwise the shipped registry, and the files from
   - the checkout's ``models/`` folder, when the package runs from a checkout (works offline), or
   - the user cache (``$CELLSYNTH_CACHE``, else ``$XDG_CACHE_HOME/napari-cellsynth``, else
     ``~/.cache/napari-cellsynth``), filled on first use, or ahead of time by ``cellsynth zoo pull``,
     from ``base_url`` (``CELLSYNTH_ZOO_URL`` overrides it, e.g. for a mirror).

A download is checked by size and sha256 and moved into place only when every file of the bundle arrived
whole (:func:`downloads.download_folder`); anything else is refused and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from .downloads import DownloadError, Expected, download_folder, matches, sha256_of
from .errors import BundleError
from .jobs import run_with_bar

PREFIX = "zoo:"
REGISTRY = "registry.json"
SHIPPED_REGISTRY = Path(__file__).resolve().parents[1] / "zoo_registry.json"
_CHECKOUT = Path(__file__).resolve().parents[3]
CHECKOUT_MODELS = _CHECKOUT / "models"  # used only in a checkout (editable install), which has pyproject.toml


def in_checkout() -> bool:
    return CHECKOUT_MODELS.is_dir() and (_CHECKOUT / "pyproject.toml").is_file()


def _is_url(location: str) -> bool:
    return location.split(":", 1)[0] in ("http", "https", "file")


def cache_root() -> Path:
    """Where downloaded bundles are kept, one folder each."""
    if os.environ.get("CELLSYNTH_CACHE"):
        return Path(os.environ["CELLSYNTH_CACHE"]) / "zoo"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-cellsynth" / "zoo"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str
    path: str
    sha256: dict
    description: str = ""
    metrics: dict | None = None
    results: str = ""
    sizes: dict | None = None

    @property
    def size(self) -> int | None:
        return sum(self.sizes.values()) if self.sizes else None

    def expected(self, base_url: str) -> list[Expected]:
        sizes = self.sizes or {}
        return [Expected(f"{base_url.rstrip('/')}/{self.path}/{file}", file, digest, sizes.get(file))
                for file, digest in sorted(self.sha256.items())]


PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a bundle, folder or file name: never a path


def _entries(data: dict) -> dict[str, ZooEntry]:
    entries = {name: ZooEntry(name, e["kind"], e.get("path", name), e["sha256"], e.get("description", ""),
                              e.get("metrics"), e.get("results", ""), e.get("sizes"))
               for name, e in data.get("bundles", {}).items()}
    for entry in entries.values():  # a registry names files inside the cache, never a path out of it
        bad = [n for n in (entry.name, entry.path, *entry.sha256) if not PLAIN.fullmatch(str(n)) or ".." in str(n)]
        if bad:
            raise ValueError(f"the registry's entry '{entry.name}' names {bad[0]!r}, not a plain name")
    return entries


@dataclass(frozen=True)
class Zoo:
    """A registry, and where its bundles' files are: a local folder of bundle folders, a base URL to fetch
    them from into the cache, or both (a checkout's ``models/`` with the release URL behind it)."""

    entries: dict[str, ZooEntry]
    location: str
    local: Path | None = None
    url: str | None = None

    def entry(self, name: str) -> ZooEntry:
        if name not in self.entries:
            raise BundleError(f"'{name}' is not in the model zoo at {self.location}; available: "
                              f"{', '.join(sorted(self.entries)) or 'none'} (cellsynth zoo list)")
        return self.entries[name]

    def local_folder(self, name: str) -> Path | None:
        """The bundle's folder in the local zoo folder, when that holds it."""
        if self.local is not None and (self.local / self.entry(name).path).is_dir():
            return self.local / self.entry(name).path
        return None

    def cached_folder(self, name: str) -> Path:
        return cache_root() / name

    def where(self, name: str) -> str:
        """``local`` (a zoo folder or the checkout), ``cached``, or ``not downloaded``."""
        if self.local_folder(name) is not None:
            return "local"
        entry = self.entry(name)
        folder = self.cached_folder(name)
        if all((folder / f).is_file() and (entry.sizes is None or (folder / f).stat().st_size == entry.sizes[f])
               for f in entry.sha256):
            return "cached"
        return "not downloaded"

    def pull(self, name: str) -> Generator[tuple[int, int], None, Path]:
        """Download the bundle into the cache (a progress generator of bytes); return its folder."""
        entry = self.entry(name)
        if self.url is None:
            raise BundleError(f"zoo bundle '{name}' is not in {self.location} and this zoo has no download URL; "
                              f"restore the folder {entry.path}")
        try:
            return (yield from download_folder(entry.expected(self.url), self.cached_folder(name)))
        except DownloadError as err:
            raise BundleError(f"zoo bundle '{name}': {err}. {offline_fix(name)}") from err


def offline_fix(name: str) -> str:
    return (f"Without internet here: run 'cellsynth zoo pull {name}' on a machine with internet and copy its "
            f"cache folder to {cache_root()}, or set CELLSYNTH_ZOO to a folder holding the zoo's bundles")


def release_url(data: dict) -> str:
    """The base URL of the shipped registry's files: ``CELLSYNTH_ZOO_URL``, else the registry's own for this
    version of the package."""
    from .. import __version__

    return os.environ.get("CELLSYNTH_ZOO_URL") or data["base_url"].format(version=__version__)


def default_location() -> str:
    """``CELLSYNTH_ZOO`` if set, else the registry shipped with the package."""
    return os.environ.get("CELLSYNTH_ZOO") or str(SHIPPED_REGISTRY)


def open_zoo(location: str | None = None) -> Zoo:
    """The zoo at ``location`` (a folder or URL holding ``registry.json``, or the shipped registry's file);
    by default ``CELLSYNTH_ZOO``, else the shipped registry."""
    location = location or default_location()
    try:
        if _is_url(location):
            with urllib.request.urlopen(f"{location.rstrip('/')}/{REGISTRY}", timeout=30) as response:
                return Zoo(_entries(json.loads(response.read())), location, url=location)
        path = Path(location)
        if path.is_file():  # the shipped registry: files from the checkout, else downloaded
            data = json.loads(path.read_text())
            local = CHECKOUT_MODELS if in_checkout() else None
            return Zoo(_entries(data), location, local=local, url=release_url(data))
        return Zoo(_entries(json.loads((path / REGISTRY).read_text())), location, local=path)
    except (OSError, ValueError, KeyError, urllib.error.URLError) as err:
        raise BundleError(f"no model zoo registry at {location} ({err}); set CELLSYNTH_ZOO to a folder "
                          f"or URL holding {REGISTRY}") from err


def read_registry(location: str | None = None) -> dict[str, ZooEntry]:
    return open_zoo(location).entries


def _check(folder: Path, entry: ZooEntry) -> None:
    for file, digest in entry.sha256.items():
        path = folder / file
        if not path.is_file():
            raise BundleError(f"zoo bundle '{entry.name}' lacks {file} in {folder}; restore the folder "
                              f"(git checkout models/) or delete it from the cache to download it again")
        if sha256_of(path) != digest:
            raise BundleError(f"zoo bundle '{entry.name}': {file} does not match the registry's sha256; "
                              f"the file is corrupt or was changed — restore it or download it again")


def _pull_with_bar(zoo: Zoo, name: str) -> Path:
    from tqdm import tqdm

    with tqdm(unit="B", unit_scale=True, desc=f"downloading zoo:{name}", disable=None, leave=False) as bar:
        return run_with_bar(zoo.pull(name), bar)


def resolve(spec: str | os.PathLike, location: str | None = None) -> Path:
    """A bundle folder for ``spec``: ``zoo:NAME`` is looked up in the registry (and downloaded into the cache
    on first use); anything else is returned as the path it is."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name = text[len(PREFIX):]
    zoo = open_zoo(location)
    entry = zoo.entry(name)
    folder = zoo.local_folder(name)
    if folder is not None:
        _check(folder, entry)
        return folder
    folder = zoo.cached_folder(name)
    if all(matches(folder / e.name, e) for e in entry.expected(zoo.url or "")):  # size and sha256 of each file
        return folder
    return _pull_with_bar(zoo, name)  # checked by size and sha256 as it arrives
