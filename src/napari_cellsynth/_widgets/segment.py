"""The Segment dock widget: Cellpose on an image layer (stacks frame by frame) → a labels layer."""

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, PushButton, SpinBox, create_widget
from napari.viewer import Viewer

from ..core.jobs import in_thread
from ..core.segment import (SegmentSettings, available_builtins, estimate_diameter, load_model, model_thresholds,
                            segment)
from .base import JobWidget, chosen_path, zoo_choices
from .colour_warmup import warm_colour_mapping

CUSTOM = "custom model file…"


class SegmentWidget(JobWidget):
    run_text = "Segment"

    def __init__(self, viewer: Viewer):
        import napari

        self.image_layer = create_widget(annotation=napari.layers.Image, label="image")
        zoo = zoo_choices(("cellpose",))  # the zoo's Cellpose models first: they need no Cellpose download
        # Cellpose's own models only when they can be used now: cached, or the server answers (else Cellpose fails
        # after a long download timeout); the zoo's need no download from Cellpose
        builtins = available_builtins()
        self.model_name = ComboBox(choices=[(CUSTOM, CUSTOM), *zoo, *((m, m) for m in builtins)],
                                   value=zoo[0][1] if zoo else CUSTOM, label="model")
        self.model_file = FileEdit(mode="r", label="model file")
        self.diameter = FloatSpinBox(value=0.0, min=0.0, max=1000.0, step=1.0, label="diameter (0 = model's)")
        self.estimate_button = PushButton(text="Estimate diameter")
        self.cyto_channel = SpinBox(value=0, min=0, max=3, label="cytoplasm channel")
        self.nucleus_channel = SpinBox(value=0, min=0, max=3, label="nucleus channel")
        # the model's own thresholds (a bundle's card holds those chosen on its training images) unless unticked
        self.own_thresholds = CheckBox(value=True, text="the model's own thresholds")
        self.flow_threshold = FloatSpinBox(value=0.4, min=0.0, max=3.0, step=0.05, label="flow threshold")
        self.cellprob_threshold = FloatSpinBox(value=0.0, min=-6.0, max=6.0, step=0.25, label="cell probability")
        warm_colour_mapping()  # the first labels drawn do not stall the viewer (colour_warmup)
        super().__init__(viewer, [self.image_layer, self.model_name, self.model_file, self.diameter,
                                  self.estimate_button, self.cyto_channel, self.nucleus_channel, self.own_thresholds,
                                  self.flow_threshold, self.cellprob_threshold])
        self.estimate_button.changed.connect(lambda: self.start(self.make_estimate_job, self.show_estimate))
        for control in (self.own_thresholds, self.model_name, self.model_file):
            control.changed.connect(self.show_model_thresholds)
        self.show_model_thresholds()

    def chosen_model(self) -> str | None:
        if self.model_name.value != CUSTOM:
            return self.model_name.value
        path = self.model_file.value
        return str(path) if path and str(path) not in ("", ".") else None

    def show_model_thresholds(self, *_) -> None:
        """With "the model's own thresholds" ticked, the two fields show the model's (read from a bundle's card,
        nothing downloaded) and cannot be edited; unticked, they are the user's."""
        own = bool(self.own_thresholds.value)
        for field in (self.flow_threshold, self.cellprob_threshold):
            field.enabled = not own
        model = self.chosen_model()
        values = model_thresholds(model) if own and model else None
        if values is not None:
            self.flow_threshold.value, self.cellprob_threshold.value = values
        self.flow_threshold.tooltip = self.cellprob_threshold.tooltip = (
            "the model's own: a zoo bundle not downloaded yet shows them once it is" if own and model and values is None
            else "")

    def settings(self) -> SegmentSettings:
        if self.model_name.value == CUSTOM:
            model = str(chosen_path(self.model_file, "a Cellpose model file, or a built-in model"))
        else:
            model = self.model_name.value
        thresholds = ((None, None) if self.own_thresholds.value
                      else (float(self.flow_threshold.value), float(self.cellprob_threshold.value)))
        return SegmentSettings(model, float(self.diameter.value) or None,
                               (int(self.cyto_channel.value), int(self.nucleus_channel.value)), *thresholds)

    def _layer_data(self):
        layer = self.image_layer.value
        if layer is None:
            raise ValueError("choose an image layer to segment")
        return layer, (-1 if layer.rgb else None)

    def make_estimate_job(self):
        layer, channel_axis = self._layer_data()
        settings, data, cancel = self.settings(), layer.data, self.cancel_token

        def job():
            yield 0, 1, "estimating the diameter: Cellpose at the model's own diameter"
            value = yield from in_thread(
                lambda report: estimate_diameter(np.asarray(data), settings, channel_axis, cancel=cancel), cancel)
            yield 1, 1
            return value
        return job

    def show_estimate(self, value: float) -> None:
        self.diameter.value = round(value, 1)
        self.status.value = f"estimated diameter {value:.1f} px"

    def make_job(self):
        layer, channel_axis = self._layer_data()
        settings, data, cancel = self.settings(), layer.data, self.cancel_token

        def job():
            model = load_model(settings.model)
            labels = yield from segment(np.asarray(data), settings, channel_axis, model, cancel)
            return layer, labels
        return job

    def show_result(self, value) -> None:
        layer, labels = value
        name = f"{layer.name} objects"
        if name in self._viewer.layers:
            self._viewer.layers[name].data = labels
        else:
            self._viewer.add_labels(labels, name=name, scale=layer.scale[:labels.ndim] if labels.ndim == layer.ndim
                                    else layer.scale[-labels.ndim:], translate=layer.translate[-labels.ndim:])
        self.status.value = object_count(labels)


def object_count(labels: np.ndarray) -> str:
    """"36 objects" for an image; "31–40 objects per frame (mean 35.2)" for a stack of frames."""
    if labels.ndim == 2:
        return f"{len(np.unique(labels)) - 1} objects"
    counts = [len(np.unique(frame)) - 1 for frame in labels]
    return f"{min(counts)}–{max(counts)} objects per frame (mean {np.mean(counts):.1f}, {len(counts)} frames)"
