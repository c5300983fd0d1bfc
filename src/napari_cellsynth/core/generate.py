"""Generate images of a class with a DDPM bundle through ONNX Runtime and the numpy samplers.

Batch ``b`` of a run draws all its randomness from ``numpy.random.default_rng([seed, b])``, so a
run is reproducible and a batch run can skip batches already on disk and still produce the same
images as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .denoisers import Denoiser, DynamicThreshold, Guidance, StaticThreshold, Threshold, guided
from .images import denormalize
from .pipeline import batch_sizes, seeded_batches
from .provenance import bundle_provenance, model_provenance
from .runtime import OnnxModel
from .samplers import SAMPLERS, SPACINGS, run_sampler, sampler_timesteps

THRESHOLDS = ("static", "dynamic")
# What the CLI, the widget and batch runs sample with unless told otherwise: on the zoo's v-prediction generators
# DPM-Solver++(2M) at 20 network calls gives 6.6–8.4 img/s on 2 CPU cores (two machines) with KID at DDPM-1000's
# (docs/results.md §6b), faster and closer to real cells than DDIM at 50.
DEFAULT_SAMPLER, DEFAULT_STEPS = "dpm_solver_pp_2m", 20


@dataclass
class GenerationSettings:
    """What to generate and how.  The sampler fields (sampler … guide) apply to diffusion bundles; a GAN ignores them."""

    class_name: str
    count: int
    sampler: str = DEFAULT_SAMPLER
    steps: int = DEFAULT_STEPS
    guidance: float = 1.0
    seed: int = 0
    eta: float = 0.0  # DDIM only
    spacing: str | None = None  # None: "trailing" for v-prediction bundles, "leading" for ε ones
    batch_size: int = 16
    clip_x0: float | None = None  # clip every x̂₀ to ±clip_x0 (normalised scale); None: off
    threshold: str | None = None  # "static": the card's per-channel x0_bounds; "dynamic": Imagen's
    dynamic_percentile: float = 99.5
    guidance_interval: tuple[float, float] | None = None  # noise levels σ (lo, hi] where guidance acts; None: all
    guide: str | None = None  # autoguidance: a weaker DDPM bundle of the same data (folder or zoo:NAME) as reference

    def make_guidance(self) -> Guidance:
        return Guidance(self.guidance, tuple(self.guidance_interval) if self.guidance_interval else None)

    # -- a diffusion bundle's sampling (DiffusionGenerator below) -------------------------------------------------

    def spacing_for(self, model: OnnxModel) -> str:
        if SAMPLERS[self.sampler].all_steps:
            return "leading"
        if self.spacing is not None:
            return self.spacing
        return "trailing" if model.card.ddpm.schedule.prediction == "v" else "leading"

    def timesteps(self, model: OnnxModel) -> np.ndarray:
        return sampler_timesteps(self.sampler, model.card.ddpm.schedule, self.steps, self.spacing_for(model))

    def network_calls(self, model: OnnxModel) -> int:
        """Network evaluations per image: one per step, two where guidance acts."""
        guidance, sigmas = self.make_guidance(), model.card.ddpm.schedule.sigmas
        return int(sum(guidance.calls(float(sigmas[t])) for t in self.timesteps(model)))

    def make_threshold(self, model: OnnxModel) -> Threshold | None:
        if self.clip_x0 is not None:
            return StaticThreshold.symmetric(self.clip_x0, model.card.n_channels)
        if self.threshold == "static":
            bounds = model.card.ddpm.x0_bounds
            if bounds is None:
                raise ValueError(f"bundle '{model.card.name}' records no x0_bounds for a static threshold; "
                                 "re-export it, or use threshold 'dynamic' or a clip_x0 bound")
            return StaticThreshold(tuple(bounds["low"]), tuple(bounds["high"]))
        if self.threshold == "dynamic":
            return DynamicThreshold(self.dynamic_percentile)
        return None

    def check(self, model: OnnxModel) -> None:
        card = model.card
        if card.kind not in GENERATORS:
            raise ValueError(f"bundle '{card.name}' is a {card.kind} bundle; generation needs a "
                             f"{' or '.join(GENERATORS)} bundle")
        if self.class_name not in card.classes:
            raise ValueError(f"class {self.class_name!r} is not in bundle '{card.name}'; choose one of {card.classes}")
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, got {self.seed}")
        if not 0 <= self.eta <= 1:  # NaN too: DDIM's η runs from 0 (deterministic) to 1 (DDPM's noise)
            raise ValueError(f"eta must be between 0 and 1, got {self.eta}")
        GENERATORS[card.kind].check(self, model)


def guide_model(location: str) -> OnnxModel:
    """The autoguidance reference bundle, loaded once per process and again when its folder's files change (a
    re-exported guide is not served from the cache)."""
    folder = Path(location)
    stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(folder.iterdir()) if f.is_file()) \
        if folder.is_dir() else None  # zoo: names are fixed by their sha256
    return _loaded_guide(location, stamp)


@lru_cache(maxsize=4)
def _loaded_guide(location: str, stamp: tuple | None) -> OnnxModel:
    return OnnxModel(location, kind="ddpm")


def check_guide(model: OnnxModel, guide: OnnxModel) -> None:
    """Autoguidance compares two predictions of the same quantity for the same x_t: the guide must share the
    generator's classes, crop shape, normalisation and noise schedule."""
    ours, theirs = model.card, guide.card
    same = {"classes": (ours.classes, theirs.classes),
            "crop shape": ((ours.n_channels, *ours.image_size), (theirs.n_channels, *theirs.image_size)),
            "normalisation": (ours.normalization, theirs.normalization),
            "noise schedule": (ours.ddpm.schedule.to_card(), theirs.ddpm.schedule.to_card())}
    for what, (a, b) in same.items():
        if a != b:
            raise ValueError(f"guide '{theirs.name}' has another {what} than generator '{ours.name}' ({b} vs {a}); "
                             "autoguidance needs a weaker model trained on the same data with the same schedule")


