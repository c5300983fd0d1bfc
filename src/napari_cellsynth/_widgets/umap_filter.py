"""The UMAP filter dock widget: real classes, synthetic samples kept or dropped, a live confidence slider."""

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSlider, PushButton, create_widget
from napari.viewer import Viewer

from ..core.bundle import BundleError, read_card
from ..core.datasets import read_crops
from ..core.images import ImageInputError
from ..core.outputs import write_filter_outputs
from ..core.runtime import OnnxModel
from ..core.umap_plot import draw_filter
from .base import JobWidget, chosen_path, zoo_picker

FILTER_KEY = "cellsynth_filter"


class UmapFilterWidget(JobWidget):
    run_text = "Fit filter"

    def __init__(self, viewer: Viewer):
        import napari
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.classifier = FileEdit(mode="d", label="classifier bundle")
        self.real_data = FileEdit(mode="r", label="real labelled crops", filter="*.npz *.tif *.tiff")
        self.synthetic_layer = create_widget(annotation=napari.layers.Image, label="synthetic layer")
        # choices from the chosen classifier, through a callable so that reset_choices (on every layer added or
        # removed) keeps them
        self._classes: list[str] = []
        self.minority = ComboBox(choices=self._class_choices, label="minority class")
        self.zoo = zoo_picker(self.classifier, ("classifier",))
        super().__init__(viewer, [self.zoo, self.classifier, self.real_data, self.synthetic_layer, self.minority])
        self.level = FloatSlider(value=0.8, min=0.05, max=0.99, step=0.01, label="confidence", enabled=False)
        self.export_folder = FileEdit(mode="d", label="export kept to")
        self.export_button = PushButton(text="Export kept")
        self.extend([self.level, Container(widgets=[self.export_folder, self.export_button], layout="horizontal",
                                           labels=False)])
        self.figure = Figure(figsize=(4, 3.6))
        self.axes = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(320)
        self.body.layout().addWidget(self.canvas)
        self.canvas.mpl_connect("pick_event", self._picked)
        self._draw_placeholder()
        self.result, self._layer = None, None
        self.classifier.changed.connect(self._classifier_changed)
        self.level.changed.connect(self.refilter)
        self.export_button.changed.connect(self.export_kept)

    def _draw_placeholder(self) -> None:
        """Until a filter is fitted the plot says what will appear in it, instead of an empty white box."""
        self.axes.clear()
        self.axes.set_axis_off()
        self.axes.text(0.5, 0.5, "Fit the filter: the real classes, the minority's ellipse\nand the synthetic "
                       "samples (kept or dropped) appear here", ha="center", va="center", fontsize=8, color="grey",
                       wrap=True, transform=self.axes.transAxes)
        self.canvas.draw_idle()

    def _class_choices(self, widget=None) -> list[str]:
        return list(self._classes)

    def _classifier_changed(self, value=None) -> None:
        try:
            card = read_card(chosen_path(self.classifier, "a classifier bundle folder"))
        except (BundleError, ValueError) as err:
            self._classes = []
            self.minority.reset_choices()
            self.status.value = f"error: {err}"
            return
        self._classes = list(card.classes)
        self.minority.reset_choices()
        self.minority.value = card.classes[-1]

    def make_job(self):
        bundle = chosen_path(self.classifier, "a classifier bundle folder")
        real_path = chosen_path(self.real_data, "the file of real labelled crops (.npz or .tif)")
        layer = self.synthetic_layer.value
        if layer is None:
            raise ValueError("choose the image layer of synthetic crops")
        if layer.ndim - (1 if layer.rgb else 0) < 3:  # refused now, not after the fit
            raise ValueError(f"layer {layer.name!r} is a single {'RGB ' if layer.rgb else ''}image; the filter needs "
                             "a stack of synthetic crops (N×H×W or N×C×H×W), such as Generate's layer")
        if not self.minority.value:
            raise ValueError("choose a classifier bundle, then the minority class")
        minority, synthetic, cancel = self.minority.value, layer.data, self.cancel_token

        def job():
            # core.filtering.run_filter, with UMAP in a child process that Cancel kills whatever it is doing (numba
            # compiling included); imported here, in the worker thread, so that opening the widget does not stall
            # the viewer on scikit-learn and UMAP
            from ..core.filtering import run_filter

            model = OnnxModel(bundle, kind="classifier")
            real = read_crops(real_path)
            if real.labels is None:
                raise ImageInputError(f"{real_path} has no labels; the filter needs labelled real crops")
            result = yield from run_filter(model, real.images, real.labels, np.asarray(synthetic), minority,
                                           cancel=cancel, in_process=True)
            return layer, result
        return job

    def show_result(self, value) -> None:
        """A new fit: the slider moves to its level without a signal, and the plot, the status and the layer's
        decisions are redrawn whatever the slider held (the slider rounds, so a new level can leave it
        unchanged and send no signal)."""
        self._layer, self.result = value
        self.level.enabled = True
        with self.level.changed.blocked():
            self.level.value = min(max(self.result.fitted.level_, self.level.min), self.level.max)
        self.refilter()

    def refilter(self, value=None) -> None:
        """Re-decide keep/drop at the slider's level without refitting; update the plot and the layer."""
        if self.result is None:
            return
        import pandas as pd

        level = float(self.level.value)
        table = pd.DataFrame(self.result.table(level))
        self._layer.metadata[FILTER_KEY] = table
        draw_filter(self.axes, self.result.fitted, self.result.points, table["keep"].to_numpy(), level)
        self.figure.tight_layout()
        self.canvas.draw_idle()
        self.status.value = f"kept {int(table['keep'].sum())} of {len(table)} at level {level:.2f}"

    def _picked(self, event) -> None:
        if len(getattr(event, "ind", [])):
            self.show_sample(int(event.ind[0]))

    def show_sample(self, index: int) -> None:
        """Bring synthetic sample ``index`` into view in the viewer."""
        layer = self._layer
        axis = self._viewer.dims.ndim - layer.ndim
        self._viewer.layers.selection.active = layer
        self._viewer.dims.set_current_step(axis, index)
        row = layer.metadata[FILTER_KEY].iloc[index]
        self.status.value = f"synthetic {index}: {'kept' if row['keep'] else 'dropped'}, distance {row['distance']:.2f}"

    def export_kept(self, value=None) -> list[Path]:
        if self.result is None:
            self.status.value = "error: fit the filter first"
            return []
        try:
            folder = chosen_path(self.export_folder, "a folder to export the kept images to")
        except ValueError as err:
            self._error(err)
            return []
        layer = self._layer
        images = np.asarray(layer.data)
        if layer.rgb:
            images = np.moveaxis(images, -1, 1)
        record = {**layer.metadata.get("cellsynth_provenance", {}), "classifier": str(self.classifier.value),
                  "real": str(self.real_data.value), "synthetic_source": f"layer {layer.name!r}"}
        names = [f"{layer.name}[{i}]" for i in range(len(images))]
        # the files `cellsynth filter` writes, at the slider's level
        _, paths = write_filter_outputs(folder, images, names, self.result, float(self.level.value), record)
        self.status.value = f"exported {len(paths)} kept images (and the decisions) to {folder}"
        return paths
