"""A finished (or partial) run read back, lazily: each stack's labels from its OME-Zarr store, its rows of the
objects table, and a class image (each object's pixels hold its class number) computed frame by frame on demand."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .record import RECORD, RUN_KIND
from .store import read_labels, store_path
from .table import TABLE


STORED = "TZYX"  # the labels' axes in the store


@dataclass
class StackResult:
    name: str
    status: str
    labels: object  # the labels array (t, z, y, x), lazy
    rows: dict[str, list]  # this stack's columns of the objects table (strings, as in the CSV)
    axes: str = "TZYX"  # the input's axes as stored (C included), e.g. TYX


def in_input_axes(array, input_axes: str) -> tuple[object, str]:
    """A (t, z, y, x) array viewed in the input's own axes, channels left out: a T×Y×X stack's labels come back
    T×Y×X (the z of 1 dropped), a Z×T×Y×X stack's Z×T×Y×X, so that they overlay the input frame by frame."""
    wanted = [a for a in input_axes.upper() if a in STORED]
    index = tuple(slice(None) if a in wanted else 0 for a in STORED)
    kept = [a for a in STORED if a in wanted]
    view = array[index]
    order = [kept.index(a) for a in wanted]
    if order != sorted(order):
        view = view.transpose(order)
    return view, "".join(wanted)


def is_run(path: str | Path) -> bool:
    record = Path(path) / RECORD
    if not record.is_file():
        return False
    try:
        return json.loads(record.read_text()).get("kind") == RUN_KIND
    except (OSError, ValueError):
        return False


def read_run(run_dir: str | Path) -> tuple[dict, list[StackResult]]:
    """The run record and every stack that has labels (an unreadable input has none)."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / RECORD).read_text())
    rows: dict[str, dict[str, list]] = {}
    if (run_dir / TABLE).is_file():
        with open(run_dir / TABLE, newline="") as fh:
            for row in csv.DictReader(fh):
                columns = rows.setdefault(row["stack"], {name: [] for name in row})
                for name, value in row.items():
                    columns[name].append(value)
    stacks = [StackResult(s["name"], s["status"], read_labels(store_path(run_dir, s["name"])), rows.get(s["name"], {}),
                          s.get("axes", STORED))
              for s in record["stacks"] if s["status"] != "unreadable"]
    return record, stacks


def class_lookup(rows: dict[str, list], classes: list[str]) -> dict[tuple[int, int], np.ndarray]:
    """Per frame, an array from label id to class number (1 = the first class; 0 = background or unknown)."""
    number = {name: k + 1 for k, name in enumerate(classes)}
    by_frame: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for t, z, label, name in zip(rows.get("t", []), rows.get("z", []), rows.get("label", []), rows.get("class", [])):
        by_frame.setdefault((int(t), int(z)), []).append((int(label), number.get(name, 0)))
    lookup = {}
    for frame, pairs in by_frame.items():
        table = np.zeros(max(label for label, _ in pairs) + 1, np.uint8)
        for label, k in pairs:
            table[label] = k
        lookup[frame] = table
    return lookup


def class_image(labels, rows: dict[str, list], classes: list[str]):
    """A lazy dask array of labels' shape whose pixels hold their object's class number (1…K)."""
    import dask.array as da

    lookup = class_lookup(rows, classes)

    def paint(block: np.ndarray, block_info=None) -> np.ndarray:
        t, z = block_info[0]["array-location"][0][0], block_info[0]["array-location"][1][0]
        table = lookup.get((t, z))
        out = np.zeros(block.shape, np.uint8)
        if table is not None:
            known = block < len(table)
            out[known] = table[block[known]]
        return out

    return da.from_zarr(labels).map_blocks(paint, dtype=np.uint8)
