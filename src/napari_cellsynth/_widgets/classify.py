"""The Classify dock widget: a crop stack, or an image plus a labels layer of objects."""

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, SpinBox, create_widget
from napari.viewer import Viewer

from ..core.classify import classify_crops, classify_objects
from ..core.runtime import OnnxModel
from .base import JobWidget, chosen_path

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

        self.image_layer = create_widget(annotation=napari.layers.Image, label="image")
        self.labels_layer = create_widget(annotation=napari.layers.Labels | None, label="objects (optional)",
                                          options={"nullable": True})
        self.bundle = FileEdit(mode="d", label="classifier bundle")
        self.batch_size = SpinBox(value=64, min=1, max=4096, label="batch size")
        self.object_crop = ComboBox(choices=list(OBJECT_CROPS), value="fixed window, native scale",
                                    label="object crops",
                                    tooltip="fixed window: the bundle's H×W pixels centred on each object, at the "
                                            "image's scale (as the training crops were cut); bounding box "
                                            "resized: each object's box plus the margin, resized to H×W")
        self.margin = FloatSpinBox(value=0.15, min=0.0, max=1.0, step=0.05, label="crop margin", enabled=False,
                                   tooltip="only for 'bounding box resized'")
        super().__init__(viewer, [self.image_layer, self.labels_layer, self.bundle, self.batch_size,
                                  self.object_crop, self.margin])
        self.object_crop.changed.connect(
            lambda value: setattr(self.margin, "enabled", OBJECT_CROPS[value] == "resize"))
        self._stack_layer = None
        viewer.dims.events.current_step.connect(self._show_current_crop)

    def make_job(self):
        image, labels = self.image_layer.value, self.labels_layer.value
        if image is None:
            raise ValueError("choose an image layer to classify")
        bundle = chosen_path(self.bundle, "a classifier bundle folder")
        if not bundle.exists():
            raise ValueError(f"choose a classifier bundle folder ({bundle} does not exist)")
        data = image.data  # read in the worker: a lazy (dask, zarr) layer must not block the viewer
        batch, margin = int(self.batch_size.value), float(self.margin.value)
        crop = OBJECT_CROPS[self.object_crop.value]

        if labels is None:
            def job():
                model = OnnxModel(bundle, kind="classifier")
                result = yield from classify_crops(model, np.asarray(data), batch)
                return ("stack", image, result)
        else:
            label_data = labels.data

            def job():
                model = OnnxModel(bundle, kind="classifier")
                objects, result = yield from classify_objects(model, np.asarray(data), np.asarray(label_data),
                                                              batch, margin, crop)
                return ("objects", labels, (objects, result, crop))
        return job

    def show_result(self, result) -> None:
        mode, layer, payload = result
        if mode == "stack":
            self._show_stack(layer, payload)
        else:
            self._show_objects(layer, *payload)

    def _show_stack(self, layer, result) -> None:
        layer.metadata[RESULT_KEY] = {"classes": result.classes, **{k: list(v) for k, v in
                                                                  result.table().items()}}
        self._stack_layer = layer
        counts = {c: result.predicted_names.count(c) for c in result.classes}
        self.status.value = f"{len(result.confidence)} crops: " + ", ".join(f"{c} {n}" for c, n in counts.items())
        self._viewer.text_overlay.visible = True
        self._show_current_crop()

    def _show_current_crop(self, event=None) -> None:
        layer = self._stack_layer
        if layer is None or RESULT_KEY not in layer.metadata or layer not in self._viewer.layers:
            return
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
        self._viewer.add_points(
            centres, name=name, size=1, face_color="transparent", border_width=0,
            features=table, text={"string": "{class} {confidence:.2f}", "color": "white", "size": 9},
            scale=labels_layer.scale[-2:], translate=labels_layer.translate[-2:])
        counts = table["class"].value_counts()
        self.status.value = f"{len(table)} objects: " + ", ".join(f"{c} {n}" for c, n in counts.items())
        window = objects.crops.shape[-1]
        larger = int(np.sum(objects.boxes[:, 2] - objects.boxes[:, 0] > window))
        if crop == "window" and larger:
            self.status.value += f" ({larger} larger than the {window}×{window} window, scaled down to fit)"
