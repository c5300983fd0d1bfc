"""Read labelled (or unlabelled) crop collections: ``.npz``, TIFF stacks, folders of images.

Formats
-------
* ``.npz`` with ``images`` (N×C×H×W or N×H×W) and optional ``labels`` (N,) and ``channels`` (C,),
  like ``jurkat_cells.npz``.  Loaded with ``allow_pickle=False``.
* A TIFF stack (N×H×W or N×C×H×W) with an optional labels CSV: one row per slice in
  order, with a ``label`` column (an ``index`` column, if present, gives the slice).
* A folder of images: one sub-folder per class (``root/<class>/*.tif``) or images
  directly in it (unlabelled).  Each image is H×W, C×H×W or H×W×C (≤ 4 channels
  last, as in PNG), ``.tif/.tiff/.png``.

Intensities are returned as they are (uint16 stays uint16).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import ImageInputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


@dataclass
class CropSet:
    images: np.ndarray  # N×C×H×W
    labels: np.ndarray | None = None  # (N,) str
    channels: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # one per crop: where it came from
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)


def _channels_first(image: np.ndarray, source: str) -> np.ndarray:
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3:
        if image.shape[-1] <= 4 < image.shape[0]:
            return np.moveaxis(image, -1, 0)
        return image
    raise ImageInputError(f"{source}: image of shape {image.shape} is not H×W, C×H×W or H×W×C")


def _stack(images: np.ndarray, source: str) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        return images
    raise ImageInputError(f"{source}: a stack must be N×H×W or N×C×H×W, got shape {images.shape}")


def read_npz(path: str | os.PathLike) -> CropSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" not in data.files:
                raise ImageInputError(f"{path} has no 'images' array (it has {data.files}); "
                                      "save crops as images=N×C×H×W")
            images = _stack(data["images"], str(path))
            labels = data["labels"].astype(str) if "labels" in data.files else None
            channels = [str(c) for c in data["channels"]] if "channels" in data.files else []
    except ValueError as err:
        if "pickle" in str(err):
            raise ImageInputError(f"{path} holds pickled objects, which are refused; save plain arrays") from err
        raise
    if labels is not None and len(labels) != len(images):
        raise ImageInputError(f"{path}: {len(labels)} labels for {len(images)} images")
    names = [f"{Path(path).name}[{i}]" for i in range(len(images))]
    return CropSet(images, labels, channels or _default_channels(images), names, str(path))


def read_labels_csv(path: str | os.PathLike, n: int) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "label" not in rows[0]:
        raise ImageInputError(f"{path} needs a 'label' column (and optionally 'index')")
    labels = np.empty(n, dtype=object)
    for order, row in enumerate(rows):
        index = int(row["index"]) if row.get("index") not in (None, "") else order
        if not 0 <= index < n:
            raise ImageInputError(f"{path}: index {index} is outside the stack of {n} slices")
        labels[index] = row["label"]
    missing = [i for i in range(n) if labels[i] is None]
    if missing:
        raise ImageInputError(f"{path}: no label for slice(s) {missing[:10]}")
    return labels.astype(str)


def read_tiff_stack(path: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> CropSet:
    import tifffile

    images = _stack(tifffile.imread(path), str(path))
    labels = read_labels_csv(labels_csv, len(images)) if labels_csv else None
    names = [f"{Path(path).name}[{i}]" for i in range(len(images))]
    return CropSet(images, labels, _default_channels(images), names, str(path))


def read_image_file(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from skimage.io import imread

    return imread(path)


def read_folder(root: str | os.PathLike) -> CropSet:
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_dirs:
        files = [(f, d.name) for d in class_dirs for f in sorted(d.iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(f, None) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ImageInputError(f"{root} holds no {'/'.join(IMAGE_SUFFIXES)} images (directly or one "
                              "folder per class)")
    crops = [_channels_first(read_image_file(f), str(f)) for f, _ in files]
    shapes = {c.shape for c in crops}
    if len(shapes) > 1:
        raise ImageInputError(f"{root}: images differ in shape {sorted(shapes)[:4]}; crop them to one size")
    labels = np.array([c for _, c in files]) if class_dirs else None
    images = np.stack(crops)
    return CropSet(images, labels, _default_channels(images), [str(f.relative_to(root)) for f, _ in files],
                   str(root))


def _default_channels(images: np.ndarray) -> list[str]:
    return [f"channel_{i}" for i in range(images.shape[1])]


def read_crops(path: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> CropSet:
    """Read any supported crop collection; the format follows from the path."""
    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path} does not exist")
    if path.is_dir():
        return read_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path)
    if suffix in (".tif", ".tiff"):
        return read_tiff_stack(path, labels_csv)
    raise ImageInputError(f"{path}: unsupported input; give an .npz, a .tif stack or a folder of images")