class DiffusionGenerator:
    """A DDPM bundle (``f(x_t, t, class)``): a numpy sampler of :mod:`.samplers` around ONNX Runtime."""

    note = ""  # what a user should know of this kind's settings (none: every sampler setting applies)

    def check(self, settings: GenerationSettings, model: OnnxModel) -> None:
        s, total = settings, model.card.ddpm.schedule.num_timesteps
        if s.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {s.sampler!r}; choose one of {sorted(SAMPLERS)}")
        if not SAMPLERS[s.sampler].all_steps and not 1 <= s.steps <= total:
            raise ValueError(f"steps must be between 1 and the schedule's {total}, got {s.steps}")
        if s.spacing is not None and s.spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {s.spacing!r}; choose one of {SPACINGS}")
        if s.eta and "eta" not in SAMPLERS[s.sampler].options:
            raise ValueError(f"sampler {s.sampler!r} takes no eta (only ddim does); leave it at 0")
        if s.eta < 0:
            raise ValueError(f"eta must be ≥ 0, got {s.eta}")
        if s.clip_x0 is not None and not s.clip_x0 > 0:
            raise ValueError(f"clip_x0 must be positive (or None to switch clipping off), got {s.clip_x0}")
        if s.threshold is not None and s.threshold not in THRESHOLDS:
            raise ValueError(f"unknown threshold {s.threshold!r}; choose one of {THRESHOLDS}")
        if s.threshold is not None and s.clip_x0 is not None:
            raise ValueError("give either a clip_x0 bound or a threshold, not both")
        s.make_threshold(model)
        s.make_guidance()
        if s.guidance_interval is not None and s.guidance == 1.0:
            raise ValueError("a guidance interval needs a guidance scale other than 1 (1 is plain conditioning)")
        if s.guide is not None:
            if s.guidance == 1.0:
                raise ValueError("a guide bundle needs a guidance scale other than 1, e.g. 1.5 (1 ignores the guide)")
            check_guide(model, guide_model(s.guide))

    def steps(self, settings: GenerationSettings, model: OnnxModel) -> int:
        return len(settings.timesteps(model))

    def record(self, settings: GenerationSettings, model: OnnxModel) -> dict:
        threshold, ts = settings.make_threshold(model), settings.timesteps(model)
        return {"sampler": settings.sampler, "steps": len(ts), "spacing": settings.spacing_for(model),
                "first_timestep": int(ts[0]), "last_timestep": int(ts[-1]),
                "network_calls": settings.network_calls(model),
                "eta": settings.eta if "eta" in SAMPLERS[settings.sampler].options else None,
                "guidance": settings.guidance, "clip_x0": settings.clip_x0,
                "threshold": threshold.record() if threshold else None,
                "prediction": model.card.ddpm.schedule.prediction,
                "guidance_interval": list(settings.guidance_interval) if settings.guidance_interval else None,
                "guide": bundle_provenance(guide_model(settings.guide).card) if settings.guide else None}

    def sample(self, settings: GenerationSettings, model: OnnxModel, n: int, rng: np.random.Generator):
        card = model.card
        schedule = card.ddpm.schedule
        output = card.output_name

        def net(x, t, cls):
            return model.run(card.feeds(x, t, cls))[output]

        reference = None
        if settings.guide:
            guide = guide_model(settings.guide)

            def reference(x, t, cls):
                return guide.run(guide.card.feeds(x, t, cls))[guide.card.output_name]

        raw = guided(net, np.full(n, card.classes.index(settings.class_name)), card.ddpm.null_class,
                     settings.make_guidance(), schedule.sigmas, reference)
        denoise = Denoiser(raw, schedule, settings.make_threshold(model))
        noise = rng.standard_normal((n, card.n_channels, *card.image_size)).astype(np.float32)
        options = {"eta": settings.eta} if "eta" in SAMPLERS[settings.sampler].options else {}
        return run_sampler(settings.sampler, denoise, noise, schedule, settings.timesteps(model), rng, **options)


