"""CycleGAN networks (Zhu et al. 2017), sized for 64-pixel chromosome crops.

Generator: c7s1-k, two stride-2 downsamplings, ``blocks`` residual blocks, two upsamplings
(nearest + conv, which avoids checkerboards), c7s1-out with tanh.  Discriminator: a 70×70-style
PatchGAN (C k, C 2k, C 4k, stride 1 C 8k, 1-channel map), instance norm, leaky ReLU.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_norm_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, padding_mode="reflect"),
            nn.InstanceNorm2d(out_ch, affine=True), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*conv_norm_relu(channels, channels, 3),
                                  nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 32, blocks: int = 6):
        super().__init__()
        layers = [*conv_norm_relu(in_channels, base, 7), *conv_norm_relu(base, base * 2, 3, 2),
                  *conv_norm_relu(base * 2, base * 4, 3, 2)]
        layers += [ResidualBlock(base * 4) for _ in range(blocks)]
        for ch in (base * 4, base * 2):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *conv_norm_relu(ch, ch // 2, 3)]
        layers += [nn.Conv2d(base, out_channels, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, base: int = 32):
        super().__init__()
        layers, ch = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)], base
        for stride in (2, 2, 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, stride, 1), nn.InstanceNorm2d(ch * 2, affine=True),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_cyclegan(net: dict, channels: int) -> dict[str, nn.Module]:
    """The two generators (A→B, B→A) and two discriminators of a run's ``net`` settings."""
    return {"g_ab": Generator(channels, channels, net["base"], net["blocks"]),
            "g_ba": Generator(channels, channels, net["base"], net["blocks"]),
            "d_a": PatchDiscriminator(channels, net["base"]), "d_b": PatchDiscriminator(channels, net["base"])}
