"""Diffusion samplers as pure numpy functions, shared by training-time checks and the runtime.

Every sampler is a generator ``sampler(model_fn, x, schedule, ..., rng)`` that yields
``(step, total)`` after each network evaluation and returns the final ``x``;
:func:`napari_cellsynth.core.classify.run_to_end` drives one without a GUI.

``model_fn(x, t)`` predicts the noise ε for a batch ``x`` at integer timesteps ``t`` (one per
sample).  Class conditioning and classifier-free guidance wrap a network into such a function
with :func:`guided`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from .schedules import BridgeSchedule, NoiseSchedule

ModelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Sampling = Generator[tuple[int, int], None, np.ndarray]
SPACINGS = ("leading", "trailing", "linspace")


def guided(net: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], classes: np.ndarray,
           null_class: int, scale: float) -> ModelFn:
    """ε = ε(x, ∅) + w (ε(x, c) - ε(x, ∅)); w = 1 is plain conditioning, w = 0 unconditional."""
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


def as_epsilon(model_fn: ModelFn, schedule: NoiseSchedule) -> ModelFn:
    """The samplers work on ε; a v-predicting network (Salimans & Ho 2022) is converted:
    ε = √ᾱ_t v + √(1-ᾱ_t) x_t."""
    if schedule.prediction == "epsilon":
        return model_fn
    root_ab, root_one_minus = np.sqrt(schedule.alpha_bar), np.sqrt(1 - schedule.alpha_bar)

    def eps_fn(x, t):
        shape = (-1, *([1] * (x.ndim - 1)))
        v = model_fn(x, t)
        return (root_ab[t].reshape(shape) * v + root_one_minus[t].reshape(shape) * x).astype(np.float32)

    return eps_fn


def timesteps(num_timesteps: int, steps: int, spacing: str = "leading") -> np.ndarray:
    """Descending timesteps to visit, ``steps`` of them, from T-1 (or near it) down to 0."""
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


def _eps(model_fn: ModelFn, x: np.ndarray, t: int) -> np.ndarray:
    out = model_fn(x, np.full(len(x), t, dtype=np.int64))
    if out.shape != x.shape:
        raise ValueError(f"model returned shape {out.shape} for input {x.shape}")
    return out.astype(np.float64)


def _clipped(x0: np.ndarray, clip_x0: float | None) -> np.ndarray:
    """The x₀ estimate clipped to ±``clip_x0`` (in the network's normalised scale), or unchanged."""
    return x0 if clip_x0 is None else np.clip(x0, -clip_x0, clip_x0)


def ddpm(model_fn: ModelFn, x: np.ndarray, schedule: NoiseSchedule, rng: np.random.Generator,
         clip_x0: float | None = None) -> Sampling:
    """Ancestral DDPM sampling over all T steps (posterior variance β̃_t)."""
    x = x.astype(np.float64)
    ab, ab_prev, betas = schedule.alpha_bar, schedule.alpha_bar_prev(), schedule.betas
    total = schedule.num_timesteps
    for i, t in enumerate(range(total - 1, -1, -1)):
        eps = _eps(model_fn, x.astype(np.float32), t)
        x0 = _clipped((x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t]), clip_x0)
        mean = (np.sqrt(ab_prev[t]) * betas[t] * x0 + np.sqrt(1 - betas[t]) * (1 - ab_prev[t]) * x) / (1 - ab[t])
        if t > 0:
            variance = betas[t] * (1 - ab_prev[t]) / (1 - ab[t])
            x = mean + np.sqrt(variance) * rng.standard_normal(x.shape)
        else:
            x = mean
        yield i + 1, total
    return x.astype(np.float32)


def ddim(model_fn: ModelFn, x: np.ndarray, schedule: NoiseSchedule, steps: int, rng: np.random.Generator,
         eta: float = 0.0, spacing: str = "leading", clip_x0: float | None = None) -> Sampling:
    """DDIM (Song et al. 2021) over ``steps`` timesteps; η = 0 deterministic, η = 1 DDPM-like noise."""
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    x = x.astype(np.float64)
    ts = timesteps(schedule.num_timesteps, steps, spacing)
    ab = schedule.alpha_bar
    for i, t in enumerate(ts):
        eps = _eps(model_fn, x.astype(np.float32), int(t))
        x0 = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])
        if clip_x0 is not None:
            x0 = _clipped(x0, clip_x0)
            eps = (x - np.sqrt(ab[t]) * x0) / np.sqrt(1 - ab[t])
        ab_next = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
        sigma = eta * np.sqrt((1 - ab_next) / (1 - ab[t]) * (1 - ab[t] / ab_next))
        x = np.sqrt(ab_next) * x0 + np.sqrt(max(1 - ab_next - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * rng.standard_normal(x.shape)
        yield i + 1, len(ts)
    return x.astype(np.float32)


def dpm_solver_pp_2m(model_fn: ModelFn, x: np.ndarray, schedule: NoiseSchedule, steps: int,
                     rng: np.random.Generator | None = None, spacing: str = "trailing",
                     clip_x0: float | None = None) -> Sampling:
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep second order; deterministic.

    ``clip_x0`` clips each data prediction (the paper's thresholding, static form)."""
    x = x.astype(np.float64)
    ts = timesteps(schedule.num_timesteps, steps, spacing)
    ab = schedule.alpha_bar
    alpha = np.sqrt(ab[ts])
    sigma = np.sqrt(1 - ab[ts])
    lam = np.log(alpha) - np.log(sigma)
    previous_x0, previous_h = None, None
    for i, t in enumerate(ts):
        eps = _eps(model_fn, x.astype(np.float32), int(t))
        x0 = _clipped((x - sigma[i] * eps) / alpha[i], clip_x0)
        if i + 1 == len(ts):  # last step: to the clean image
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            if previous_x0 is None:
                d = x0
            else:
                r = previous_h / h
                d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * previous_x0
            x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * np.expm1(-h) * d
            previous_x0, previous_h = x0, h
        yield i + 1, len(ts)
    return x.astype(np.float32)


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
        prediction = _eps(model_fn, x.astype(np.float32), int(t))
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


SAMPLERS = {"ddpm": ddpm, "ddim": ddim, "dpm_solver_pp_2m": dpm_solver_pp_2m}
