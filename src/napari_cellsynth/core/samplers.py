"""Diffusion samplers: one signature, a registry, and the timestep spacings built outside them.

Every DDPM-family sampler is a generator with the signature ::

    sampler(denoise, x, schedule, ts, rng, **options) -> Sampling

* ``denoise``: a :class:`~.denoisers.Denoiser` (x_t, t ↦ x̂_0; prediction type, guidance and
  thresholding are handled there, once);
* ``x``: the starting noise; ``schedule``: the :class:`~.schedules.NoiseSchedule` the network was
  trained with; ``ts``: the descending timesteps to visit (:func:`timesteps`); ``rng``: a numpy
  generator (ignored by deterministic samplers);
* options: ``eta`` for DDIM.

It yields ``(step, total)`` after each denoising step and returns the final ``x``;
:func:`napari_cellsynth.core.jobs.run_to_end` drives one without a GUI.  :data:`SAMPLERS` maps
names to :class:`SamplerSpec`; adding a sampler is adding a function and a line there.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from .denoisers import Denoiser
from .schedules import BridgeSchedule, NoiseSchedule

ModelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Sampling = Generator[tuple[int, int], None, np.ndarray]
SPACINGS = ("leading", "trailing", "linspace")
MIN_ALPHA_BAR = 2.0 ** -24  # where a zero-terminal-SNR schedule reaches ᾱ = 0, log-SNR solvers use this


def timesteps(num_timesteps: int, steps: int, spacing: str = "leading") -> np.ndarray:
    """Descending timesteps to visit, ``steps`` of them, from T-1 (or near it) down to 0.

    ``leading`` ends on t = 0; ``trailing`` starts on t = T-1 (the pure-noise step of a zero-terminal-
    SNR schedule; Lin et al. 2024 recommend it); ``linspace`` covers both ends."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be between 1 and the schedule's {num_timesteps} timesteps, got {steps}")
    if spacing == "leading":
        ts = np.arange(steps) * (num_timesteps // steps)
    elif spacing == "trailing":
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(int)[::-1] - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, num_timesteps - 1, steps)).astype(int)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose from {SPACINGS}")
    return np.unique(ts)[::-1].astype(np.int64)


