"""What an operation writes, shared by the CLI and the widgets: the same operation writes the same files.

- generated or translated images: one TIFF per image with its provenance (JSON) in the description;
- a composite (translate): one TIFF with the same record;
- the UMAP filter: ``decisions.csv``, the kept images (``kept.npz`` for training with ``--extra-train``,
  and ``kept/`` TIFFs with their provenance), ``umap_filter.png``, ``filter.npz`` and ``summary.json``.

Every file is written atomically; nothing is read back with pickle.
"""

from __future__ import annotations

import io
import json
from collections.abc import Generator
from pathlib import Path

import numpy as np

from .atomic import atomic_open, write_csv_atomic, write_json_atomic
from .generate import generate, provenance
from .translate import composite


def write_tiff(path: str | Path, image: np.ndarray, record: dict) -> Path:
    """One TIFF, ``record`` as JSON in its description, written atomically."""
    import tifffile

    path = Path(path)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, description=json.dumps(record), metadata=None)
    with atomic_open(path, "wb") as fh:
        fh.write(buffer.getvalue())
    return path


def image_name(record: dict, index: int) -> str:
    return f"{record['class']}_seed{record['seed']}_{index:05d}.tif"


def save_images(folder: str | Path, images: np.ndarray, record: dict, first_index: int = 0,
                indices=None) -> list[Path]:
    """One TIFF per image (C×H×W), its provenance with its index in the description.  ``indices`` names
    each image's index (default: ``first_index`` onwards)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    indices = range(first_index, first_index + len(images)) if indices is None else [int(i) for i in indices]
    return [write_tiff(folder / image_name(record, index), image, {**record, "index": index})
            for index, image in zip(indices, images)]


def generate_into(folder: str | Path, model, settings) -> Generator[tuple[int, int], None, dict]:
    """Generate ``settings.count`` images with a DDPM or GAN bundle into ``folder``, one TIFF each with its
    provenance, batch by batch; batches already there are skipped, so a killed run resumes and ends with the same
    images as an uninterrupted one (each batch draws from its own seed).  Yields ``(network calls done, total)``;
    returns the provenance record."""
    folder = Path(folder)
    record = provenance(model, settings)

    def indices(b: int) -> range:
        return range(b * settings.batch_size, min((b + 1) * settings.batch_size, settings.count))

    def skip(b: int) -> bool:
        paths = [folder / image_name(record, i) for i in indices(b)]
        there = [path for path in paths if path.is_file()]
        if there:
            check_same_settings(there[0], record)
        return len(there) == len(paths)

    def save(b: int, images: np.ndarray) -> None:
        save_images(folder, images, record, first_index=indices(b)[0])

    yield from generate(model, settings, skip_batch=skip, on_batch=save)
    return record


def _what_made(record):
    """A generated image's provenance without what does not change its pixels, at any depth (a guide bundle's record
    is nested): its index, when a run or a model was started, and the execution provider (another machine)."""
    if isinstance(record, dict):
        return {k: _what_made(v) for k, v in record.items() if k not in ("index", "created", "provider")}
    return record


def check_same_settings(path: Path, record: dict) -> None:
    """An image already at ``path`` must have been made as ``record`` would make it, or resuming would mix two runs
    under one name (and report the old images as the new ones)."""
    old, new = _what_made(read_provenance(path)), _what_made(json.loads(json.dumps(record)))  # as stored: lists
    if old != new:
        changed = [f"{key} {old.get(key)!r} → {new.get(key)!r}" for key in [*new, *(k for k in old if k not in new)]
                   if old.get(key) != new.get(key)]  # in the record's order: the bundle, then the sampler's settings
        raise ValueError(f"{path.parent} already holds {path.name} made with other settings ({'; '.join(changed[:4])}); "
                         "choose another output folder, or move those images away")


def read_generated(folder: str | Path, record: dict, count: int) -> np.ndarray:
    """The ``count`` images :func:`generate_into` wrote under ``record``, in index order (N×C×H×W)."""
    import tifffile

    return np.stack([tifffile.imread(Path(folder) / image_name(record, i)) for i in range(count)])


def read_provenance(path: str | Path) -> dict:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return json.loads(tif.pages[0].description)


def write_translation(folder: str | Path, result, labels: np.ndarray, record: dict) -> dict:
    """A translation's files: ``crops/`` (one TIFF per chromosome), ``composite.tif`` (the crops pasted back
    over the labels) and ``translate.json``, written last so that its presence means the folder is complete.
    ``result`` is a :class:`~napari_cellsynth.core.translate.Translated`; ``record`` adds where the inputs
    came from."""
    folder = Path(folder)
    record = {**result.provenance, **record, "labels": result.labels.tolist()}
    save_images(folder / "crops", result.images, record)
    write_tiff(folder / "composite.tif", composite(result, labels), record)
    write_json_atomic(folder / "translate.json", {**record, "boxes": result.boxes.tolist()})
    return record


FILTER_FILES = ("decisions.csv", "kept.npz", "kept", "umap_filter.png", "filter.npz", "summary.json")


def write_filter_outputs(folder: str | Path, images: np.ndarray, names, result, level: float | None,
                         record: dict) -> tuple[dict, list[Path]]:
    """The UMAP filter's files for synthetic ``images`` (N×C×H×W, named ``names``) and their
    :class:`~napari_cellsynth.core.filtering.FilterResult` at ``level`` (default: the fitted level).

    ``record`` says where the images came from (a generator's provenance, or the source file) and what
    the filter was fitted on; it goes into each kept TIFF and ``summary.json``.  Returns the summary and the
    kept TIFFs; kept TIFFs of an earlier export to the same folder that are not kept now are removed, so
    that ``kept/`` always matches ``decisions.csv``."""
    from .umap_plot import save_filter_figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fitted = result.fitted
    level = float(fitted.level_ if level is None else level)
    table = {"source": list(names), **result.table(level)}
    keep = np.asarray(table["keep"], bool)
    write_csv_atomic(folder / "decisions.csv", table)
    with atomic_open(folder / "kept.npz", "wb") as fh:
        np.savez(fh, images=images[keep], source=np.array(names)[keep], index=np.flatnonzero(keep))
    tiff_record = {"class": fitted.minority_, "seed": 0, **record,
                   "umap_filter": {"level": level, "minority": fitted.minority_}}
    paths = []
    for index in np.flatnonzero(keep):
        paths += save_images(folder / "kept", images[index:index + 1],
                             {**tiff_record, "distance": float(result.distance[index])}, indices=[index])
    (folder / "kept").mkdir(exist_ok=True)
    for stale in set((folder / "kept").glob("*.tif")) - set(paths):
        stale.unlink()
    save_filter_figure(folder / "umap_filter.png", fitted, result.points, keep, level)
    fitted.save(folder / "filter.npz")
    summary = {**record, "synthetic": len(keep), "kept": int(keep.sum()), "dropped": int((~keep).sum()),
               "level": level, "component_weight": float(fitted.weights_[fitted.component_]),
               "minority": fitted.minority_}
    write_json_atomic(folder / "summary.json", summary)
    return summary, paths
