"""ResNet-18/34 for small microscopy crops (32–128 px) with any number of channels.

The stem follows the input size: a 3×3 convolution of stride 1 below 32 px,
stride 2 from 32 px, plus max-pooling from 96 px, so that the last stage still
sees a 2–4 px map and a 40 px crop trains at CPU speed.  ``forward`` returns the logits and the
penultimate-layer features (global average pool), which the UMAP filter uses.
"""

from __future__ import annotations

import torch
from torch import nn

DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
CROP_SIZES = (16, 256)  # the crop sides (px) the network takes


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def stem_for(size: int, in_channels: int, width: int) -> nn.Sequential:
    stride = 1 if size < 32 else 2
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, stride, 1, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    if size >= 96:
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


class ResNetClassifier(nn.Module):
    def __init__(self, arch: str = "resnet18", in_channels: int = 3, num_classes: int = 4,
                 image_size: int = 40, width: int = 64, dropout: float = 0.0):
        super().__init__()
        if arch not in DEPTHS:
            raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(DEPTHS)}")
        if not CROP_SIZES[0] <= image_size <= CROP_SIZES[1]:
            raise ValueError(f"crops of {image_size} px are outside the classifier's {CROP_SIZES[0]}–{CROP_SIZES[1]} "
                             "px; bring them into that range with --size")
        self.stem = stem_for(image_size, in_channels, width)
        stages, channels = [], width
        for index, depth in enumerate(DEPTHS[arch]):
            out_channels = width * 2 ** index
            blocks = [BasicBlock(channels, out_channels, 1 if index == 0 else 2)]
            blocks += [BasicBlock(out_channels, out_channels, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.flatten(self.pool(self.stages(self.stem(x))), 1)
        return self.head(self.dropout(features)), features
