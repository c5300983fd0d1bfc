"""Synthetic FISH chromosomes from a DAPI image and its chromosome labels, with a BBDM or CycleGAN bundle.

Each labelled chromosome is cut from the DAPI plane exactly as the M-FISH data set builder cut the
training pairs (square window, 10 % margin, kept at scale when it fits, pixels of other objects
set to 0), bridged from DAPI to the bundle's FISH channels with the shared numpy bridge sampler
(BBDM, paper 004) or mapped by one generator pass (CycleGAN, the paper's baseline), and masked to the
chromosome's own pixels.  Batch ``b`` draws its noise from
``numpy.random.default_rng([seed, b])``, so a run is reproducible.  :func:`composite` pastes the
synthetic chromosomes back in place.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
from skimage.transform import resize

from .crops import extract_object_crops
from .images import ImageInputError, denormalize, normalize
from .pipeline import batch_sizes, seeded_batches
from .provenance import model_provenance
from .runtime import OnnxModel
from .samplers import bridge

MARGIN = 0.1  # the data set builder's margin


@dataclass
class TranslationSettings:
    steps: int = 200  # a bridge's steps (a CycleGAN makes its crops in one pass)
    eta: float = 1.0
    seed: int = 0
    batch_size: int = 16

    def network_calls(self, model: OnnxModel) -> int:
        """Network passes per batch: the bridge's steps, or one generator pass."""
        return TRANSLATORS[model.card.kind].network_calls(self)

    def check(self, model: OnnxModel) -> None:
        if model.card.kind not in TRANSLATORS:
            raise ValueError(f"bundle '{model.card.name}' is a '{model.card.kind}' bundle; generating from DAPI "
                             f"needs one of {KINDS}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, got {self.seed}")
        TRANSLATORS[model.card.kind].check(self, model)


class BridgeTranslator:
    """A BBDM bundle (paper 004): the shared numpy bridge sampler from DAPI to FISH around ``f(x_t, t)``."""

    sampler = "bridge"

    def network_calls(self, settings: TranslationSettings) -> int:
        return settings.steps

    def check(self, settings: TranslationSettings, model: OnnxModel) -> None:
        total = model.card.bridge.schedule.num_timesteps
        if not 2 <= settings.steps <= total:
            raise ValueError(f"steps must be between 2 and the bridge's {total} timesteps, got {settings.steps}")
        if not settings.eta >= 0 or settings.eta == float("inf"):  # NaN fails the first test
            raise ValueError(f"η must be 0 (deterministic) or more, got {settings.eta}")

    def run(self, model: OnnxModel, y: np.ndarray, settings: TranslationSettings, rng: np.random.Generator):
        output = model.card.output_name

        def net(x, t):
            return model.run(model.card.feeds(x, t))[output]

        return (yield from bridge(net, y, model.card.bridge.schedule, settings.steps, rng, settings.eta))


class CycleGanTranslator:
    """A CycleGAN bundle (the paper's baseline): one generator pass per crop; steps and η do not apply."""

    sampler = "generator"

    def network_calls(self, settings: TranslationSettings) -> int:
        return 1

    def check(self, settings: TranslationSettings, model: OnnxModel) -> None:
        return None

    def run(self, model: OnnxModel, y: np.ndarray, settings: TranslationSettings, rng: np.random.Generator):
        yield 0, 1
        x = model.run(model.card.feeds(y))[model.card.output_name]
        yield 1, 1
        return x


# bundle kind → how it translates; callers never branch on the kind
TRANSLATORS = {"bbdm": BridgeTranslator(), "cyclegan": CycleGanTranslator()}
KINDS = tuple(TRANSLATORS)


@dataclass
class Translated:
    labels: np.ndarray  # (N,) chromosome ids in the labels image
    dapi: np.ndarray  # N×1×H×W uint8: the DAPI crops that went in
    images: np.ndarray  # N×C×H×W in the bundle's dtype: synthetic FISH, zero outside the chromosome
    masks: np.ndarray  # N×H×W bool: each crop's own chromosome pixels
    boxes: np.ndarray  # N×4 windows (row0, col0, row1, col1) in image pixels
    provenance: dict = field(default_factory=dict)


