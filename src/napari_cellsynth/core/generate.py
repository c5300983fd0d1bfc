"""Generate images of a class with a DDPM bundle through ONNX Runtime and the numpy samplers.

Batch ``b`` of a run draws all its randomness from ``numpy.random.default_rng([seed, b])``, so a
run is reproducible and a batch run can skip batches already on disk and still produce the same
images as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .images import denormalize
from .jobs import shifted
from .runtime import OnnxModel
from .samplers import SAMPLERS, SPACINGS, as_epsilon, ddim, ddpm, dpm_solver_pp_2m, guided
from .schedules import NoiseSchedule


@dataclass
class GenerationSettings:
    class_name: str
    count: int
    sampler: str = "ddim"
    steps: int = 50
    guidance: float = 1.0
    seed: int = 0
    eta: float = 0.0
    spacing: str = "leading"
    batch_size: int = 16
    clip_x0: float | None = None  # clip every x₀ estimate to ±clip_x0 (normalised scale); None: off

    def network_calls(self, model: OnnxModel) -> int:
        """Steps a batch takes: DDPM always walks the whole schedule."""
        return model.card.extra["schedule"]["num_timesteps"] if self.sampler == "ddpm" else self.steps

    def check(self, model: OnnxModel) -> None:
        card = model.card
        if self.class_name not in card.classes:
            raise ValueError(f"class {self.class_name!r} is not in bundle '{card.name}'; choose one of {card.classes}")
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")
        total = card.extra["schedule"]["num_timesteps"]
        if self.sampler != "ddpm" and not 1 <= self.steps <= total:
            raise ValueError(f"steps must be between 1 and the schedule's {total}, got {self.steps}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {self.spacing!r}; choose one of {SPACINGS}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.clip_x0 is not None and not self.clip_x0 > 0:
            raise ValueError(f"clip_x0 must be positive (or None to switch clipping off), got {self.clip_x0}")


@dataclass
class Generated:
    images: np.ndarray  # N×C×H×W in the training data's dtype and intensity range
    provenance: dict = field(default_factory=dict)


def provenance(model: OnnxModel, settings: GenerationSettings) -> dict:
    from .. import __version__

    return {"bundle": model.card.name, "bundle_sha256": model.card.files["model.onnx"]["sha256"],
            "kind": model.card.kind, "class": settings.class_name, "sampler": settings.sampler,
            "steps": settings.network_calls(model),
            "eta": settings.eta, "guidance": settings.guidance, "spacing": settings.spacing, "seed": settings.seed,
            "batch_size": settings.batch_size, "clip_x0": settings.clip_x0, "channels": model.card.channels,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "napari_cellsynth": __version__}


def _sampling(model: OnnxModel, settings: GenerationSettings, n: int, rng: np.random.Generator):
    card = model.card
    schedule = NoiseSchedule.from_card(card.extra["schedule"])

    def net(x, t, cls):
        return model.run({"x": x, "t": t, "class": cls})[output]

    output = card.outputs["names"][0]
    fn = as_epsilon(guided(net, np.full(n, card.classes.index(settings.class_name)), card.extra["null_class"],
                           settings.guidance), schedule)
    noise = rng.standard_normal((n, card.n_channels, *card.image_size)).astype(np.float32)
    clip = settings.clip_x0
    if settings.sampler == "ddpm":
        return ddpm(fn, noise, schedule, rng, clip_x0=clip)
    if settings.sampler == "ddim":
        return ddim(fn, noise, schedule, settings.steps, rng, settings.eta, settings.spacing, clip_x0=clip)
    return dpm_solver_pp_2m(fn, noise, schedule, settings.steps, rng, clip_x0=clip)


def generate(model: OnnxModel, settings: GenerationSettings,
             skip_batch: Callable[[int], bool] | None = None,
             on_batch: Callable[[int, np.ndarray], None] | None = None) -> Generator[tuple[int, int], None, Generated]:
    """Yield ``(network calls done, total)``; return the images of the batches not skipped."""
    settings.check(model)
    n_batches = -(-settings.count // settings.batch_size)
    sizes = [min(settings.batch_size, settings.count - b * settings.batch_size) for b in range(n_batches)]
    steps_per_batch = settings.network_calls(model)
    total, done, images = n_batches * steps_per_batch, 0, []
    yield 0, total
    for b, n in enumerate(sizes):
        if skip_batch is not None and skip_batch(b):
            done += steps_per_batch
            yield done, total
            continue
        rng = np.random.default_rng([settings.seed, b])
        x = yield from shifted(_sampling(model, settings, n, rng), done, total)
        done += steps_per_batch
        raw = denormalize(x, model.card.normalization, model.card.input.get("dtype", "float32"),
                          model.card.input.get("value_range"))
        if on_batch is not None:
            on_batch(b, raw)
        images.append(raw)
    stacked = np.concatenate(images) if images else np.empty((0, model.card.n_channels, *model.card.image_size))
    return Generated(stacked, provenance(model, settings))


def save_images(folder: str | Path, images: np.ndarray, record: dict, first_index: int = 0) -> list[Path]:
    """One TIFF per image (C×H×W), its provenance (with its index) in the TIFF description; atomic writes."""
    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, image in enumerate(images):
        index = first_index + offset
        path = folder / image_name(record, index)
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, image, description=json.dumps({**record, "index": index}), metadata=None)
        with atomic_open(path, "wb") as fh:
            fh.write(buffer.getvalue())
        paths.append(path)
    return paths


def image_name(record: dict, index: int) -> str:
    return f"{record['class']}_seed{record['seed']}_{index:05d}.tif"


def read_provenance(path: str | Path) -> dict:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return json.loads(tif.pages[0].description)
