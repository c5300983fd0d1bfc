"""Model bundles: a folder holding ``model.onnx``, ``card.json`` and optional ``.npz`` arrays.

The card (``cards``, one class per kind) is the bundle's contract with the data: what kind of model it is, which
classes and channels it expects, the input size, how raw intensities are normalised, how it was trained and the
sha256 of every file it ships.  Nothing in a bundle is ever unpickled: the card is JSON, arrays are ``.npz`` loaded
with ``allow_pickle=False`` and the network is ONNX.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .atomic import write_json_atomic
from .card_sections import CELLPOSE_NBASE, CELLPOSE_THRESHOLDS  # noqa: F401 (imported from here by callers)
from .cards import CARD_SCHEMA_VERSION, KNOWN_KINDS, Card, validate_card_dict  # noqa: F401 (as above)
from .downloads import sha256_of
from .errors import BundleError
from .zoo import resolve

CARD_NAME = "card.json"


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
