"""The trainers' torch forward processes are the schedules' own (issue 13): one definition, a tested twin."""

import numpy as np
import pytest
import torch

from napari_cellsynth.core.schedules import BridgeSchedule, NoiseSchedule
from napari_cellsynth.training.trainers.forward_process import TorchBridge, TorchNoising


@pytest.mark.parametrize("kind, prediction, ztsnr", [("linear", "epsilon", False), ("cosine", "v", False),
                                                     ("sigmoid", "v", True)])
def test_torch_noising_equals_the_schedule(kind, prediction, ztsnr):
    schedule = NoiseSchedule(kind, 1000, {}, prediction, ztsnr)
    rng = np.random.default_rng(0)
    x0, noise = rng.standard_normal((2, 16, 3, 8, 8)).astype(np.float32)
    t = rng.integers(0, 1000, 16)
    t[:2] = (0, 999)  # both ends, where zero terminal SNR makes ᾱ = 0
    twin = TorchNoising(schedule)
    as_torch = [torch.from_numpy(a) for a in (x0, noise, t)]
    np.testing.assert_allclose(twin.add_noise(*as_torch).numpy(), schedule.add_noise(x0, noise, t), atol=1e-5)
    np.testing.assert_allclose(twin.target(*as_torch).numpy(), schedule.target(x0, noise, t), atol=1e-5)
    if prediction == "v":  # v is what the denoisers invert: x0 = √ᾱ x_t - √(1-ᾱ) v
        ab = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
        xt, v = schedule.add_noise(x0, noise, t), schedule.target(x0, noise, t)
        np.testing.assert_allclose(np.sqrt(ab) * xt - np.sqrt(1 - ab) * v, x0, atol=1e-4)


def test_torch_bridge_equals_the_schedule():
    schedule = BridgeSchedule(1000, 1.0)
    rng = np.random.default_rng(1)
    x0, y, noise = rng.standard_normal((3, 12, 3, 8, 8)).astype(np.float32)
    t = rng.integers(1, 1001, 12)
    twin = TorchBridge(schedule)
    args = [torch.from_numpy(a) for a in (x0, y, t, noise)]
    xt = schedule.forward(x0, y, t, noise)
    np.testing.assert_allclose(twin.forward(*args).numpy(), xt, atol=1e-5)
    np.testing.assert_allclose(twin.target(*args).numpy(), schedule.target(x0, y, t, noise), atol=1e-5)
    np.testing.assert_allclose(xt - schedule.target(x0, y, t, noise), x0, atol=1e-5)  # the target is x_t - x_0
