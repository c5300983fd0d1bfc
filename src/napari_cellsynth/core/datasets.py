"""Read labelled (or unlabelled) crop collections: ``.npz``, TIFF stacks, folders of images.

Formats
-------
* ``.npz`` with ``images`` (N×C×H×W or N×H×W) and optional ``labels`` (N,) and ``channels`` (C,),
  like ``jurkat_cells.npz``.  Loaded with ``allow_pickle=False``.
* A TIFF stack (N×H×W or N×C×H×W) with an optional labels CSV: one row per slice in
  order, with a ``label`` column (an ``index`` column, if present, gives the slice).
* A folder of images: one sub-folder per class (``root/<class>/*.tif``) or images
  directly in it (unlabelled).  Each image is H×W, C×H×W or H×W×C (≤ 4 channels
  last, as in PNG and JPEG), ``.tif/.tiff/.png/.jpg/.jpeg``, 8- or 16-bit, grey, RGB or
  multichannel.  An opaque alpha channel is dropped; grey images among RGB ones become RGB.

Crops of mixed sizes are brought to one size (:mod:`.sizing`): ``size``/``fit`` when given, else the
median longer side (at most 128 px) by aspect-preserving resize; ``CropSet.fit`` records what was done
and ``CropSet.notes`` says it in a line, so that a trainer can write it into the card.

Intensities are returned as they are (uint16 stays uint16).
"""

from __future__ import annotations

import csv
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import ImageInputError
from .sizing import FIT_POLICIES, SizeFit, auto_size, fit_crop, looks_like_frames

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass
class CropSet:
    images: np.ndarray  # N×C×H×W
    labels: np.ndarray | None = None  # (N,) str
    channels: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # one per crop: where it came from
    source: str = ""
    fit: SizeFit | None = None  # set when crops were brought to one size
    notes: list[str] = field(default_factory=list)  # one-line notices for the user (sizes fitted, …)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) of unreadable files left out

    def __len__(self) -> int:
        return len(self.images)


def _channels_first(image: np.ndarray, source: str) -> np.ndarray:
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3:
        if image.shape[-1] <= 4 < image.shape[0]:
            image = np.moveaxis(image, -1, 0)
        if image.shape[0] in (2, 4) and _opaque(image[-1]):  # grey+alpha or RGBA, as PNGs carry them
            image = image[:-1]
        return image
    raise ImageInputError(f"{source}: image of shape {image.shape} is not H×W, C×H×W or H×W×C")


def _opaque(alpha: np.ndarray) -> bool:
    full = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "iu" else 1.0
    return bool(np.all(alpha == full))


@contextmanager
def _read_as(path: str | os.PathLike, what: str, fix: str):
    """Whatever a damaged or foreign file makes a library raise becomes one line naming the file and the fix."""
    try:
        yield
    except ImageInputError:
        raise
    except Exception as err:  # numpy, zipfile, tifffile and csv raise many kinds for a bad file
        first_line = (str(err).splitlines() or [""])[0][:200]
        raise ImageInputError(f"{path} could not be read as {what} ({type(err).__name__}: {first_line}); {fix}") \
            from err


def _check_pixels(images: np.ndarray, source: str, allow_empty: bool = False) -> np.ndarray:
    if images.size == 0 and not (allow_empty and len(images) == 0 and min(images.shape[1:]) >= 1):
        raise ImageInputError(f"{source}: the crops are empty (shape {images.shape}); save at least one crop of "
                              "at least 1×1 pixel")
    if images.dtype.kind not in "uif":
        raise ImageInputError(f"{source}: crops of type {images.dtype} are not images; save them as integers "
                              "(uint8, uint16) or floats")
    return images


def _stack(images: np.ndarray, source: str, allow_empty: bool = False) -> np.ndarray:
    if images.ndim == 3:
        return _check_pixels(images[:, None], source, allow_empty)
    if images.ndim == 4:
        return _check_pixels(images, source, allow_empty)
    raise ImageInputError(f"{source}: a stack must be N×H×W or N×C×H×W, got shape {images.shape}")


def _names(array: np.ndarray, key: str, path: str | os.PathLike) -> np.ndarray:
    """``labels`` or ``channels`` of an .npz: one text per crop or channel."""
    if array.ndim != 1:
        raise ImageInputError(f"{path}: '{key}' must be a list (1-D), got shape {array.shape}; save {key}=[...]")
    return array.astype(str)


