"""How good are generated cells of one class? FID/KID on a classifier's ResNet features, SSIM-max, a grid.

Used by the experiments after they generate.  FID/KID compare generated crops with real training
crops of the same class, SSIM-max with the crops the generator was trained on; held-out real crops
of that class (validation split) go through the same measures as a reference for what "real"
scores.  For SSIM every channel is
scaled to [0, 1] between the training crops' 0.5 and 99.5 percentiles (the channels of one crop
have very different ranges), then compared with ``data_range = 1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_cellsynth.core.classify import bundle_features
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.training.reports.generator_metrics import (frechet_distance, kernel_inception_distance,
                                                                 plot_ssim_density, ssim_max)


def channel_scaler(training: np.ndarray):
    low = np.percentile(training, 0.5, axis=(0, 2, 3))[None, :, None, None]
    high = np.percentile(training, 99.5, axis=(0, 2, 3))[None, :, None, None]
    high = np.where(high > low, high, low + 1)
    return lambda images: np.clip((images.astype(np.float64) - low) / (high - low), 0, 1)


def quality(classifier: OnnxModel, reference: np.ndarray, seen: np.ndarray, groups: dict[str, np.ndarray],
            png: Path) -> dict:
    """Per group (e.g. ``{"held-out real": ..., "DDPM": ...}``): FID and KID against the ``reference`` crops'
    features, SSIM-max against the crops the generator ``seen`` (memorisation)."""
    scale = channel_scaler(reference)
    real_features = run_to_end(bundle_features(classifier, reference))
    report, ssims = {}, {}
    for name, images in groups.items():
        features = run_to_end(bundle_features(classifier, images))
        best, _ = run_to_end(ssim_max(scale(images), scale(seen), data_range=1.0))
        ssims[name] = best
        kid, kid_std = kernel_inception_distance(real_features, features,
                                                 subset_size=min(100, len(features), len(real_features)))
        report[name] = {"n": int(len(images)), "fid_resnet": frechet_distance(real_features, features),
                        "kid_resnet": kid, "kid_resnet_std": kid_std, "ssim_max_median": float(np.median(best)),
                        "ssim_max_above_0.95": float((best > 0.95).mean())}
    plot_ssim_density(ssims, png, title=f"max SSIM against the {len(seen)} crops the generator saw")
    report["feature_bundle"] = classifier.card.name
    report["fid_reference_count"], report["ssim_reference_count"] = int(len(reference)), int(len(seen))
    return report


def real_vs_generated_grid(rows: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, per_side: int = 6) -> None:
    """One row per class: ``per_side`` real crops, then ``per_side`` generated ones (first three channels as RGB,
    each scaled by the real crops' percentiles)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2 * per_side * 0.9 + 0.6, len(rows) * 1.0 + 0.4))
    axes = fig.subplots(len(rows), 2 * per_side, squeeze=False)
    rng = np.random.default_rng(0)
    for r, (name, (real, fake)) in enumerate(rows.items()):
        scale = channel_scaler(real)
        picks = [real[rng.choice(len(real), min(per_side, len(real)), replace=False)], fake[:per_side]]
        for side, images in enumerate(picks):
            shown = scale(images)[:, :3]
            for k in range(per_side):
                ax = axes[r, side * per_side + k]
                ax.axis("off")
                if k < len(shown):
                    ax.imshow(shown[k].transpose(1, 2, 0) if len(shown[k]) == 3 else shown[k][0], cmap="gray")
        axes[r, 0].text(-0.15, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("real", fontsize=8, loc="left")
    axes[0, per_side].set_title("generated", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
