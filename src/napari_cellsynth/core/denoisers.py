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
ClassNet = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (x_t, t, class) → prediction


@dataclass(frozen=True)
class Guidance:
    """How far the class pushes each prediction: out = ref + w (out(x, c) - ref).

    ``ref`` is the same network without the class, out(x, ∅) (classifier-free guidance, Ho & Salimans 2022), or a
    weaker network of the same data with the class (autoguidance, Karras et al. 2024: :func:`guided`'s
    ``reference``).  With an ``interval`` (lo, hi], guidance acts only at noise levels σ_t inside it and the plain
    conditional prediction is used elsewhere (Kynkäänniemi et al. 2024: guidance at high noise pulls every sample
    to the class's commonest shape; at low noise it does little).  w = 1 is plain conditioning; w = 0 with no
    reference is the unconditional network."""

    scale: float = 1.0
    interval: tuple[float, float] | None = None  # σ range (lo, hi]; hi may be inf

    def __post_init__(self):
        if not 0 <= self.scale < float("inf"):  # NaN fails too
            raise ValueError(f"guidance scale must be ≥ 0 and finite, got {self.scale}")
        if self.interval is not None:
            lo, hi = (float(v) for v in self.interval)
            if not 0 <= lo < hi:
                raise ValueError(f"guidance interval needs 0 ≤ low < high noise level σ, got {lo}, {hi}")
            object.__setattr__(self, "interval", (lo, hi))

    def active(self, sigma: float) -> bool:
        """Whether guidance acts at noise level ``sigma``."""
        if self.scale == 1.0:
            return False
        return self.interval is None or self.interval[0] < sigma <= self.interval[1]

    def calls(self, sigma: float) -> int:
        """Network evaluations a step at ``sigma`` costs: two where guidance mixes two predictions, else one."""
        return 2 if self.active(sigma) and self.scale != 0.0 else 1


class GuidedNet:
    """``(x_t, t) → prediction`` of one class under a :class:`Guidance`; ``calls(t)`` is what a step costs in network
    evaluations (two where guidance acts: the conditional and the reference)."""

    def __init__(self, net: ClassNet, classes: np.ndarray, null_class: int, guidance: Guidance,
                 sigmas: np.ndarray | None = None, reference: ClassNet | None = None):
        if guidance.interval is not None and sigmas is None:
            raise ValueError("a guidance interval needs the schedule's noise levels")
        self.net, self.reference, self.guidance, self.sigmas = net, reference, guidance, sigmas
        self.classes = np.asarray(classes, dtype=np.int64)
        self.null_class = null_class

    def _sigma(self, t: int) -> float:
        return float(self.sigmas[t]) if self.sigmas is not None else 0.0

    def calls(self, t: int) -> int:
        return self.guidance.calls(self._sigma(t))

    def _reference(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self.reference is not None:
            return self.reference(x, t, self.classes)
        return self.net(x, t, np.full_like(self.classes, self.null_class))

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        scale, classes = self.guidance.scale, self.classes
        if not self.guidance.active(self._sigma(int(t[0]))):
            return self.net(x, t, classes)
        if scale == 0.0:
            return self._reference(x, t)
        if self.reference is not None:
            cond, ref = self.net(x, t, classes), self.reference(x, t, classes)
        else:
            both = self.net(np.concatenate([x, x]), np.concatenate([t, t]),
                            np.concatenate([classes, np.full_like(classes, self.null_class)]))
            cond, ref = np.split(both, 2)
        return ref + scale * (cond - ref)


def guided(net: ClassNet, classes: np.ndarray, null_class: int, scale: float | Guidance,
           sigmas: np.ndarray | None = None, reference: ClassNet | None = None) -> GuidedNet:
    """out = ref + w (out(x, c) - ref), ref = out(x, ∅) or ``reference(x, c)``; see :class:`Guidance`.
    Where guidance acts without a reference, the network runs on a doubled batch (two calls' worth of work)."""
    guidance = scale if isinstance(scale, Guidance) else Guidance(float(scale))
    return GuidedNet(net, classes, null_class, guidance, sigmas, reference)


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
                 calls_per_step: int | None = None):
        self.net, self.schedule, self.threshold = net, schedule, threshold
        self.calls_per_step = calls_per_step  # None: the net's own calls(t) if it has one, else 1
        self.calls = 0

    def __call__(self, x: np.ndarray, t: int) -> np.ndarray:
        out = self.net(x.astype(np.float32), np.full(len(x), t, dtype=np.int64))
        if out.shape != x.shape:
            raise ValueError(f"model returned shape {out.shape} for input {x.shape}")
        if self.calls_per_step is not None:
            self.calls += self.calls_per_step
        else:
            self.calls += self.net.calls(t) if hasattr(self.net, "calls") else 1
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
