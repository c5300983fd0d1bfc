"""Noise schedules, defined once for training and for the runtime samplers (numpy only).

* DDPM/DDIM: ``beta_t`` for t = 0 … T-1 and ``alpha_bar_t = prod(1 - beta)``; kinds ``linear``
  (Ho et al. 2020), ``cosine`` (Nichol & Dhariwal 2021) and ``sigmoid`` (Chen 2023, the schedule of
  paper 003: start, end, τ).
* Brownian bridge (paper 004, eqs. 1–3): ``m_t = t / T`` and ``delta_t = 2 s (m_t - m_t²)``.

A schedule writes itself into a bundle card (``to_card``) and is rebuilt from it (``from_card``),
so a bundle's samplers always use the schedule its network was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_BETA = 0.999


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _betas_from_alpha_bar(alpha_bar_fn, num_timesteps: int) -> np.ndarray:
    """Discretise a continuous alpha_bar(τ), τ ∈ [0, 1], into T betas (clipped at 0.999)."""
    grid = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    alpha_bar = alpha_bar_fn(grid)
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, MAX_BETA)


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    # scaled so that T = 1000 gives the DDPM paper's 1e-4 … 0.02 and other T keep the same total noise
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008) -> np.ndarray:
    def alpha_bar(tau):
        return np.cos((tau + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2

    return _betas_from_alpha_bar(alpha_bar, num_timesteps)


def sigmoid_betas(num_timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    if not end > start or tau <= 0:
        raise ValueError(f"sigmoid schedule needs end > start and tau > 0, got start={start}, end={end}, tau={tau}")
    v_start, v_end = _sigmoid(start / tau), _sigmoid(end / tau)

    def alpha_bar(t):
        return (v_end - _sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)

    return _betas_from_alpha_bar(alpha_bar, num_timesteps)


KINDS = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", Algorithm 1:
    shift and scale √ᾱ_t so that √ᾱ_0 is kept and √ᾱ_{T-1} = 0 (the last step is pure noise, SNR 0).
    Only v- (or x₀-) prediction is well posed at that end; ε-prediction is not."""
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    alpha_bar = root ** 2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas
PREDICTIONS = ("epsilon", "v")


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t and ᾱ_t of a DDPM, and what its network predicts: ε (``"epsilon"``) or v = √ᾱ ε - √(1-ᾱ) x_0."""

    kind: str
    num_timesteps: int
    params: dict = field(default_factory=dict)
    prediction: str = "epsilon"
    zero_terminal_snr: bool = False  # rescaled so that ᾱ_{T-1} = 0 (needs v-prediction)

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {self.prediction!r}; choose from {PREDICTIONS}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown noise schedule {self.kind!r}; choose from {sorted(KINDS)}")
        if self.num_timesteps < 2:
            raise ValueError(f"a schedule needs at least 2 timesteps, got {self.num_timesteps}")
        if self.zero_terminal_snr and self.prediction == "epsilon":
            raise ValueError("a zero-terminal-SNR schedule needs v-prediction: ε carries no information "
                             "about x₀ at the last step")
        betas = KINDS[self.kind](self.num_timesteps, **self.params)
        if self.zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alpha_bar", np.cumprod(1.0 - self.betas))

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def sigmas(self) -> np.ndarray:
        """The noise level of each step as EDM counts it (Karras et al. 2022): σ_t = √((1-ᾱ_t)/ᾱ_t), x_t/√ᾱ_t =
        x_0 + σ_t ε; infinite where ᾱ_t = 0 (the last step of a zero-terminal-SNR schedule)."""
        with np.errstate(divide="ignore"):
            return np.sqrt((1 - self.alpha_bar) / self.alpha_bar)

    def alpha_bar_prev(self) -> np.ndarray:
        return np.concatenate([[1.0], self.alpha_bar[:-1]])

    def add_noise(self, x0: np.ndarray, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
        """q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I), for a batch with one t per sample."""
        ab = self.alpha_bar[np.asarray(t)].reshape(-1, *([1] * (x0.ndim - 1)))
        return (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(x0.dtype)

    def target(self, x0: np.ndarray, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
        """What the network learns to predict at ``add_noise(x0, noise, t)``: ε, or v = √ᾱ ε - √(1-ᾱ) x_0."""
        if self.prediction == "epsilon":
            return noise
        ab = self.alpha_bar[np.asarray(t)].reshape(-1, *([1] * (x0.ndim - 1)))
        return (np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0).astype(x0.dtype)

    def to_card(self) -> dict:
        return {"kind": self.kind, "num_timesteps": self.num_timesteps, "params": dict(self.params),
                "prediction": self.prediction, "zero_terminal_snr": self.zero_terminal_snr}

    @classmethod
    def from_card(cls, data: dict) -> "NoiseSchedule":
        return cls(data["kind"], int(data["num_timesteps"]), dict(data.get("params", {})),
                   data.get("prediction", "epsilon"), bool(data.get("zero_terminal_snr", False)))


@dataclass(frozen=True)
class BridgeSchedule:
    """Brownian bridge between x_0 (target) and y (condition): x_t = (1 - m_t) x_0 + m_t y + sqrt(δ_t) ε."""

    num_timesteps: int = 1000
    s: float = 1.0  # variance scale: δ_t = 2 s (m_t - m_t²), at most s / 2 at t = T/2

    def __post_init__(self):
        if self.num_timesteps < 2 or self.s <= 0:
            raise ValueError(f"bridge needs num_timesteps ≥ 2 and s > 0, got {self.num_timesteps}, {self.s}")

    @property
    def m(self) -> np.ndarray:
        return np.arange(self.num_timesteps + 1, dtype=np.float64) / self.num_timesteps

    @property
    def delta(self) -> np.ndarray:
        m = self.m
        return 2.0 * self.s * (m - m ** 2)

    def forward(self, x0: np.ndarray, y: np.ndarray, t: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """q(x_t | x_0, y) = N((1 - m_t) x_0 + m_t y, δ_t I) (paper 004, eq. 1), one t per sample."""
        shape = (-1, *([1] * (x0.ndim - 1)))
        m, delta = self.m[np.asarray(t)].reshape(shape), self.delta[np.asarray(t)].reshape(shape)
        return ((1 - m) * x0 + m * y + np.sqrt(delta) * noise).astype(x0.dtype)

    def target(self, x0: np.ndarray, y: np.ndarray, t: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """What the network learns to predict at ``forward(x0, y, t, noise)``: x_t - x_0 = m_t (y - x_0) + √δ_t ε."""
        shape = (-1, *([1] * (x0.ndim - 1)))
        m, delta = self.m[np.asarray(t)].reshape(shape), self.delta[np.asarray(t)].reshape(shape)
        return (m * (y - x0) + np.sqrt(delta) * noise).astype(x0.dtype)

    def to_card(self) -> dict:
        return {"kind": "brownian_bridge", "num_timesteps": self.num_timesteps, "s": self.s,
                "prediction": "x_t - x_0"}

    @classmethod
    def from_card(cls, data: dict) -> "BridgeSchedule":
        return cls(int(data["num_timesteps"]), float(data.get("s", 1.0)))
