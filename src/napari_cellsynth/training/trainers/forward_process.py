"""The forward processes of :mod:`napari_cellsynth.core.schedules` in torch, for the trainers.

The schedule alone defines the forward process: these twins take every coefficient from the schedule
object the samplers use (``alpha_bar``, ``m``, ``delta``) and compute the same formulas as its numpy
``add_noise`` / ``forward`` / ``target``; ``tests/test_schedules.py`` checks them equal on random data.
"""

from __future__ import annotations

import torch

from napari_cellsynth.core.schedules import BridgeSchedule, NoiseSchedule


def _per_sample(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    return values[t].reshape(-1, *([1] * (ndim - 1)))


class TorchNoising:
    """q(x_t | x_0) of a :class:`NoiseSchedule` and its training target (ε or v), on ``device``."""

    def __init__(self, schedule: NoiseSchedule, device: torch.device | str = "cpu"):
        self.schedule = schedule
        self.alpha_bar = torch.tensor(schedule.alpha_bar, dtype=torch.float32, device=device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = _per_sample(self.alpha_bar, t, x0.ndim)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.schedule.prediction == "epsilon":
            return noise
        ab = _per_sample(self.alpha_bar, t, x0.ndim)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0


class TorchBridge:
    """q(x_t | x_0, y) of a :class:`BridgeSchedule` and its training target x_t - x_0, on ``device``."""

    def __init__(self, schedule: BridgeSchedule, device: torch.device | str = "cpu"):
        self.schedule = schedule
        self.m = torch.tensor(schedule.m, dtype=torch.float32, device=device)
        self.delta = torch.tensor(schedule.delta, dtype=torch.float32, device=device)

    def forward(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        m, delta = _per_sample(self.m, t, x0.ndim), _per_sample(self.delta, t, x0.ndim)
        return (1 - m) * x0 + m * y + delta.sqrt() * noise

    def target(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        m, delta = _per_sample(self.m, t, x0.ndim), _per_sample(self.delta, t, x0.ndim)
        return m * (y - x0) + delta.sqrt() * noise
