"""The Classify dock widget: a crop stack, or an image plus a labels layer of objects."""

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox, create_widget
from napari.viewer import Viewer

from ..core.atomic import write_csv_atomic
from ..core.bundle import BundleError, read_card
from ..core.classify import classify_crops, classify_objects
from ..core.runtime import OnnxModel
from .base import JobWidget, chosen_bundle, chosen_path, zoo_picker
from .colour_warmup import warm_colour_mapping
from .table import FrameTable

CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]
RESULT_KEY = "cellsynth_classification"
# how object mode cuts a crop per object: the bundle's window at native scale, as its training crops were cut,
# or the object's bounding box (grown by the margin) resized to the bundle's size
OBJECT_CROPS = {"fixed window, native scale": "window", "bounding box resized": "resize"}


def class_color(index: int) -> str:
    return CLASS_COLORS[index % len(CLASS_COLORS)]


class ClassifyWidget(JobWidget):
    """Classify every crop of an N×(C×)H×W image layer, or every object of a labels layer."""

    run_text = "Classify"

    def __init__(self, viewer: Viewer):
        import napari
        from qtpy.QtCore import Qt

        self.image_layer = create_widget(annotation=napari.layers.Image, label="image")
        self.labels_layer = create_widget(annotation=napari.layers.Labels | None, label="objects (optional)",
                                          options={"nullable": True})
        self.bundle = FileEdit(mode="d", label="classifier bundle")
        self.batch_size = SpinBox(value=64, min=1, max=4096, label="batch size")
        self.object_crop = ComboBox(choices=list(OBJECT_CROPS), value="fixed window, native scale",
                                    label="object crops",
                                    tooltip="fixed window: the bundle's H×W pixels centred on each object, at the "
                                            "image's scale; bounding box resized: each object's box plus the "
                                            "margin, resized to H×W. Set from the bundle's card (how its "
                                            "training crops were cut) when a bundle is chosen")
        self.margin = FloatSpinBox(value=0.15, min=0.0, max=1.0, step=0.05, label="crop margin", enabled=False,
                                   tooltip="only for 'bounding box resized'")
        self.zoo = zoo_picker(self.bundle, ("classifier",))
        warm_colour_mapping()  # the first labels drawn do not stall the viewer (colour_warmup)
        super().__init__(viewer, [self.image_layer, self.labels_layer, self.zoo, self.bundle, self.batch_size,
                                  self.object_crop, self.margin])
        self.object_crop.changed.connect(
            lambda value: setattr(self.margin, "enabled", OBJECT_CROPS[value] == "resize"))
        self.bundle.changed.connect(self._bundle_chosen)
        # results: a colour legend (object mode), the per-crop or per-object table, its export as CSV
        self.legend = Label(value="", label="legend")
        self.legend.native.setTextFormat(Qt.TextFormat.RichText)
        self.legend.native.setWordWrap(True)
        self.legend.visible = False
        self.legend_entries: list[tuple[str, str, int]] = []  # (class, colour, count)
        self.extend([self.legend])
        self.table = FrameTable(self._row_chosen)
        self.body.layout().addWidget(self.table)
        self.csv_file = FileEdit(mode="w", label="table CSV", filter="*.csv")
        self.csv_file.line_edit.native.setPlaceholderText("CSV file for the table")
        self.export_button = PushButton(text="Export table")
        self.extend([Container(widgets=[self.csv_file, self.export_button], layout="horizontal", labels=False)])
        self.export_button.changed.connect(self.export_table)
        self.result_table = None  # the DataFrame shown, one row per crop or per object
        self._result_layer = None  # the layer those rows belong to
        self._stack_layer = None
        self._class_points: dict[int, object] = {}  # id(labels layer) → its "classes of …" points layer
        viewer.dims.events.current_step.connect(self._show_current_crop)
        viewer.layers.events.removed.connect(self._layer_removed)

    def make_job(self):
        image, labels = self.image_layer.value, self.labels_layer.value
        if image is None:
            raise ValueError("choose an image layer to classify")
        bundle = chosen_bundle(self.bundle, "a classifier bundle folder")
        data = image.data  # read in the worker: a lazy (dask, zarr) layer must not block the viewer
        batch, margin = int(self.batch_size.value), float(self.margin.value)
        crop = OBJECT_CROPS[self.object_crop.value]

        if labels is None:
            def job():
                model = OnnxModel(bundle, kind="classifier")
                result = yield from classify_crops(model, np.asarray(data), batch)
                return ("stack", image, result, model.runs_as)
        else:
            label_data = labels.data

            def job():
                model = OnnxModel(bundle, kind="classifier")
                objects, result = yield from classify_objects(model, np.asarray(data), np.asarray(label_data),
                                                              batch, margin, crop)
                return ("objects", labels, (objects, result, crop), model.runs_as)
        return job

    def show_result(self, result) -> None:
        mode, layer, payload, runs_as = result
        if mode == "stack":
            self._show_stack(layer, payload)
        else:
            self._show_objects(layer, *payload)
        if runs_as.weights != "fp32":  # the bundle's int8 variant ran (core.precision): say so, and why
            self.status.value += f"; {runs_as.weights} weights: {runs_as.why}"

    def _show_table(self, layer, table) -> None:
        self.result_table, self._result_layer = table, layer
        self.table.set_frame(table)

    def _row_chosen(self, row: int) -> None:
        """A row picked in the table: bring that crop into view, or select that object."""
        layer = self._result_layer
        if layer is None or layer not in self._viewer.layers:
            return
        if layer is self._stack_layer:
            self._viewer.layers.selection.active = layer
            self._viewer.dims.set_current_step(self._viewer.dims.ndim - layer.ndim, row)
        elif "label" in self.result_table:
            layer.selected_label = int(self.result_table["label"].iloc[row])

    def export_table(self, value=None):
        """Write the table shown to the CSV file chosen (atomically); return its path, or None."""
        if self.result_table is None:
            self._error(ValueError("classify first: there is no table to export"))
            return None
        try:
            path = chosen_path(self.csv_file, "a CSV file to export the table to")
        except ValueError as err:
            self._error(err)
            return None
        if path.suffix.lower() != ".csv":
            path = path.with_name(path.name + ".csv")
        write_csv_atomic(path, {name: self.result_table[name].tolist() for name in self.result_table.columns})
        self.status.value = f"exported {len(self.result_table)} rows to {path}"
        return path

    def _bundle_chosen(self, value=None) -> None:
        """Objects are cut the way the bundle's training crops were (its card), unless the user picks otherwise."""
        try:
            card = read_card(self.bundle.value)
        except (BundleError, OSError, TypeError):
            return  # a missing or broken bundle is reported on Run
        if card.kind != "classifier":
            self.status.value = (f"error: bundle '{card.name}' is a {card.kind} bundle; Classify needs a "
                                 "classifier bundle")
            return
        self.object_crop.value = next(k for k, v in OBJECT_CROPS.items() if v == card.object_crop)

    def _layer_removed(self, event) -> None:
        """Results that belong to a removed layer go with it: the crop overlay, the table and the legend."""
        layer = event.value
        if layer is self._stack_layer:
            self._stack_layer = None
            self._viewer.text_overlay.text = ""
            self._viewer.text_overlay.visible = False
        if layer is self._result_layer:
            self._show_table(None, None)
            self._set_legend([])
        points = self._class_points.pop(id(layer), None)  # the class names drawn over a removed labels layer
        if points is not None and points in self._viewer.layers:
            self._viewer.layers.remove(points)

    def _set_legend(self, entries: list[tuple[str, str, int]]) -> None:
        self.legend_entries = entries
        self.legend.value = "<br>".join(f'<span style="color:{colour}">&#9632;</span> {name} ({count})'
                                        for name, colour, count in entries)
        self.legend.visible = bool(entries)

    def _show_stack(self, layer, result) -> None:
        import pandas as pd

        layer.metadata[RESULT_KEY] = {"classes": result.classes, **{k: list(v) for k, v in
                                                                  result.table().items()}}
        if self._stack_layer is not layer:  # the crop overlay is shown only while its layer is
            layer.events.visible.connect(self._show_current_crop)
        self._stack_layer = layer
        self._show_table(layer, pd.DataFrame({"crop": range(len(result.confidence)), **result.table()}))
        self._set_legend([])  # crops are not coloured: the overlay and the table name their class
        counts = {c: result.predicted_names.count(c) for c in result.classes}
        self.status.value = f"{len(result.confidence)} crops: " + ", ".join(f"{c} {n}" for c, n in counts.items())
        if result.decision is not None:
            self.status.value += f" (thresholds from the bundle's card: {result.decision.thresholds})"
        self._viewer.text_overlay.visible = True
        self._show_current_crop()

    def _show_current_crop(self, event=None) -> None:
        layer = self._stack_layer
        if layer is None or RESULT_KEY not in layer.metadata or layer not in self._viewer.layers:
            return
        self._viewer.text_overlay.visible = bool(layer.visible)
        table = layer.metadata[RESULT_KEY]
        axis = self._viewer.dims.ndim - layer.ndim
        index = int(self._viewer.dims.current_step[axis]) if axis >= 0 else 0
        index = min(max(index, 0), len(table["class"]) - 1)
        self._viewer.text_overlay.text = (f"{layer.name} crop {index}: {table['class'][index]} "
                                          f"({float(table['confidence'][index]):.2f})")

    def _show_objects(self, labels_layer, objects, result, crop="window") -> None:
        import pandas as pd
        from napari.utils.colormaps import DirectLabelColormap

        table = pd.DataFrame({"label": objects.labels, **result.table()})
        labels_layer.features = table
        colors = {None: "transparent", 0: "transparent"}
        colors.update({int(lab): class_color(int(k)) for lab, k in zip(objects.labels, result.predicted)})
        labels_layer.colormap = DirectLabelColormap(color_dict=colors)
        centres = (objects.boxes[:, :2] + objects.boxes[:, 2:]) / 2
        name = f"classes of {labels_layer.name}"
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        self._class_points[id(labels_layer)] = self._viewer.add_points(
            centres, name=name, size=1, face_color="transparent", border_width=0,
            features=table, text={"string": "{class} {confidence:.2f}", "color": "white", "size": 9},
            scale=labels_layer.scale[-2:], translate=labels_layer.translate[-2:])
        counts = table["class"].value_counts()
        self._show_table(labels_layer, table)
        self._set_legend([(name, class_color(k), int(counts.get(name, 0))) for k, name in enumerate(result.classes)])
        self.status.value = f"{len(table)} objects: " + ", ".join(f"{c} {n}" for c, n in counts.items())
        window = objects.crops.shape[-1]
        larger = int(np.sum(objects.boxes[:, 2] - objects.boxes[:, 0] > window))
        if crop == "window" and larger:
            self.status.value += f" ({larger} larger than the {window}×{window} window, scaled down to fit)"
