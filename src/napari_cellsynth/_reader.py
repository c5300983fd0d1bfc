"""Open a ``cellsynth batch`` run folder in napari: per stack, its labels and its objects coloured by class.

Both layers read the OME-Zarr output lazily: a frame is read (and its class image painted) when it is shown.
"""

from __future__ import annotations

from pathlib import Path

from .core.batch.results import class_image, in_input_axes, is_run, read_run



def class_colors(classes: list[str]) -> dict:
    """Class number → colour, the colours the Classify widget gives the same classes."""
    from ._widgets.classify import class_color

    colors = {None: "transparent", 0: "transparent"}
    colors.update({k + 1: class_color(k) for k in range(len(classes))})
    return colors


def run_layers(run_dir: str | Path) -> list[tuple]:
    """Layer-data tuples for every stack of the run: ``<stack> objects`` and, with a classifier, ``<stack> classes``,
    in the input's own axes (a T×Y×X stack's labels are T×Y×X), so that they overlay the input frame by frame."""
    import dask.array as da

    record, stacks = read_run(run_dir)
    classes = record.get("models", {}).get("classifier", {}).get("classes", [])
    layers = []
    for stack in stacks:
        meta = {"cellsynth_batch": {"run": str(run_dir), "stack": stack.name, "status": stack.status,
                                    "objects": stack.rows}}
        objects, names = in_input_axes(da.from_zarr(stack.labels), stack.axes)
        axes = {"axis_labels": tuple(a.lower() for a in names)}  # the sliders read t and z, not -3 / -2
        layers.append((objects, {"name": f"{stack.name} objects", "metadata": meta, **axes}, "labels"))
        if classes:
            features = {"index": list(range(1, len(classes) + 1)), "class": classes}
            layers.append((in_input_axes(class_image(stack.labels, stack.rows, classes), stack.axes)[0],
                           {"name": f"{stack.name} classes", "colormap": class_colors(classes),
                            "features": features, "opacity": 0.6, "metadata": meta, **axes}, "labels"))
    return layers


def get_reader(path):
    """napari's reader hook: a reader for a batch run folder or its ``run.json``, None for anything else.

    The manifest offers it for folders and for files named ``run.json`` only, so opening a TIFF never asks which
    reader to use.  A folder is offered to napari's own reader too (it reads OME-Zarr folders), so File → Open on
    ``RUN/run.json`` opens the run without a choice."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else None
    if path is None:
        return None
    folder = Path(path).parent if Path(path).name == "run.json" else Path(path)
    if not folder.is_dir() or not is_run(folder):
        return None
    return lambda p: run_layers(folder)
