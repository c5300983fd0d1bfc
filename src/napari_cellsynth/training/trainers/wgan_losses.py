"""Critic penalties of WGAN-GP (Gulrajani et al. 2017) and WGAN-div (Wu et al. 2018), always in fp32.

* WGAN-GP: λ · E[(‖∇D(x̂)‖₂ - 1)²] at random interpolates x̂ = ε x + (1 - ε) x̃, λ = 10.
* WGAN-div: k · E[‖∇D(x̂)‖₂^p], k = 2, p = 6.  Where x̂ is taken differs between the public codes:
  - ``"interpolates"``: x̂ = ε x + (1 - ε) x̃, as paper 001 writes it (eq. 6: "x̂ sampled as a
    linear combination of real and fake data points") and as Wu et al.'s paper describes P_u;
  - ``"real_fake"``: the term taken at the real and at the fake points and averaged, k/2 · (E‖∇D(x)‖^p
    + E‖∇D(x̃)‖^p), as in the widely copied PyTorch-GAN implementation.
  Paper 001 is followed by default (interpolates).
"""

from __future__ import annotations

import torch

LOSSES = ("wgan-div", "wgan-gp")
DIV_POINTS = ("interpolates", "real_fake")


def _gradient_norms(critic, x: torch.Tensor, cls) -> torch.Tensor:
    x = x.float().detach().requires_grad_(True)
    with torch.autocast(x.device.type, enabled=False):
        score = critic(x, cls)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return grad.flatten(1).norm(dim=1)


def interpolates(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    eps = torch.rand(len(real), 1, 1, 1, generator=generator, device="cpu").to(real.device)
    return eps * real.float() + (1 - eps) * fake.float()


def gradient_penalty(critic, real, fake, cls=None, weight: float = 10.0, generator=None) -> torch.Tensor:
    norms = _gradient_norms(critic, interpolates(real, fake, generator), cls)
    return weight * ((norms - 1) ** 2).mean()


def divergence_penalty(critic, real, fake, cls=None, k: float = 2.0, p: float = 6.0,
                       points: str = "interpolates", generator=None) -> torch.Tensor:
    if points == "interpolates":
        return k * (_gradient_norms(critic, interpolates(real, fake, generator), cls) ** p).mean()
    if points == "real_fake":
        both = _gradient_norms(critic, real, cls) ** p, _gradient_norms(critic, fake, cls) ** p
        return k / 2 * (both[0].mean() + both[1].mean())
    raise ValueError(f"unknown WGAN-div points {points!r}; choose from {DIV_POINTS}")


def critic_loss(critic, real, fake, cls, loss: str, div_points: str = "interpolates", generator=None):
    """E[D(x̃)] - E[D(x)] + penalty; returns (loss, the Wasserstein estimate E[D(x)] - E[D(x̃)])."""
    distance = critic(real, cls).float().mean() - critic(fake, cls).float().mean()
    if loss == "wgan-gp":
        penalty = gradient_penalty(critic, real, fake, cls, generator=generator)
    elif loss == "wgan-div":
        penalty = divergence_penalty(critic, real, fake, cls, points=div_points, generator=generator)
    else:
        raise ValueError(f"unknown GAN loss {loss!r}; choose from {LOSSES}")
    return -distance + penalty, distance.detach()
