"""The Batch dock widget: ``cellsynth batch`` from napari.  Results go to disk; a report per file, and a preview of
the run opened lazily from its OME-Zarr output.

Separate from the interactive widgets: it takes files, not layers, and a run may take hours.  Run again with the same
settings to resume; Cancel stops after the frames in flight.  The optional generate and filter steps are those of
``cellsynth batch --generate … --filter-minority …`` (:mod:`napari_cellsynth.core.batch.augment`).
"""

from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox
from napari.viewer import Viewer

from ..core.batch import AugmentSettings, BatchSettings
from ..core.segment import SegmentSettings
from ..core.generate import GENERATOR_KINDS
from .base import JobWidget, chosen_path, zoo_picker
from .colour_warmup import warm_colour_mapping
from .table import FrameTable

REPORT_COLUMNS = ["name", "status", "frames", "done", "failed", "objects", "error"]


def channel_numbers(text: str) -> tuple[int, ...] | None:
    text = text.strip()
    if not text:
        return None
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError as err:
        raise ValueError(f"classify channels: give channel numbers separated by commas (e.g. 0,0,0), not {text!r}") \
            from err


def augment_text(augment: dict | None) -> str:
    """What the generate and filter steps did, for the status line."""
    if not augment:
        return ""
    if augment["status"] != "done":
        return f"; generate/filter {augment['status']}: {augment.get('error', '')}"
    if "filter" in augment:
        return f"; the filter kept {augment['filter']['kept']} of {augment['filter']['synthetic']} synthetic objects"
    made = augment.get("synthetic", {}).get("objects") or augment.get("generated", {}).get("count")
    return f"; {made} synthetic objects"


class BatchWidget(JobWidget):
    run_text = "Run / resume"

    def __init__(self, viewer: Viewer):
        self.input = FileEdit(mode="r", label="input (stack or folder)", filter="*.tif *.tiff *.zarr")
        self.axes = LineEdit(value="", label="axes (blank: the file's)")
        self.channel = SpinBox(value=0, min=0, max=64, label="segment channel")
        self.segment_model = FileEdit(mode="r", label="Cellpose model (file, bundle or zoo:NAME)")
        self.diameter = FloatSpinBox(value=0.0, min=0.0, max=1000.0, step=1.0, label="diameter (0: the model's)")
        self.classifier = FileEdit(mode="d", label="classifier bundle (optional)")
        self.classify_channels = LineEdit(value="", label="classify channels (blank: all)")
        self.tile = SpinBox(value=1024, min=0, max=65536, step=256, label="tile (0: never)")
        self.halo = SpinBox(value=0, min=0, max=4096, label="halo (0: two diameters)")
        self.generator = FileEdit(mode="d", label="generator bundle (optional)")
        self.generate_class = LineEdit(value="", label="DDPM/GAN: class (blank: the minority)")
        self.generate_count = SpinBox(value=0, min=0, max=1_000_000, label="DDPM/GAN: images")
        self.generate_steps = SpinBox(value=0, min=0, max=1000, label="generator steps (0: default)")
        self.minority = LineEdit(value="", label="UMAP filter: minority class (blank: no filter)")
        self.out = FileEdit(mode="d", label="output folder")
        self.scheduler = ComboBox(choices=["threads", "processes"], value="threads", label="scheduler")
        self.address = LineEdit(value="", label="or dask scheduler address")
        self.workers = SpinBox(value=2, min=1, max=256, label="local workers")
        self.preview_button = PushButton(text="Open results")
        self.report = FrameTable()
        zoo_segment = zoo_picker(self.segment_model, ("cellpose",), "Cellpose from the zoo")
        zoo_classifier = zoo_picker(self.classifier, ("classifier",), "classifier from the zoo")
        zoo_generator = zoo_picker(self.generator, (*GENERATOR_KINDS, "bbdm", "cyclegan"), "generator from the zoo")
        warm_colour_mapping()  # the first labels drawn do not stall the viewer (colour_warmup)
        super().__init__(viewer, [self.input, self.axes, self.channel, zoo_segment, self.segment_model, self.diameter,
                                  zoo_classifier,
                                  self.classifier, self.classify_channels, self.tile, self.halo, zoo_generator,
                                  self.generator, self.generate_class,
                                  self.generate_count, self.generate_steps, self.minority, self.out, self.scheduler,
                                  self.address, self.workers])
        self.extend([self.preview_button])
        self.body.layout().addWidget(self.report)
        self.preview_button.changed.connect(lambda: self.open_results())
        self.result = None

    def _optional_path(self, field) -> str | None:
        text = str(field.line_edit.value).strip()
        return None if text in ("", ".") else text

    def settings(self) -> BatchSettings:
        segment = SegmentSettings(str(chosen_path(self.segment_model, "a Cellpose model file")),
                                  float(self.diameter.value) or None)
        augment = AugmentSettings(self._optional_path(self.generator), self.generate_class.value.strip() or None,
                                  int(self.generate_count.value), int(self.generate_steps.value) or None,
                                  minority=self.minority.value.strip() or None)
        return BatchSettings(segment, self._optional_path(self.classifier), int(self.channel.value),
                             channel_numbers(self.classify_channels.value), int(self.tile.value) or None,
                             int(self.halo.value) or None, augment=augment)

    def make_job(self):
        source = chosen_path(self.input, "a TIFF or OME-Zarr stack, or a folder of them")
        out = chosen_path(self.out, "an output folder for the run")
        settings, axes = self.settings(), self.axes.value.strip() or None
        scheduler = self.address.value.strip() or self.scheduler.value
        workers, cancel = int(self.workers.value), self.cancel_token

        def job():
            from ..core.batch import run_batch  # in the worker thread: the batch's jobs, UMAP filter, scikit-learn

            return (yield from run_batch(source, out, settings, axes, scheduler, workers, cancel=cancel))
        return job

    def show_report(self, stacks: list[dict]) -> None:
        import pandas as pd

        rows = [{name: stack.get(name, "") for name in REPORT_COLUMNS} for stack in stacks]
        for row, stack in zip(rows, stacks):
            if not row["error"] and stack.get("failures"):
                first = stack["failures"][0]
                row["error"] = f"t={first['t']} z={first['z']}: {first['error']}"
        self.report.set_frame(pd.DataFrame(rows, columns=REPORT_COLUMNS))

    def show_result(self, result) -> None:
        self.result = result
        self.show_report(result.stacks)
        self.status.value = (f"{result.done} of {result.frames} frames, {result.objects} objects, {result.failed} "
                             f"failed{augment_text(result.augment)}; written to {result.run_dir}")
        self.open_results()

    def open_results(self) -> None:
        """The run's layers, read lazily from its output (replacing those of an earlier preview)."""
        from .._reader import run_layers

        try:
            run_dir = self.result.run_dir if self.result is not None else chosen_path(self.out, "the run's folder")
            layers = run_layers(run_dir)
        except Exception as err:  # noqa: BLE001 - shown on the status line, never raised into Qt
            self._error(err)
            return
        for data, kwargs, _ in layers:
            if kwargs["name"] in self._viewer.layers:
                self._viewer.layers.remove(kwargs["name"])
            self._viewer.add_labels(data, **kwargs)
