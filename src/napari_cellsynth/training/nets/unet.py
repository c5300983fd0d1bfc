"""A class-conditional U-Net noise predictor ε(x_t, t, class) for diffusion models.

Sinusoidal timestep embedding, a class embedding with one extra *null* class (index
``num_classes``) for classifier-free guidance, residual blocks with GroupNorm, self-attention at
the low resolutions, and optional attention gates on the skip connections (Oktay et al. 2018, as
in paper 003).  The network knows nothing of the noise schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2, self.conv2 = norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.norm(x).reshape(n, c, h * w).transpose(1, 2)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class AttentionGate(nn.Module):
    """Weights a skip connection x by α = σ(ψ(ReLU(W_x x + W_g g))), g the decoder's gating signal."""

    def __init__(self, skip_ch: int, gate_ch: int):
        super().__init__()
        inter = max(skip_ch // 2, 1)
        self.wx, self.wg = nn.Conv2d(skip_ch, inter, 1), nn.Conv2d(gate_ch, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * torch.sigmoid(self.psi(F.relu(self.wx(skip) + self.wg(gate))))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 0, base: int = 64,
                 channel_mult: tuple[int, ...] = (1, 2, 2), blocks_per_level: int = 2,
                 attention_levels: tuple[int, ...] = (2,), attention_gates: bool = False, dropout: float = 0.0,
                 image_size: int = 40):
        super().__init__()
        if image_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(f"image size {image_size} must be divisible by {2 ** (len(channel_mult) - 1)} "
                             f"for {len(channel_mult)} levels; crop or pad the images, or use fewer levels")
        self.num_classes = num_classes
        emb_dim = base * 4
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.base = base
        self.stem = nn.Conv2d(in_channels, base, 3, padding=1)
        self.down, skips, ch = nn.ModuleList(), [base], base
        for level, mult in enumerate(channel_mult):
            for _ in range(blocks_per_level):
                layers = nn.ModuleList([ResBlock(ch, base * mult, emb_dim, dropout)])
                ch = base * mult
                if level in attention_levels:
                    layers.append(SelfAttention(ch))
                self.down.append(layers)
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
        self.mid1, self.mid_attn = ResBlock(ch, ch, emb_dim, dropout), SelfAttention(ch)
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)
        self.up, self.gates = nn.ModuleList(), nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(blocks_per_level + 1):
                skip_ch = skips.pop()
                self.gates.append(AttentionGate(skip_ch, ch) if attention_gates else nn.Identity())
                layers = nn.ModuleList([ResBlock(ch + skip_ch, base * mult, emb_dim, dropout)])
                ch = base * mult
                if level in attention_levels:
                    layers.append(SelfAttention(ch))
                if level > 0 and i == blocks_per_level:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layers.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.up.append(layers)
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base))
        if self.class_emb is not None:
            if cls is None:
                cls = torch.full_like(t, self.num_classes)
            emb = emb + self.class_emb(cls)
        h = self.stem(x)
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for gate, layers in zip(self.gates, self.up):
            skip = hs.pop()
            skip = gate(skip, h) if isinstance(gate, AttentionGate) else skip
            h = torch.cat([h, skip], dim=1)
            for layer in layers:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(h)


def unet_from_net(net: dict, channels: int, size: int) -> UNet:
    """The class-conditional DDPM network from a run's or card's recorded ``net`` settings."""
    return UNet(channels, net["num_classes"], net["base"], tuple(net["channel_mult"]),
                attention_gates=net["attention_gates"], dropout=net["dropout"], image_size=size)


def bridge_unet(net: dict, channels: int, size: int) -> UNet:
    """The BBDM's network from a run's ``net`` settings: no class embedding; the DAPI condition is
    concatenated to the input by the caller."""
    return UNet(channels, 0, net["base"], tuple(net["channel_mult"]), dropout=net["dropout"], image_size=size)