def ddim(denoise: Denoiser, x: np.ndarray, schedule: NoiseSchedule, ts: np.ndarray, rng: np.random.Generator,
         eta: float = 0.0) -> Sampling:
    """DDIM (Song et al. 2021); η = 0 deterministic, η = 1 the DDPM posterior between visited steps."""
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    x = x.astype(np.float64)
    ab = schedule.alpha_bar
    for i, t in enumerate(ts):
        x0 = denoise(x, int(t))
        eps = denoise.epsilon(x, x0, int(t))
        ab_next = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
        sigma = eta * np.sqrt((1 - ab_next) / (1 - ab[t]) * (1 - ab[t] / ab_next))
        x = np.sqrt(ab_next) * x0 + np.sqrt(max(1 - ab_next - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * rng.standard_normal(x.shape)
        yield i + 1, len(ts)
    return x.astype(np.float32)


def ddpm(denoise: Denoiser, x: np.ndarray, schedule: NoiseSchedule, ts: np.ndarray,
         rng: np.random.Generator) -> Sampling:
    """Ancestral sampling (Ho et al. 2020): the posterior q(x_s | x_t, x̂_0) with variance β̃ between
    visited steps, which over all T steps is the DDPM sampler (DDIM with η = 1 is the same chain)."""
    return (yield from ddim(denoise, x, schedule, ts, rng, eta=1.0))


def _log_snr_grid(schedule: NoiseSchedule, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ab = np.maximum(schedule.alpha_bar[ts], MIN_ALPHA_BAR)
    alpha, sigma = np.sqrt(ab), np.sqrt(1 - ab)
    return alpha, sigma, np.log(alpha) - np.log(sigma)


def dpm_solver_pp_2m(denoise: Denoiser, x: np.ndarray, schedule: NoiseSchedule, ts: np.ndarray,
                     rng: np.random.Generator | None = None) -> Sampling:
    """DPM-Solver++(2M) (Lu et al. 2022): data prediction, multistep, second order; deterministic."""
    return (yield from _dpm_solver_pp(denoise, x, schedule, ts, order=2))


def dpm_solver_pp_3m(denoise: Denoiser, x: np.ndarray, schedule: NoiseSchedule, ts: np.ndarray,
                     rng: np.random.Generator | None = None) -> Sampling:
    """DPM-Solver++(3M): the third-order multistep update (k-diffusion's ``sample_dpmpp_3m_sde`` with
    η = 0, written for a variance-preserving x_t); first and second order on the first two steps."""
    return (yield from _dpm_solver_pp(denoise, x, schedule, ts, order=3))


def _dpm_solver_pp(denoise: Denoiser, x: np.ndarray, schedule: NoiseSchedule, ts: np.ndarray, order: int) -> Sampling:
    x = x.astype(np.float64)
    alpha, sigma, lam = _log_snr_grid(schedule, ts)
    history: list[tuple[np.ndarray, float]] = []  # (x̂_0, step size h that followed it), newest first
    for i, t in enumerate(ts):
        x0 = denoise(x, int(t))
        if i + 1 == len(ts):  # last step: to the clean image
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            update = x0
            if history and order == 2:
                r = history[0][1] / h
                update = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * history[0][0]
            x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * np.expm1(-h) * update
            if order == 3 and history:
                phi_2 = np.expm1(-h) / h + 1
                if len(history) >= 2:
                    (x0_1, h_1), (x0_2, h_2) = history[0], history[1]
                    r0, r1 = h_1 / h, h_2 / h
                    d1_0, d1_1 = (x0 - x0_1) / r0, (x0_1 - x0_2) / r1
                    d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                    d2 = (d1_0 - d1_1) / (r0 + r1)
                    x = x + alpha[i + 1] * (phi_2 * d1 - (phi_2 / h - 0.5) * d2)
                else:
                    x = x + alpha[i + 1] * phi_2 * (x0 - history[0][0]) / (history[0][1] / h)
            history = [(x0, h), *history[:1]]
        yield i + 1, len(ts)
    return x.astype(np.float32)


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, whether it always walks all T steps, its options."""

    fn: Callable[..., Sampling]
    all_steps: bool = False
    options: tuple[str, ...] = ()


SAMPLERS: dict[str, SamplerSpec] = {
    "ddim": SamplerSpec(ddim, options=("eta",)),
    "dpm_solver_pp_2m": SamplerSpec(dpm_solver_pp_2m),
    "dpm_solver_pp_3m": SamplerSpec(dpm_solver_pp_3m),
    "ddpm": SamplerSpec(ddpm, all_steps=True),
}


def sampler_timesteps(name: str, schedule: NoiseSchedule, steps: int, spacing: str) -> np.ndarray:
    """The timesteps sampler ``name`` visits: all T for DDPM, else ``steps`` with ``spacing``."""
    spec = SAMPLERS[name]
    return timesteps(schedule.num_timesteps, schedule.num_timesteps if spec.all_steps else steps,
                     "leading" if spec.all_steps else spacing)


def run_sampler(name: str, denoise: Denoiser, x: np.ndarray, schedule: NoiseSchedule, ts: np.ndarray,
                rng: np.random.Generator, **options) -> Sampling:
    """Dispatch through the registry; an option the sampler does not take is an error."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    spec = SAMPLERS[name]
    unknown = {k for k, v in options.items() if v is not None} - set(spec.options)
    if unknown:
        raise ValueError(f"sampler {name!r} takes no option {sorted(unknown)}; it takes {list(spec.options) or 'none'}")
    return spec.fn(denoise, x, schedule, ts, rng, **{k: v for k, v in options.items() if v is not None})


def _predict(model_fn: ModelFn, x: np.ndarray, t: int) -> np.ndarray:
    out = model_fn(x, np.full(len(x), t, dtype=np.int64))
    if out.shape != x.shape:
        raise ValueError(f"model returned shape {out.shape} for input {x.shape}")
    return out.astype(np.float64)


def bridge_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """BBDM's skip sampling: ``steps`` descending timesteps from T to 1, then 0 (e.g. 200 of 1000)."""
    if not 2 <= steps <= num_timesteps:
        raise ValueError(f"bridge steps must be between 2 and {num_timesteps}, got {steps}")
    return np.unique(np.round(np.linspace(0, num_timesteps, steps + 1)).astype(np.int64))[::-1]


def bridge(model_fn: ModelFn, y: np.ndarray, schedule: BridgeSchedule, steps: int, rng: np.random.Generator,
           eta: float = 1.0) -> Sampling:
    """Brownian-bridge sampling (BBDM) from the condition y (x_T = y) to x_0.

    ``model_fn(x_t, t)`` predicts x_t - x_0 = m_t (y - x_0) + sqrt(δ_t) ε (the BBDM objective); each
    step uses the bridge posterior between the visited timesteps, with its noise scaled by η.
    """
    y = y.astype(np.float64)
    x = y.copy()
    m, delta = schedule.m, schedule.delta
    ts = bridge_timesteps(schedule.num_timesteps, steps)
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
        prediction = _predict(model_fn, x.astype(np.float32), int(t))
        x0 = x - prediction
        if s == 0:
            x = x0
        else:
            var_t, var_s = delta[t], delta[s]
            if var_t <= 0:  # t = T: x_T = y carries no noise, the posterior is the bridge's marginal at s
                sigma2, carried = var_s, 0.0
            else:
                sigma2 = (var_t - var_s * (1 - m[t]) ** 2 / (1 - m[s]) ** 2) * var_s / var_t
                carried = np.sqrt(max(var_s - sigma2, 0.0) / var_t) * (x - (1 - m[t]) * x0 - m[t] * y)
            mean = (1 - m[s]) * x0 + m[s] * y + carried
            x = mean + eta * np.sqrt(max(sigma2, 0.0)) * rng.standard_normal(x.shape)
        yield i + 1, len(ts) - 1
    return x.astype(np.float32)