def read_npz(path: str | os.PathLike, allow_empty: bool = False) -> CropSet:
    """``allow_empty``: a stack of no crops (N = 0) is read, not refused (extra crops that a filter all dropped)."""
    with open(path, "rb") as fh:
        zipped = fh.read(4) == b"PK\x03\x04"
    if not zipped:  # numpy would try to unpickle it
        raise ImageInputError(f"{path} is not an .npz archive; save crops with numpy.savez(path, images=N×C×H×W)")
    with _read_as(path, "an .npz archive", "save crops with numpy.savez(path, images=N×C×H×W)"):
        try:
            with np.load(path, allow_pickle=False) as data:
                if "images" not in data.files:
                    raise ImageInputError(f"{path} has no 'images' array (it has {data.files}); "
                                          "save crops as images=N×C×H×W")
                images = _stack(data["images"], str(path), allow_empty)
                labels = _names(data["labels"], "labels", path) if "labels" in data.files else None
                channels = list(_names(data["channels"], "channels", path)) if "channels" in data.files else []
        except ValueError as err:
            if "pickle" in str(err):
                raise ImageInputError(f"{path} holds pickled objects, which are refused; save plain arrays") from err
            raise
    if labels is not None and len(labels) != len(images):
        raise ImageInputError(f"{path}: {len(labels)} labels for {len(images)} images")
    names = [f"{Path(path).name}[{i}]" for i in range(len(images))]
    return CropSet(images, labels, channels or _default_channels(images), names, str(path))


def read_labels_csv(path: str | os.PathLike, n: int, column: str = "label") -> np.ndarray:
    """One value per slice of an n-slice stack from a CSV's ``column`` (rows in order, or placed by an
    ``index`` column)."""
    with _read_as(path, "a CSV table", "save it as text with a header row"), open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or column not in rows[0]:
        if column == "label":
            raise ImageInputError(f"{path} needs a 'label' column (and optionally 'index')")
        raise ImageInputError(f"{path} has no column '{column}'; its columns are {', '.join(rows[0]) if rows else 'none'}")
    labels = np.empty(n, dtype=object)
    for order, row in enumerate(rows):
        try:
            index = int(row["index"]) if row.get("index") not in (None, "") else order
        except ValueError:
            raise ImageInputError(f"{path}: index {row['index']!r} is not a slice number; give whole numbers from 0 "
                                  "in the 'index' column, or leave it out") from None
        if not 0 <= index < n:
            raise ImageInputError(f"{path}: index {index} is outside the stack of {n} slices")
        labels[index] = row[column]
    missing = [i for i in range(n) if labels[i] is None]
    if missing:
        raise ImageInputError(f"{path}: no {column} for slice(s) {missing[:10]}")
    return labels.astype(str)


def crop_groups(crops: "CropSet", spec: str, labels_csv: str | os.PathLike | None = None) -> np.ndarray:
    r"""The group of every crop (``cellsynth classify --group-by``): ``path:K``, the K-th part of each crop's
    name (a folder level: 0 is the class folder of a folder per class); ``path:REGEX``, the regular expression's
    first group in each name, or else in its first folder or file part that it matches (so ``^`` anchors at the
    start of a file name too: ``path:^(slide\w+)_`` on ``G1/slideA_0.png`` gives ``slideA``); else a column of the
    labels CSV, or an array of that name in the ``.npz``."""
    import re

    if spec.startswith("path:"):
        rule = spec[len("path:"):]
        if rule.lstrip("-").isdigit():
            level = int(rule)
            parts = [Path(name).parts for name in crops.names]
            if any(not -len(p) <= level < len(p) for p in parts):
                raise ImageInputError(f"--group-by {spec}: some crop names have fewer than {abs(level) + 1} parts "
                                      f"(e.g. {crops.names[0]!r})")
            return np.array([p[level] for p in parts])
        try:
            pattern = re.compile(rule)
        except re.error as err:
            raise ImageInputError(f"--group-by {spec}: not a regular expression ({err})") from err
        found = [next((m for m in map(pattern.search, (name, *Path(name).parts)) if m), None) for name in crops.names]
        missing = [name for name, m in zip(crops.names, found) if m is None]
        if missing:
            raise ImageInputError(f"--group-by {spec} matches neither the name {missing[0]!r} nor any folder or file "
                                  f"part of it ({len(missing)} crops)")
        return np.array([m.group(1) if m.groups() else m.group(0) for m in found])
    if labels_csv:
        return read_labels_csv(labels_csv, len(crops), spec)
    if crops.source.endswith(".npz"):
        with np.load(crops.source, allow_pickle=False) as data:
            if spec not in data.files:
                raise ImageInputError(f"{crops.source} has no array '{spec}' to group by; it has "
                                      f"{', '.join(data.files)} (or use path:K for a folder level)")
            groups = np.asarray(data[spec]).astype(str)
        if len(groups) != len(crops):
            raise ImageInputError(f"{crops.source}: '{spec}' has {len(groups)} values for {len(crops)} crops")
        return groups
    raise ImageInputError(f"--group-by {spec}: a column needs a labels CSV or an .npz array of that name; for a "
                          "folder give path:K (a folder level) or path:REGEX")


