"""The Generate-from-DAPI dock widget: DAPI layer + chromosome labels + BBDM or CycleGAN bundle → synthetic FISH."""

from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, Container, FileEdit, FloatSpinBox, PushButton, SpinBox, create_widget
from napari.viewer import Viewer

from ..core.jobs import default_of
from ..core.outputs import save_images
from ..core.runtime import OnnxModel
from ..core.translate import TranslationSettings, composite, translate
from .base import JobWidget, chosen_path, zoo_picker

PROVENANCE_KEY = "cellsynth_provenance"


class TranslateWidget(JobWidget):
    run_text = "Generate from DAPI"

    def __init__(self, viewer: Viewer):
        import napari

        self.dapi_layer = create_widget(annotation=napari.layers.Image, label="DAPI")
        self.labels_layer = create_widget(annotation=napari.layers.Labels, label="chromosomes")
        self.bundle = FileEdit(mode="d", label="BBDM or CycleGAN bundle")
        self.steps = SpinBox(value=default_of(TranslationSettings, "steps"), min=2, max=10_000, label="steps")
        self.eta = FloatSpinBox(value=default_of(TranslationSettings, "eta"), min=0.0, max=2.0, step=0.1, label="η")
        self.seed = SpinBox(value=default_of(TranslationSettings, "seed"), min=0, max=2**31 - 1, label="seed")
        self.batch_size = SpinBox(value=default_of(TranslationSettings, "batch_size"), min=1, max=1024, label="batch size")
        self.paste = CheckBox(value=True, text="composite: paste in place")
        self.zoo = zoo_picker(self.bundle, ("bbdm", "cyclegan"))
        super().__init__(viewer, [self.dapi_layer, self.labels_layer, self.zoo, self.bundle, self.steps, self.eta,
                                  self.seed, self.batch_size, self.paste])
        self.save_folder = FileEdit(mode="d", label="save to")
        self.save_button = PushButton(text="Save layer's crops")
        self.extend([Container(widgets=[self.save_folder, self.save_button], layout="horizontal", labels=False)])
        self.save_button.changed.connect(self.save_selected)

    def settings(self) -> TranslationSettings:
        return TranslationSettings(int(self.steps.value), float(self.eta.value), int(self.seed.value),
                                   int(self.batch_size.value))

    def make_job(self):
        dapi, labels = self.dapi_layer.value, self.labels_layer.value
        if dapi is None or labels is None:
            raise ValueError("choose the DAPI image layer and the chromosome labels layer")
        bundle = chosen_path(self.bundle, "a BBDM or CycleGAN bundle folder")
        settings, paste = self.settings(), bool(self.paste.value)
        dapi_data, labels_data = np.asarray(dapi.data), np.asarray(labels.data)

        def job():
            model = OnnxModel(bundle)
            result = yield from translate(model, dapi_data, labels_data, settings)
            return result, composite(result, labels_data) if paste else None, dapi
        return job

    def show_result(self, outcome) -> None:
        result, pasted, dapi = outcome
        record = {**result.provenance, "labels": result.labels.tolist()}
        name = f"synthetic FISH ({record['steps']} steps, seed {record['seed']})"
        rgb = result.images.shape[1] == 3
        self._viewer.add_image(np.moveaxis(result.images, 1, -1) if rgb else result.images, name=name, rgb=rgb,
                               metadata={PROVENANCE_KEY: record},
                               axis_labels=("chromosome", "y", "x") if rgb else ("chromosome", "channel", "y", "x"))
        if pasted is not None:
            self._viewer.add_image(np.moveaxis(pasted, 0, -1) if rgb else pasted, name=f"{name} composite",
                                   rgb=rgb, scale=dapi.scale, translate=dapi.translate, blending="additive",
                                   metadata={PROVENANCE_KEY: record})
        self.status.value = f"{len(result.images)} synthetic chromosomes from {dapi.name}"

    def save_selected(self, value=None) -> list[Path]:
        layer = self._viewer.layers.selection.active
        if layer is None or PROVENANCE_KEY not in getattr(layer, "metadata", {}) or layer.data.ndim != 4:
            self.status.value = "error: select a 'synthetic FISH' crop layer to save"
            return []
        images = np.moveaxis(layer.data, -1, 1) if layer.rgb else layer.data
        try:
            folder = chosen_path(self.save_folder, "a folder to save the crops to")
        except ValueError as err:
            self._error(err)
            return []
        paths = save_images(folder, images, layer.metadata[PROVENANCE_KEY])
        self.status.value = f"saved {len(paths)} crops to {folder}"
        return paths
