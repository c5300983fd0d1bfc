"""Stacks to process: a TIFF, an OME-Zarr (or plain Zarr array), or a folder of them.

A stack is read lazily, one frame at a time, through a Zarr view of the file (tifffile's ``aszarr`` for TIFFs), so
that a stack of any length never has to fit in memory.  Its axes are named with the letters T (time), Z (depth),
C (channel), Y and X; a frame is one (t, z) plane, returned as C×Y×X.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import PLANE_SUFFIXES
from ..images import ImageInputError
from ..segment import MIN_SIDE

log = logging.getLogger(__name__)

AXES = "TZCYX"
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)
# tifffile's names for axes that are not T, Z, C, Y or X: I (images), Q (unknown), S (samples), ...
EXAMPLES = {2: "YX", 3: "TYX", 4: "TCYX", 5: "TZCYX"}
TIFF_ALIASES = {"S": "C", "I": "T", "Q": "T", "E": "C"}


@dataclass(frozen=True)
class StackSource:
    """One stack on disk: where it is, how to read it, its axes and shape (as stored)."""

    name: str  # unique within a run: the file's stem
    path: str
    kind: str  # "tiff" or "zarr"
    axes: str  # the stored axes, a permutation of a subset of TZCYX that holds Y and X
    shape: tuple[int, ...]
    dtype: str
    array_path: str = ""  # inside a Zarr group: the full-resolution array ("0" for OME-Zarr)

    def __post_init__(self):
        """A stack with no pixels, or pixels that are not numbers, is refused before any frame runs."""
        if 0 in self.shape:
            raise ImageInputError(f"{self.path} is empty (shape {self.shape}, axes {self.axes}); give a stack with "
                                  "at least one frame of pixels")
        if min(self.size("Y"), self.size("X")) < MIN_SIDE:
            raise ImageInputError(f"{self.path} has frames of {self.size('Y')}×{self.size('X')} pixels (axes "
                                  f"{self.axes}); segmentation needs at least {MIN_SIDE}×{MIN_SIDE}: check --axes")
        if np.dtype(self.dtype).kind not in "uif":
            raise ImageInputError(f"{self.path} holds {self.dtype} pixels; give integer (uint8, uint16, …) or float "
                                  "pixels")

    def size(self, axis: str) -> int:
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    @property
    def frames(self) -> list[tuple[int, int]]:
        """Every (t, z) plane, in order."""
        return [(t, z) for t in range(self.size("T")) for z in range(self.size("Z"))]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.size("C"), self.size("Y"), self.size("X")

    def read_frame(self, t: int, z: int) -> np.ndarray:
        """Plane (t, z) as C×Y×X, read from disk (only that plane's chunks are decoded)."""
        index = tuple(t if a == "T" else z if a == "Z" else slice(None) for a in self.axes)
        plane = np.asarray(open_array(self)[index])
        kept = [a for a in self.axes if a in "CYX"]
        if "C" not in kept:
            plane, kept = plane[None], ["C", *kept]
        return np.transpose(plane, [kept.index(a) for a in "CYX"])

    def identity(self) -> dict:
        """What says that this is the same input as before: its path, size and change time, shape and axes."""
        path = Path(self.path)
        stat_of = path / self.array_path if self.kind == "zarr" else path
        metadata = [p for p in (stat_of / "zarr.json", stat_of / ".zarray") if p.is_file()]
        stat = (metadata[0] if metadata else stat_of).stat()
        return {"path": str(path.resolve()), "kind": self.kind, "array": self.array_path, "axes": self.axes,
                "shape": list(self.shape), "dtype": self.dtype, "bytes": stat.st_size,
                "modified_ns": stat.st_mtime_ns, "metadata_sha256": _metadata_digest(metadata)}


def _metadata_digest(files: list[Path]) -> str | None:
    return hashlib.sha256(files[0].read_bytes()).hexdigest() if files else None


_OPEN: dict[tuple[str, str, str], object] = {}
_OPEN_LOCK = threading.Lock()


def open_array(source: StackSource):
    """The stack as a lazy Zarr array, opened once per process (a worker reuses it for every frame it reads)."""
    key = (source.path, source.kind, source.array_path)
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = _open_zarr(source.path, source.kind, source.array_path)
        return _OPEN[key]


def _open_zarr(path: str, kind: str, array_path: str):
    import zarr

    if kind == "tiff":
        import tifffile

        return zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")
    node = zarr.open(path, mode="r")
    return node[array_path] if array_path else node


def check_axes(axes: str, ndim: int, where: str) -> str:
    axes = axes.upper()
    if len(axes) != ndim or len(set(axes)) != ndim or not set(axes) <= set(AXES) or not {"Y", "X"} <= set(axes):
        raise ImageInputError(f"{where} has {ndim} axes; --axes {axes!r} must name each of them once with letters "
                              f"of {AXES}, including Y and X (e.g. {EXAMPLES.get(ndim, 'TZCYX')})")
    return axes


def guess_axes(stored: str, ndim: int, where: str) -> str:
    """The file's own axis names mapped onto TZCYX, or the plain reading of 2-D (YX) and 3-D (TYX) arrays."""
    named = "".join(TIFF_ALIASES.get(a, a) for a in stored.upper()) if stored else ""
    if len(named) == ndim and len(set(named)) == ndim and set(named) <= set(AXES) and named.endswith("YX"):
        return named
    if ndim in (2, 3):
        return "TYX"[3 - ndim:]
    raise ImageInputError(f"{where} has shape with {ndim} axes ({stored or 'unnamed'}); say which is which with "
                          "--axes, e.g. --axes TZCYX or TCYX")


def tiff_source(path: Path, axes: str | None) -> StackSource:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, stored = tuple(series.shape), str(series.dtype), series.axes
    except (tifffile.TiffFileError, ValueError, OSError) as err:
        raise ImageInputError(f"{path} is not a readable TIFF: {err}") from err
    axes = check_axes(axes, len(shape), str(path)) if axes else guess_axes(stored, len(shape), str(path))
    return StackSource(path.stem, str(path), "tiff", axes, shape, dtype)


def _first_dataset(group, path: Path) -> tuple[str, str]:
    """The path of an OME-Zarr group's full-resolution dataset and its axis names (e.g. ``TCYX``, empty when not
    named), checked: metadata of another shape is refused in one line."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales") if isinstance(ome, dict) else None
    if not multiscales:
        raise ImageInputError(f"{path} is a Zarr group without OME-Zarr 'multiscales' metadata; give the path "
                              "of an array or of an OME-Zarr image")
    first = multiscales[0] if isinstance(multiscales, list) else None
    datasets = first.get("datasets") if isinstance(first, dict) else None
    dataset = datasets[0] if isinstance(datasets, list) and datasets else None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str) or not dataset["path"]:
        raise ImageInputError(f"{path}: its OME-Zarr 'multiscales' metadata names no dataset path (it needs "
                              "multiscales[0].datasets[0].path); fix it, or give the path of the array")
    names = []
    for axis in first.get("axes") or []:
        name = axis.get("name") if isinstance(axis, dict) else axis
        if not isinstance(name, str) or not name:
            raise ImageInputError(f"{path}: an axis of its OME-Zarr metadata has no name ({axis!r}); fix it, or "
                                  "name the axes with --axes")
        names.append(name)
    return dataset["path"], "".join(names).upper()


def zarr_source(path: Path, axes: str | None) -> StackSource:
    """An OME-Zarr image (its first, full-resolution dataset; axes from its metadata) or a plain Zarr array."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several kinds for a folder that is not a store
        raise ImageInputError(f"{path} is not a readable Zarr store: {err}") from err
    array_path, stored = "", ""
    if isinstance(node, zarr.Group):
        array_path, stored = _first_dataset(node, path)
        try:
            node = node[array_path]
        except (KeyError, FileNotFoundError, OSError, ValueError) as err:
            raise ImageInputError(f"{path}: its multiscales metadata names dataset {array_path!r}, which the store "
                                  "does not hold; fix the metadata or give the path of the array") from err
        if not isinstance(node, zarr.Array):
            raise ImageInputError(f"{path}: its dataset {array_path!r} is a group, not an array; give the path of "
                                  "the image array")
    shape = tuple(node.shape)
    axes = check_axes(axes, len(shape), str(path)) if axes else guess_axes(stored, len(shape), str(path))
    return StackSource(path.stem.removesuffix(".ome"), str(path), "zarr", axes, shape, str(node.dtype), array_path)


def is_stack_path(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES or path.suffix.lower() in ZARR_SUFFIXES


def is_zarr(path: Path) -> bool:
    return path.suffix.lower() in ZARR_SUFFIXES or any((path / m).is_file() for m in ("zarr.json", ".zgroup",
                                                                                         ".zarray"))


def open_source(path: Path, axes: str | None) -> StackSource:
    """The stack at ``path``; an :class:`ImageInputError` that names the problem when it cannot be read."""
    return zarr_source(path, axes) if is_zarr(path) else tiff_source(path, axes)


def list_inputs(path: str | Path) -> list[Path]:
    """The stacks a path names: itself, or the TIFFs and Zarr stores directly inside a folder (sorted)."""
    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path} does not exist; give a TIFF, an OME-Zarr or a folder of them")
    if path.is_dir() and not is_zarr(path):
        found = sorted(p for p in path.iterdir() if is_stack_path(p) and not p.name.startswith("."))
        if not found:
            raise ImageInputError(f"{path} holds no .tif, .tiff or .zarr stacks")
        others = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PLANE_SUFFIXES)
        if others:
            log.warning("napari-cellsynth: batch reads TIFF and OME-Zarr only; %d image file(s) in %s are left out "
                        "(%s%s)", len(others), path, ", ".join(others[:3]), ", …" if len(others) > 3 else "")
        names = [p.stem.removesuffix(".ome") for p in found]
        twins = sorted({n for n in names if names.count(n) > 1})
        if twins:
            raise ImageInputError(f"{path} holds several stacks named {twins} (e.g. a.tif and a.zarr); rename one")
        return found
    if not is_stack_path(path) and not is_zarr(path):
        raise ImageInputError(f"{path}: batch reads TIFF stacks and OME-Zarr, not {path.suffix or 'this'} files; save "
                              "it as a TIFF, or segment a single plane with cellsynth segment")
    return [path]


def describe(source: StackSource) -> dict:
    return {"name": source.name, "path": source.path, "axes": source.axes, "shape": list(source.shape),
            "dtype": source.dtype}