def check_inputs(dapi: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dapi, labels = np.asarray(dapi), np.asarray(labels)
    if dapi.ndim != 2:
        raise ImageInputError(f"the DAPI image must be one 2-D plane (H×W), got shape {dapi.shape}; "
                              "for a stack or a multichannel image, pick the DAPI plane of one frame first")
    if labels.shape != dapi.shape:
        raise ImageInputError(f"the labels are {labels.shape} but the DAPI plane is {dapi.shape}; "
                              "choose the labels layer that was segmented from this DAPI image")
    if labels.dtype.kind not in "iu":
        raise ImageInputError(f"labels must hold integer chromosome ids, got dtype {labels.dtype}")
    if dapi.dtype.kind not in "iuf":
        raise ImageInputError(f"the DAPI plane must be numeric, got dtype {dapi.dtype}")
    finite = np.isfinite(dapi) if dapi.dtype.kind == "f" else np.ones(1, bool)
    if not finite.all():
        raise ImageInputError("the DAPI plane contains NaN or infinite pixels; fill them first")
    if dapi.min() < 0 or dapi.max() > 255:
        raise ImageInputError(f"the bundle was trained on 8-bit DAPI (0–255) but this plane spans "
                              f"{dapi.min()}–{dapi.max()}; rescale it to 8 bits first")
    return dapi, labels


def chromosome_crops(dapi: np.ndarray, labels: np.ndarray, size: tuple[int, int]):
    """(ids, N×1×H×W uint8 DAPI crops with other objects zeroed, N×H×W own-pixel masks, boxes)."""
    dapi, labels = check_inputs(dapi, labels)
    stack = np.stack([dapi.astype(np.float32), labels.astype(np.float32)])
    objects = extract_object_crops(stack, labels, size, margin=MARGIN, keep_scale=True)
    masks = np.abs(objects.crops[:, 1] - objects.labels[:, None, None]) < 0.5
    crops = np.where(masks, objects.crops[:, 0], 0).round().clip(0, 255).astype(np.uint8)[:, None]
    return objects.labels, crops, masks, objects.boxes


def provenance(model: OnnxModel, settings: TranslationSettings) -> dict:
    return model_provenance(model) | {
        "class": model.card.classes[0], "sampler": TRANSLATORS[model.card.kind].sampler,
        "steps": settings.network_calls(model), "eta": settings.eta, "seed": settings.seed,
        "batch_size": settings.batch_size, "condition": model.card.condition.channels}


def translate_crops(model: OnnxModel, crops: np.ndarray, masks: np.ndarray, settings: TranslationSettings,
                    first_batch: int = 0) -> Generator[tuple[int, int], None, np.ndarray]:
    """Yield ``(network calls done, total)``; return N×C×H×W synthetic FISH for N×1×H×W 8-bit DAPI crops,
    zero outside ``masks`` (N×H×W, each crop's own chromosome pixels).  ``first_batch``: the crops are batches
    ``first_batch`` … of a longer run made in parts (their noise is that run's)."""
    settings.check(model)
    card = model.card
    crops, masks = np.asarray(crops), np.asarray(masks, bool)
    if crops.ndim != 4 or crops.shape[1] != 1 or tuple(crops.shape[-2:]) != tuple(card.image_size):
        raise ImageInputError(f"DAPI crops must be N×1×{card.image_size[0]}×{card.image_size[1]} for bundle "
                              f"'{card.name}', got shape {crops.shape}")
    if masks.shape != (crops.shape[0], *crops.shape[-2:]):
        raise ImageInputError(f"masks must be {(crops.shape[0], *crops.shape[-2:])} (one per crop), got {masks.shape}")
    y = np.repeat(normalize(crops, card.condition.normalization), card.n_channels, axis=1)

    def run_batch(b: int, n: int, rng: np.random.Generator):
        part = slice(b * settings.batch_size, b * settings.batch_size + n)
        x = yield from TRANSLATORS[card.kind].run(model, y[part], settings, rng)
        raw = denormalize(x, card.normalization, card.input.get("dtype", "uint8"), card.input.get("value_range"))
        return np.where(masks[part][:, None], raw, 0).astype(raw.dtype)

    images = yield from seeded_batches(batch_sizes(len(crops), settings.batch_size), settings.network_calls(model),
                                       settings.seed, run_batch, first_batch=first_batch)
    empty = np.zeros((0, card.n_channels, *crops.shape[-2:]), card.input.get("dtype", "uint8"))
    return np.concatenate(images) if images else empty


def translate(model: OnnxModel, dapi: np.ndarray, labels: np.ndarray,
              settings: TranslationSettings) -> Generator[tuple[int, int], None, Translated]:
    """Yield ``(network calls done, total)``; return one synthetic FISH crop per labelled chromosome."""
    settings.check(model)
    ids, crops, masks, boxes = chromosome_crops(dapi, labels, model.card.image_size)
    images = yield from translate_crops(model, crops, masks, settings)
    return Translated(ids, crops, images, masks, boxes, provenance(model, settings))


def classifier_crops(dapi: np.ndarray, planes: np.ndarray, channels: int) -> np.ndarray:
    """Synthetic chromosomes as a classifier of ``channels`` channels reads them: the DAPI crops (N×1×H×W) then the
    generated planes (N×C×H×W), or the planes alone."""
    if channels == planes.shape[1] + 1:
        return np.concatenate([dapi.astype(planes.dtype), planes], axis=1)
    if channels == planes.shape[1]:
        return planes
    raise ImageInputError(f"the classifier reads {channels} channel(s) but the generator makes {planes.shape[1]} "
                          "plane(s); give a classifier of the planes, or of DAPI and them")


def composite(result: Translated, labels: np.ndarray) -> np.ndarray:
    """C×H×W image with every synthetic chromosome pasted over its own pixels of ``labels`` (background 0)."""
    labels = np.asarray(labels)
    height, width = labels.shape
    out = np.zeros((result.images.shape[1], height, width), result.images.dtype)
    for image, object_id, box in zip(result.images, result.labels, result.boxes):
        top, left, bottom, right = (int(v) for v in box)
        side = bottom - top
        if side != image.shape[-1]:  # a chromosome larger than the crop was scaled down: scale back
            image = resize(image, (image.shape[0], side, side), order=1, preserve_range=True).round()
        r0, c0, r1, c1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)
        own = labels[r0:r1, c0:c1] == object_id
        region = out[:, r0:r1, c0:c1]
        region[:] = np.where(own[None], image[:, r0 - top:r1 - top, c0 - left:c1 - left], region).astype(out.dtype)
    return out