class GanGenerator:
    """A GAN bundle: one generator pass per image, z ~ N(0, I) (and the class, if conditional); the sampler
    settings do not apply."""

    note = "one pass per image: sampler settings do not apply"

    def check(self, settings: GenerationSettings, model: OnnxModel) -> None:
        return None

    def steps(self, settings: GenerationSettings, model: OnnxModel) -> int:
        return 1

    def record(self, settings: GenerationSettings, model: OnnxModel) -> dict:
        return {"sampler": "gan", "steps": 1, "spacing": None, "first_timestep": 0, "last_timestep": 0,
                "network_calls": 1, "eta": None, "guidance": None, "clip_x0": None, "threshold": None,
                "prediction": "image", "guidance_interval": None, "guide": None}

    def sample(self, settings: GenerationSettings, model: OnnxModel, n: int, rng: np.random.Generator):
        card = model.card
        z = rng.standard_normal((n, card.gan.latent)).astype(np.float32)
        given = (z, np.full(n, card.classes.index(settings.class_name), dtype=np.int64)) if card.gan.conditional else (z,)
        images = model.run(card.feeds(*given))[card.output_name]
        yield 1, 1
        return images


# bundle kind → how it generates; callers never branch on the kind
GENERATORS = {"ddpm": DiffusionGenerator(), "gan": GanGenerator()}
GENERATOR_KINDS = tuple(GENERATORS)


@dataclass
class Generated:
    images: np.ndarray  # N×C×H×W in the training data's dtype and intensity range
    provenance: dict = field(default_factory=dict)


def provenance(model: OnnxModel, settings: GenerationSettings) -> dict:
    """What ran, exactly: the bundle, the sampler with the spacing and step count it used, the
    network evaluations per image, guidance, the threshold, and the seed."""
    return model_provenance(model) | {"class": settings.class_name, "seed": settings.seed,
                                      "batch_size": settings.batch_size} | \
        GENERATORS[model.card.kind].record(settings, model)


def generate(model: OnnxModel, settings: GenerationSettings,
             skip_batch: Callable[[int], bool] | None = None,
             on_batch: Callable[[int, np.ndarray], None] | None = None) -> Generator[tuple[int, int], None, Generated]:
    """Yield ``(network calls done, total)``; return the images of the batches not skipped."""
    settings.check(model)

    kind = GENERATORS[model.card.kind]

    def run_batch(b: int, n: int, rng: np.random.Generator):
        x = yield from kind.sample(settings, model, n, rng)
        raw = denormalize(x, model.card.normalization, model.card.input.get("dtype", "float32"),
                          model.card.input.get("value_range"))
        if on_batch is not None:
            on_batch(b, raw)
        return raw

    images = yield from seeded_batches(batch_sizes(settings.count, settings.batch_size),
                                       kind.steps(settings, model), settings.seed, run_batch, skip_batch)
    stacked = np.concatenate(images) if images else np.empty((0, model.card.n_channels, *model.card.image_size))
    return Generated(stacked, provenance(model, settings))

