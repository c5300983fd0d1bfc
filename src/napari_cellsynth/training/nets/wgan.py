"""Networks of the Wasserstein GANs (papers 000 and 001), sized for 32–128 px cell crops.

Generator: z (and a class embedding) → a dense layer to 4·base channels at size/8, then three
blocks of nearest-neighbour upsampling followed by a 3×3 convolution (no transposed convolutions,
so no checkerboards), BatchNorm and ReLU; a 3×3 convolution and tanh give the image in [-1, 1].
Critic: stride-2 convolutions with LeakyReLU and *no* normalisation (BatchNorm couples the samples
of a batch, which breaks the per-sample gradient penalty), a linear score, and for a class-
conditional GAN a projection term ⟨embed(y), φ(x)⟩ (Miyato & Koyama 2018).
"""

from __future__ import annotations

import torch
from torch import nn


def check_size(size: int) -> None:
    if size % 8 or size < 16:
        raise ValueError(f"GAN crops must be a multiple of 8 pixels and at least 16 (got {size}); "
                         "bring the crops to such a size first (--size)")


class Generator(nn.Module):
    def __init__(self, channels: int = 3, size: int = 40, latent: int = 128, base: int = 64, num_classes: int = 0):
        super().__init__()
        check_size(size)
        self.latent, self.num_classes, self.start = latent, num_classes, size // 8
        self.class_emb = nn.Embedding(num_classes, latent) if num_classes else None
        self.dense = nn.Linear(latent, 4 * base * self.start ** 2)
        blocks, ch = [], 4 * base
        for out in (4 * base, 2 * base, base):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, out, 3, padding=1),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        self.body = nn.Sequential(nn.BatchNorm2d(4 * base), nn.ReLU(inplace=True), *blocks,
                                  nn.Conv2d(ch, channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_emb is not None:
            z = z * self.class_emb(cls)  # multiplicative conditioning of the latent
        h = self.dense(z).unflatten(1, (-1, self.start, self.start))  # no batch size baked into an export
        return self.body(h)


class Critic(nn.Module):
    def __init__(self, channels: int = 3, size: int = 40, base: int = 64, num_classes: int = 0):
        super().__init__()
        check_size(size)
        layers, ch = [nn.Conv2d(channels, base, 3, padding=1), nn.LeakyReLU(0.2)], base
        for out in (2 * base, 4 * base, 4 * base):
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        width = ch * (size // 8) ** 2
        self.score = nn.Linear(width, 1)
        self.class_emb = nn.Embedding(num_classes, width) if num_classes else None

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)
        out = self.score(phi)[:, 0]
        if self.class_emb is not None:
            out = out + (self.class_emb(cls) * phi).sum(1)
        return out
