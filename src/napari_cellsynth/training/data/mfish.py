"""Read ADIR M-FISH metaphases: DAPI, fluorophore planes and karyotype labels, plus the karyotype codes.

A folder ``<probe set><slide>__<code>`` holds, per metaphase ``<P><slide><image><code><plane>.tif``,
8-bit planes: ``D`` = DAPI, five fluorophores (ASI ``5 C G O T``, Vysis ``A F G R Y``, PSI ``3 6 C E I``)
and ``K`` = karyotype labels (0 background, 1–22, X = 23, Y = 24, 255 = overlap).  ``README.TXT``
lists each code's ISCN karyotype; :func:`parse_karyotype_codes` reads the translocations from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FLUOROPHORES = {"A": ["5", "C", "G", "O", "T"], "V": ["A", "F", "G", "R", "Y"], "P": ["3", "6", "C", "E", "I"]}
OVERLAP = 255
CLASS_OF = {**{str(i): i for i in range(1, 23)}, "X": 23, "Y": 24}


@dataclass
class Metaphase:
    name: str  # e.g. V260554
    folder: str  # e.g. V26__54
    probe_set: str  # A, P or V
    code: str  # karyotype code, e.g. 54
    dapi: np.ndarray  # H×W uint8
    fluorophores: np.ndarray  # 5×H×W uint8, in the order FLUOROPHORES[probe_set]
    karyotype: np.ndarray | None  # H×W uint8 labels, None for unlabelled (EX) metaphases

    @property
    def slide(self) -> str:
        return slide_of(self.folder)


def slide_of(folder: str | Path) -> str:
    """A metaphase folder's slide: ``V26__54`` → ``V26``."""
    return Path(folder).name.split("__")[0]


def karyotype_file(folder: str | Path, name: str) -> Path:
    """Where a metaphase's karyotype label image is (absent for unlabelled EX metaphases)."""
    return Path(folder) / f"{name}K.tif"


def list_metaphases(root: str | Path) -> list[tuple[Path, str]]:
    """(folder, metaphase name) for every metaphase with a DAPI plane under ``root``, sorted."""
    found = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and "__" in p.name):
        for dapi in sorted(folder.glob("*D.tif")):
            found.append((folder, dapi.name[:-5]))
    return found


def read_metaphase(folder: str | Path, name: str) -> Metaphase:
    import tifffile

    folder = Path(folder)
    probe_set = name[0]
    if probe_set not in FLUOROPHORES:
        raise ValueError(f"{folder / name}: unknown probe set {probe_set!r}; expected one of {sorted(FLUOROPHORES)}")
    planes = []
    for letter in ["D", *FLUOROPHORES[probe_set]]:
        path = folder / f"{name}{letter}.tif"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a metaphase needs DAPI and five fluorophore planes")
        planes.append(tifffile.imread(path))
    if len({p.shape for p in planes}) > 1:
        raise ValueError(f"{folder / name}: planes differ in size {[p.shape for p in planes]}")
    karyotype_path = karyotype_file(folder, name)
    karyotype = tifffile.imread(karyotype_path) if karyotype_path.is_file() else None
    return Metaphase(name, folder.name, probe_set, folder.name.split("__")[1], planes[0], np.stack(planes[1:]),
                     karyotype)


def parse_karyotype_codes(readme: str | Path) -> dict[str, dict]:
    """``{code: {"iscn": text, "translocations": [(a, b), ...]}}`` from README.TXT's code tables.

    Translocations ``t(a;b)`` and insertions ``ins(a;b)`` are both read as an exchange between the
    classes a and b (X = 23, Y = 24); a bare ``(a;b)`` inside a list of translocations counts too.  A README
    without the code tables, or none, lists no code.
    """
    text = Path(readme).read_text(errors="replace") if Path(readme).is_file() else ""
    if "Karyotype codes:" not in text:  # no table (or no README): no code is listed
        return {}
    table = text[text.index("Karyotype codes:"):]
    entries: dict[str, list[str]] = {}
    current = None
    for line in table.splitlines():
        match = re.match(r"^(XY|XX|EX|\d\d):?\s+(.*)$", line)
        if match:
            current = match.group(1)
            entries[current] = [match.group(2)]
        elif current and line.startswith(" ") and line.strip():
            body = line.strip()
            if not re.fullmatch(r"[\d\s(),]+", body) and not body.startswith("found"):
                entries[current].append(body)  # skip the batch-list column's own lines
    codes = {}
    for code, lines in entries.items():
        iscn = " ".join(re.split(r"\s{2,}", line)[0] for line in lines)
        pairs = [(CLASS_OF[a], CLASS_OF[b]) for a, b in re.findall(r"\((\d+|X|Y);(\d+|X|Y)\)", iscn)]
        codes[code] = {"iscn": iscn.strip(), "translocations": pairs, "mentioned": mentioned_classes(iscn)}
    return codes


def mentioned_classes(iscn: str) -> list[int] | None:
    """Every class (1–24) an ISCN karyotype names after its count and sex chromosomes: losses, gains,
    translocations, insertions, derivatives, rings, notes such as "(16 on edge of image)".  A sex
    complement other than XX or XY names X and Y.  ``None`` when the text is no karyotype (e.g. EX's)."""
    parts = [part.strip() for part in iscn.split(",")]
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    named = {CLASS_OF[token] for token in re.findall(r"(?<![A-Za-z0-9])(\d{1,2}|X|Y)(?![0-9])", ",".join(parts[2:]))
             if token in CLASS_OF}
    if parts[1] not in ("XX", "XY"):
        named |= {CLASS_OF["X"], CLASS_OF["Y"]}
    return sorted(named)
