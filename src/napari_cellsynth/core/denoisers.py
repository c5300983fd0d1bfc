"""A diffusion network made into a denoiser, x_t ↦ x̂_0, once for every sampler.

The network's raw output (ε, or v = √ᾱ ε - √(1-ᾱ) x_0) is converted to the data prediction x̂_0 here
and nowhere else; classifier-free guidance (:func:`guided`) mixes the raw outputs before that, and a
threshold (:class:`StaticThreshold`, :class:`DynamicThreshold`) bounds x̂_0 after it.  The samplers
(:mod:`.samplers`) see only a :class:`Denoiser`; ε follows from x̂_0 and x_t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .schedules import NoiseSchedule

RawNet = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x_t, t) → the network's prediction


def guided(net: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], classes: np.ndarray,
           null_class: int, scale: float) -> RawNet:
    """out = out(x, ∅) + w (out(x, c) - out(x, ∅)); w = 1 is plain conditioning, w = 0 unconditional.
    Any w other than 0 or 1 evaluates the network on a doubled batch (two calls' worth of work)."""
    classes = np.asarray(classes, dtype=np.int64)

    def model_fn(x, t):
        if scale == 1.0:
            return net(x, t, classes)
        if scale == 0.0:
            return net(x, t, np.full_like(classes, null_class))
        both = net(np.concatenate([x, x]), np.concatenate([t, t]),
                   np.concatenate([classes, np.full_like(classes, null_class)]))
        cond, uncond = np.split(both, 2)
        return uncond + scale * (cond - uncond)

    return model_fn


def calls_per_evaluation(guidance: float) -> int:
    """Network evaluations one denoising step costs: 2 with guidance (conditional + unconditional)."""
    return 1 if guidance in (0.0, 1.0) else 2


@dataclass(frozen=True)
class StaticThreshold:
    """x̂_0 clipped to per-channel bounds in the network's normalised scale (e.g. the range of the
    training crops, recorded in a DDPM card as ``x0_bounds``); a number gives symmetric bounds ±b."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def symmetric(cls, bound: float, channels: int) -> "StaticThreshold":
        if not bound > 0:
            raise ValueError(f"an x₀ clip bound must be positive, got {bound}")
        return cls((-bound,) * channels, (bound,) * channels)

    def __call__(self, x0: np.ndarray) -> np.ndarray:
        shape = (1, -1, *([1] * (x0.ndim - 2)))
        return np.clip(x0, np.reshape(self.low, shape), np.reshape(self.high, shape))

    def record(self) -> dict:
        return {"type": "static", "low": list(self.low), "high": list(self.high)}


@dataclass(frozen=True)
class DynamicThreshold:
    """Imagen's dynamic thresholding (Saharia et al. 2022): per image and channel, s = the
    ``percentile`` of |x̂_0|, at least 1; x̂_0 is clipped to ±s and divided by s, so a prediction
    that drifts past the data's [-1, 1] is pulled back inside instead of saturating."""

    percentile: float = 99.5

    def __post_init__(self):
        if not 50 <= self.percentile <= 100:
            raise ValueError(f"dynamic threshold percentile must be between 50 and 100, got {self.percentile}")

    def __call__(self, x0: np.ndarray) -> np.ndarray:
        axes = tuple(range(2, x0.ndim))
        s = np.maximum(np.percentile(np.abs(x0), self.percentile, axis=axes, keepdims=True), 1.0)
        return np.clip(x0, -s, s) / s

    def record(self) -> dict:
        return {"type": "dynamic", "percentile": self.percentile}


Threshold = StaticThreshold | DynamicThreshold


class Denoiser:
    """``denoiser(x_t, t) → x̂_0`` (float64) for one integer timestep t shared by the batch.

    ``calls`` counts network evaluations (a guided step counts two)."""

    def __init__(self, net: RawNet, schedule: NoiseSchedule, threshold: Threshold | None = None,
                 calls_per_step: int = 1):
        self.net, self.schedule, self.threshold = net, schedule, threshold
        self.calls_per_step = calls_per_step
        self.calls = 0

    def __call__(self, x: np.ndarray, t: int) -> np.ndarray:
        out = self.net(x.astype(np.float32), np.full(len(x), t, dtype=np.int64))
        if out.shape != x.shape:
            raise ValueError(f"model returned shape {out.shape} for input {x.shape}")
        self.calls += self.calls_per_step
        out = out.astype(np.float64)
        ab = self.schedule.alpha_bar[t]
        if self.schedule.prediction == "v":
            x0 = np.sqrt(ab) * x - np.sqrt(1 - ab) * out
        else:
            x0 = (x - np.sqrt(1 - ab) * out) / np.sqrt(ab)
        return x0 if self.threshold is None else self.threshold(x0)

    def epsilon(self, x: np.ndarray, x0: np.ndarray, t: int) -> np.ndarray:
        """The noise implied by x_t and x̂_0: ε = (x_t - √ᾱ_t x̂_0) / √(1-ᾱ_t)."""
        ab = self.schedule.alpha_bar[t]
        return (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