def read_tiff_stack(path: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> CropSet:
    import tifffile

    with _read_as(path, "a TIFF", "save the crops as one TIFF stack (N×H×W or N×C×H×W)"):
        images = _stack(tifffile.imread(path), str(path))
    labels = read_labels_csv(labels_csv, len(images)) if labels_csv else None
    names = [f"{Path(path).name}[{i}]" for i in range(len(images))]
    return CropSet(images, labels, _default_channels(images), names, str(path))


PLANE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")  # single planes: read by scikit-image, colour averaged


def read_image(path: str | os.PathLike, what: str = "an image", labels: bool = False) -> np.ndarray:
    """A TIFF's pixels as stored (:func:`read_tiff`), or a PNG / JPEG / BMP as one plane: its colour channels averaged
    into grey (``labels``: read as they are, where an average would invent labels)."""
    if Path(path).suffix.lower() not in PLANE_SUFFIXES:
        return read_tiff(path, what)
    if not Path(path).is_file():
        raise ImageInputError(f"{path} does not exist")
    with _read_as(path, what, "check the file (a copy cut short?) and save it again"):
        image = read_image_file(Path(path))
    if image.ndim == 3 and image.shape[-1] in (3, 4) and not labels:
        image = image[..., :3].mean(axis=-1).astype(np.float32)
    return image


def read_tiff(path: str | os.PathLike, what: str = "a TIFF image") -> np.ndarray:
    """One TIFF file's pixels, or one line naming the file when it is damaged or not a TIFF."""
    import tifffile

    if not Path(path).is_file():
        raise ImageInputError(f"{path} does not exist")
    with _read_as(path, what, "check the file (a copy cut short, or not a TIFF?) and save it again"):
        return tifffile.imread(path)


def read_image_file(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from skimage.io import imread

    return imread(path)


def read_folder(root: str | os.PathLike, size: tuple[int, int] | int | None = None,
                fit: str | None = None) -> CropSet:
    """A folder per class (or a flat folder) of images, brought to one size (see :func:`read_crops`)."""
    crops, pieces = _folder_pieces(Path(root))
    return _fitted(crops, pieces, size, fit)


def _folder_pieces(root: Path, skip_unreadable: bool = False) -> tuple[CropSet, list[np.ndarray]]:
    """The folder's crops as they are (C×H×W each, sizes may differ) and a CropSet still without images.
    ``skip_unreadable``: a file that cannot be read is left out and listed in ``skipped``, instead of stopping."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_dirs:
        files = [(f, d.name) for d in class_dirs for f in sorted(d.iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(f, None) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ImageInputError(f"{root} holds no {'/'.join(IMAGE_SUFFIXES)} images (directly or one "
                              "folder per class)")
    crops, kept, skipped = [], [], []
    for f, label in files:
        try:
            crops.append(_channels_first(_read_one(f), str(f)))
            kept.append((f, label))
        except ImageInputError as err:
            if not skip_unreadable:
                raise
            skipped.append((str(f.relative_to(root)), str(err)))
    if not crops:
        raise ImageInputError(f"{root}: none of its {len(files)} images could be read (first: {skipped[0][1]})")
    grey = np.array([c.shape[0] == 1 for c in crops])
    crops = _same_channels(crops, [f for f, _ in kept], root)
    labels = np.array([c for _, c in kept]) if class_dirs else None
    names = [str(f.relative_to(root)) for f, _ in kept]
    notes = [f"skipped {len(skipped)} unreadable file(s) of {len(files)}, e.g. {skipped[0][0]}"] if skipped else []
    if grey.any() and not grey.all():
        notes.append(_mixed_colour_note(root, grey, labels))
    return CropSet(np.empty((0, crops[0].shape[0], 1, 1)), labels, _default_channels(crops[0][None]), names,
                   str(root), notes=notes, skipped=skipped), crops


def _read_one(path: Path) -> np.ndarray:
    with _read_as(path, "an image", "remove or replace the file"):  # a corrupt or truncated file: name it
        return read_image_file(path)


def _mixed_colour_note(root: Path, grey: np.ndarray, labels: np.ndarray | None) -> str:
    """What a user should know when grey and colour images were mixed (and made all colour)."""
    note = f"{root}: {int(grey.sum())} grey image(s) among {int((~grey).sum())} colour ones were made colour"
    if labels is not None:
        all_grey = sorted({str(c) for c in labels if grey[labels == c].all()})
        all_colour = sorted({str(c) for c in labels if not grey[labels == c].any()})
        if all_grey and all_colour:
            note += (f"; class {', '.join(all_grey)} is grey and {', '.join(all_colour)} colour throughout, so a "
                     "classifier can learn the file format instead of the cells: save every class alike")
    return note


def _same_channels(crops: list[np.ndarray], files: list[Path], root: Path) -> list[np.ndarray]:
    """Grey crops among RGB ones become RGB; any other mix of channel counts is refused."""
    counts = sorted({c.shape[0] for c in crops})
    if len(counts) == 1:
        return crops
    if counts == [1, 3]:
        return [np.repeat(c, 3, axis=0) if c.shape[0] == 1 else c for c in crops]
    first = {n: next(f for f, c in zip(files, crops) if c.shape[0] == n) for n in counts}
    raise ImageInputError(f"{root}: images differ in channel count ({', '.join(f'{n} in {first[n].name}' for n in counts)}); "
                          "save every crop with the same channels")


def _default_channels(images: np.ndarray) -> list[str]:
    return [f"channel_{i}" for i in range(images.shape[1])]


def _fitted(crops: CropSet, pieces, size: tuple[int, int] | int | None, fit: str | None) -> CropSet:
    """Bring the crops (a stack, or a list of C×H×W of any size) to one size and record how."""
    if fit is not None and fit not in FIT_POLICIES:
        raise ImageInputError(f"fit {fit!r} is not one of {FIT_POLICIES}; use --fit resize or --fit pad")
    shapes = sorted({tuple(p.shape[-2:]) for p in pieces})
    if isinstance(size, int):
        size = (size, size)
    if size is None and len(shapes) <= 1:  # one size (or no crops at all)
        crops.images = pieces if isinstance(pieces, np.ndarray) else np.stack(pieces)
        return crops
    how = SizeFit(tuple(size) if size is not None else auto_size(shapes), fit or "resize")
    crops.images = np.stack([fit_crop(p, how) for p in pieces])
    crops.fit = how
    if shapes != [how.size]:  # the policy is recorded either way; the note only when a crop changed size
        sides = [s for shape in shapes for s in shape]
        crops.notes.append(f"{crops.source}: {len(pieces)} crops of {min(sides)}–{max(sides)} px brought to "
                           f"{how.size[0]}×{how.size[1]} by {how.fit} (--size, --fit)")
        if looks_like_frames(min(sides), how.size):
            crops.notes.append(f"{crops.source}: these look like whole frames, not one object each; segment the "
                               "frames first (cellsynth segment), then classify with --objects LABELS")
    return crops


def read_crops(path: str | os.PathLike, labels_csv: str | os.PathLike | None = None,
               size: tuple[int, int] | int | None = None, fit: str | None = None,
               skip_unreadable: bool = False, allow_empty: bool = False) -> CropSet:
    """Read any supported crop collection; the format follows from the path.

    ``size``/``fit``: bring every crop to this size by this policy (see :mod:`.sizing`); without them,
    crops of one size stay as they are and crops of mixed sizes get an automatic size by ``resize``.
    ``skip_unreadable``: in a folder, an unreadable image is left out and listed in ``skipped`` (classifying a
    large folder goes on); by default it stops the read with one line naming the file.
    ``allow_empty``: an .npz of no crops is read (extra crops that a filter all dropped); else it is refused.
    """
    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path} does not exist")
    if path.is_dir():
        crops, pieces = _folder_pieces(path, skip_unreadable)
    else:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            crops = read_npz(path, allow_empty)
        elif suffix in (".tif", ".tiff"):
            crops = read_tiff_stack(path, labels_csv)
        else:
            raise ImageInputError(f"{path}: unsupported input; give an .npz, a .tif stack or a folder of "
                                  f"{'/'.join(IMAGE_SUFFIXES)} images")
        pieces = crops.images
    return _fitted(crops, pieces, size, fit)
