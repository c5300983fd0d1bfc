"""Two augmented views of every crop, for contrastive (SimCLR) pretraining without labels.

Each view is :class:`~napari_cellsynth.training.data.labelled_crops.CropBatches`' augmentation (flips,
90° turns, a brightness factor, a shift of up to ``max_shift`` px), drawn independently per view, then
normalised, then a random crop-and-resize (a square window of ``crop_scale``–1 of the crop's area,
anywhere inside it, resized back by bilinear sampling: SimCLR's strongest augmentation) and Gaussian
noise of ``noise`` standard deviations (in normalised units).  All of it is done for the whole batch
at once; the random draws come from the CPU generator, as in ``CropBatches``.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_cellsynth.training.data.labelled_crops import CropBatches


class ViewPairs(CropBatches):
    """Batches of ``(view_1, view_2)``: two independently augmented, normalised views of the same crops."""

    def __init__(self, images: np.ndarray, normalization: dict, batch_size: int, seed: int, max_shift: int = 0,
                 crop_scale: float = 0.5, noise: float = 0.1, device: str | torch.device = "cpu"):
        super().__init__(images, np.zeros(len(images), np.int64), normalization, batch_size, augment=True,
                         seed=seed, shuffle=True, device=device, max_shift=max_shift)
        if not 0 < crop_scale <= 1:
            raise ValueError(f"crop_scale is a fraction of the crop's area in (0, 1], got {crop_scale}")
        self.crop_scale = crop_scale
        self.noise = noise

    def __len__(self) -> int:  # full batches only: NT-Xent's difficulty depends on the batch size
        return max(1, len(self.y) // self.batch_size)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """One augmented, normalised view of raw crops ``x`` (N×C×H×W float32)."""
        x = self.augmented(x) * self.scale + self.offset
        n, g = len(x), self.generator
        if self.crop_scale < 1:
            side = torch.sqrt(self.crop_scale + (1 - self.crop_scale) * torch.rand(n, generator=g))  # of 1
            centre = (1 - side)[:, None] * (2 * torch.rand(n, 2, generator=g) - 1)  # window stays inside
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = theta[:, 1, 1] = side
            theta[:, :, 2] = centre
            grid = torch.nn.functional.affine_grid(theta.to(self.device), list(x.shape), align_corners=False)
            x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.noise:
            x = x + self.noise * torch.randn(x.shape, generator=g).to(self.device)
        return x

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator).to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            x = self.images[order[start:start + self.batch_size]]
            yield self.view(x), self.view(x)
