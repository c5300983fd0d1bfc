"""The Generate dock widget: a DDPM bundle, a class and sampler settings → a new image layer."""

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, PushButton, SpinBox
from napari.viewer import Viewer

from ..core.bundle import BundleError, check_kind, read_card
from ..core.generate import (DEFAULT_SAMPLER, DEFAULT_STEPS, GENERATOR_KINDS, GENERATORS, THRESHOLDS,
                             GenerationSettings, generate)
from ..core.jobs import default_of
from ..core.outputs import save_images
from ..core.runtime import OnnxModel
from ..core.samplers import SAMPLERS, SPACINGS
from .base import JobWidget, chosen_bundle, chosen_path, zoo_picker

PROVENANCE_KEY = "cellsynth_provenance"


class GenerateWidget(JobWidget):
    run_text = "Generate"

    def __init__(self, viewer: Viewer):
        self.bundle = FileEdit(mode="d", label="DDPM or GAN bundle")
        # the choices come from the chosen bundle: a callable, so that magicgui's reset_choices (run whenever a
        # layer is added or removed) asks for them again instead of putting back an empty list
        self._classes: list[str] = []
        self.class_name = ComboBox(choices=self._class_choices, label="class")
        self.count = SpinBox(value=16, min=1, max=100_000, label="count")
        self.sampler = ComboBox(choices=list(SAMPLERS), value=DEFAULT_SAMPLER, label="sampler")
        self.steps = SpinBox(value=DEFAULT_STEPS, min=1, max=10_000, label="steps")
        self.spacing = ComboBox(choices=["auto", *SPACINGS], value="auto", label="spacing",
                                tooltip="auto: trailing for v-prediction bundles, leading for ε ones")
        self.guidance = FloatSpinBox(value=default_of(GenerationSettings, "guidance"), min=0.0, max=20.0, step=0.5,
                                     label="guidance", tooltip="1: plain conditioning; above 1 the class is pushed harder")
        self.guidance_from = FloatSpinBox(value=0.0, min=0.0, max=1000.0, step=0.05, label="guide above σ",
                                          tooltip="guidance acts only at noise levels σ in (this, the next field]; "
                                                  "0 and 0: every step (Kynkäänniemi et al. 2024)")
        self.guidance_to = FloatSpinBox(value=0.0, min=0.0, max=1e6, step=0.5, label="guide up to σ",
                                        tooltip="upper noise level of guidance (0: no upper limit)")
        self.guide = FileEdit(mode="d", label="guide bundle",
                              tooltip="autoguidance (Karras et al. 2024): a weaker DDPM bundle of the same data as "
                                      "guidance's reference; blank: the generator's own unconditional prediction")
        self.eta = FloatSpinBox(value=default_of(GenerationSettings, "eta"), min=0.0, max=1.0, step=0.1, label="DDIM η")
        self.clip_x0 = FloatSpinBox(value=0.0, min=0.0, max=100.0, step=0.5, label="clip x₀ (0 = off)",
                                    tooltip="clip each x₀ estimate to ± this value (normalised scale)")
        self.threshold = ComboBox(choices=["none", *THRESHOLDS], value="none", label="x₀ threshold",
                                  tooltip="static: the training crops' per-channel range (from the card); "
                                          "dynamic: Imagen's percentile thresholding")
        self.seed = SpinBox(value=default_of(GenerationSettings, "seed"), min=0, max=2**31 - 1, label="seed")
        self.batch_size = SpinBox(value=default_of(GenerationSettings, "batch_size"), min=1, max=1024, label="batch size")
        self.zoo = zoo_picker(self.bundle, GENERATOR_KINDS)
        super().__init__(viewer, [self.zoo, self.bundle, self.class_name, self.count, self.sampler, self.steps, self.spacing,
                                  self.guidance, self.guidance_from, self.guidance_to, self.guide, self.eta,
                                  self.clip_x0, self.threshold, self.seed, self.batch_size])
        self.save_folder = FileEdit(mode="d", label="save to")
        self.save_button = PushButton(text="Save layer's images")
        self.extend([Container(widgets=[self.save_folder, self.save_button], layout="horizontal", labels=False)])
        self.bundle.changed.connect(self._bundle_changed)
        self.save_button.changed.connect(self.save_selected)

    def _class_choices(self, widget=None) -> list[str]:
        return list(self._classes)

    def _bundle_changed(self, value=None) -> None:
        try:
            bundle = chosen_path(self.bundle, "a DDPM or GAN bundle folder")
        except ValueError as err:  # the field was cleared: no bundle, no classes
            self._classes = []
            self.class_name.reset_choices()
            self.status.value = str(err)
            return
        try:
            card = read_card(bundle)
            check_kind(card, GENERATOR_KINDS, str(self.bundle.value))
        except BundleError as err:
            self._classes = []
            self.class_name.reset_choices()
            self.status.value = f"error: {err}"
            return
        self._classes = list(card.classes)
        self.class_name.reset_choices()
        if card.rarest_class is not None:  # the rare class is what a user comes to generate
            self.class_name.value = card.rarest_class
        self.status.value = f"{card.kind} bundle '{card.name}', {card.n_channels} channel(s), " \
                            f"{card.image_size[0]}×{card.image_size[1]}" + \
                            (f" ({GENERATORS[card.kind].note})" if GENERATORS[card.kind].note else "")

    def settings(self) -> GenerationSettings:
        return GenerationSettings(self.class_name.value, int(self.count.value), self.sampler.value,
                                  int(self.steps.value), float(self.guidance.value), int(self.seed.value),
                                  float(self.eta.value), None if self.spacing.value == "auto" else self.spacing.value,
                                  int(self.batch_size.value), float(self.clip_x0.value) or None,
                                  None if self.threshold.value == "none" else self.threshold.value,
                                  guidance_interval=self.guidance_interval(), guide=self.guide_bundle())

    def guidance_interval(self) -> tuple[float, float] | None:
        low, high = float(self.guidance_from.value), float(self.guidance_to.value)
        if low == 0 and high == 0:
            return None
        return low, high if high > 0 else float("inf")

    def guide_bundle(self) -> str | None:
        if str(self.guide.line_edit.value).strip() in ("", "."):  # left blank: no autoguidance
            return None
        return str(chosen_bundle(self.guide, "a guide bundle"))

    def make_job(self):
        bundle = chosen_bundle(self.bundle, "a DDPM or GAN bundle folder")
        if self.class_name.value is None:
            check_kind(read_card(bundle), GENERATOR_KINDS, str(bundle))  # the bundle's own problem, said exactly
            raise ValueError("choose a class of the bundle")
        settings = self.settings()  # checked against the bundle (and the guide's card) first thing in the job

        def job():
            model = OnnxModel(bundle, kind=GENERATOR_KINDS)
            return (yield from generate(model, settings))
        return job

    def show_result(self, result) -> None:
        record = result.provenance
        name = f"generated {record['class']} ({record['sampler']} {record['steps']}, seed {record['seed']})"
        images = result.images
        low, high = (float(v) for v in np.percentile(images, [0.5, 99.5]))  # the generated cells' own contrast
        layer = self._viewer.add_image(images, name=name, metadata={PROVENANCE_KEY: record},
                                       axis_labels=("image", "channel", "y", "x"),  # the sliders are named
                                       contrast_limits=(low, high if high > low else low + 1))
        # the viewer moves to the new layer's first image: another layer's slider position (image 112 of the
        # sample cells) would show an empty plane of a 16-image layer, and the canvas only the layer below
        self._viewer.layers.selection.active = layer
        self._viewer.dims.set_current_step(self._viewer.dims.ndim - layer.ndim, 0)
        self.status.value = f"{len(images)} images of {record['class']}"

    def save_selected(self, value=None) -> list[Path]:
        layer = self._viewer.layers.selection.active
        if layer is None or PROVENANCE_KEY not in getattr(layer, "metadata", {}):
            self.status.value = "error: select a generated layer to save"
            return []
        try:
            folder = chosen_path(self.save_folder, "a folder to save the images to")
        except ValueError as err:
            self._error(err)
            return []
        paths = save_images(folder, layer.data, layer.metadata[PROVENANCE_KEY])
        self.status.value = f"saved {len(paths)} images to {folder}"
        return paths
