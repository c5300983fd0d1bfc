"""Map a data set's original labels onto the classes a model is trained on.

A label map is an ordered ``{class: [original labels]}``: the order is the class
order of the model.  Named maps cover the Jurkat cell-cycle tasks; any other map
comes from a JSON file of the same shape, or is the identity (sorted labels).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

JURKAT_PHASES = ["G1", "S_phase", "G2", "Prophase", "Metaphase", "Anaphase", "Telophase"]
NAMED_MAPS: dict[str, dict[str, list[str]]] = {
    "jurkat7": {phase: [phase] for phase in JURKAT_PHASES},
    "jurkat4": {"G1": ["G1"], "S": ["S_phase"], "G2": ["G2"],
                "M": ["Prophase", "Metaphase", "Anaphase", "Telophase"]},
}


def resolve_label_map(spec: str | None, labels: Sequence[str]) -> dict[str, list[str]]:
    """``spec`` is a named map, a JSON file path, or None/'identity' for the sorted labels."""
    if spec in (None, "", "identity"):
        return {name: [name] for name in sorted(set(map(str, labels)))}
    if spec in NAMED_MAPS:
        return NAMED_MAPS[spec]
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError(f"{path}: a label map is a JSON object {{class: [original labels]}}")
        return {str(k): [str(x) for x in v] for k, v in data.items()}
    raise ValueError(f"unknown label map {spec!r}; use one of {sorted(NAMED_MAPS)}, 'identity', "
                     "or a .json file {class: [original labels]}")


def apply_bundle_label_map(labels: Sequence[str], label_map: dict[str, list[str]] | None,
                           classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """:func:`apply_label_map` with a bundle's map (``card.trained.label_map``); a bundle trained without one has its
    classes as labels, so each class maps to itself."""
    return apply_label_map(labels, label_map or {c: [c] for c in classes})


def label_lookup(label_map: dict[str, list[str]]) -> dict[str, int]:
    """Each original label → the index of its class (the map's order); raises if a label appears twice."""
    lookup: dict[str, int] = {}
    for index, originals in enumerate(label_map.values()):
        for original in originals:
            if original in lookup:
                raise ValueError(f"label {original!r} appears twice in the label map")
            lookup[original] = index
    return lookup


def apply_label_map(labels: Sequence[str], label_map: dict[str, list[str]]) -> tuple[np.ndarray, list[str]]:
    """Original labels → class indices; raises if a label is not covered by the map."""
    lookup = label_lookup(label_map)
    labels = np.asarray(labels).astype(str)
    unknown = sorted(str(label) for label in set(labels) - set(lookup))
    if unknown:
        raise ValueError(f"labels {', '.join(unknown)} are not in the label map ({', '.join(label_map)}); "
                         "add them or choose another map")
    return np.array([lookup[x] for x in labels], dtype=np.int64), list(label_map)
