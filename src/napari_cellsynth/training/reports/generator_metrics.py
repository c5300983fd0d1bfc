"""Quality of generated images, shared by every generator's reports and experiments (research side).

* **FID and KID on classifier features.**  Inception weights cannot be downloaded here, so the
  feature extractor is the project's own classifier bundle (its penultimate ``features`` output):
  call the numbers what they are, "FID (ResNet features of bundle X)", comparable only between
  runs that use the same bundle.
* **SSIM-max** (paper 004, Fig. 5): for each synthetic image the largest SSIM (scikit-image)
  against the training images, a check of quality and of memorisation (values near 1 mean copies).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from scipy import linalg


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """||μ_r - μ_f||² + Tr(Σ_r + Σ_f - 2 (Σ_r Σ_f)^½) of two feature sets (rows are samples)."""
    _check_features(real, fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root, _ = linalg.sqrtm(cov_r @ cov_f, disp=False)
    if not np.isfinite(root).all():  # near-singular product: regularise as in pytorch-fid
        eps = 1e-6 * np.eye(len(cov_r))
        root = linalg.sqrtm((cov_r + eps) @ (cov_f + eps))
    root = root.real
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2 * np.trace(root))


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 50, subset_size: int = 200,
                              seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² with the cubic polynomial kernel (x·y/d + 1)³, mean and std over random subsets."""
    _check_features(real, fake)
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off = size * (size - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _check_features(real: np.ndarray, fake: np.ndarray) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be N×D with the same D, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) < 2:
        raise ValueError("each feature set needs at least 2 samples")


def ssim_max(synthetic: np.ndarray, training: np.ndarray, data_range: float, candidates: int | None = 32,
             ) -> Generator[tuple[int, int], None, tuple[np.ndarray, np.ndarray]]:
    """For each synthetic crop (N×C×H×W), the largest SSIM against any training crop and its index.

    ``candidates`` limits the exact SSIM to the training crops nearest in pixel space (L2), which
    holds the maximum in practice and makes large sets tractable; ``None`` compares with all.
    """
    from skimage.metrics import structural_similarity

    if synthetic.shape[1:] != training.shape[1:]:
        raise ValueError(f"synthetic {synthetic.shape[1:]} and training {training.shape[1:]} crops differ")
    syn = synthetic.astype(np.float64)
    train = training.astype(np.float64)
    flat_train = train.reshape(len(train), -1)
    train_sq = (flat_train ** 2).sum(1)
    best, best_index = np.zeros(len(syn)), np.zeros(len(syn), dtype=np.int64)
    for i, image in enumerate(syn):
        if candidates is None or candidates >= len(train):
            pool = np.arange(len(train))
        else:
            flat = image.ravel()
            distance = train_sq - 2 * flat_train @ flat
            pool = np.argpartition(distance, candidates)[:candidates]
        scores = [structural_similarity(image, train[j], data_range=data_range, channel_axis=0) for j in pool]
        k = int(np.argmax(scores))
        best[i], best_index[i] = scores[k], pool[k]
        yield i + 1, len(syn)
    return best, best_index


def plot_ssim_density(groups: dict[str, np.ndarray], path, title: str = "max SSIM against training images") -> None:
    """Kernel density of SSIM-max per group (e.g. real held-out vs each generator), saved as PNG."""
    from matplotlib.figure import Figure
    from scipy.stats import gaussian_kde

    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    grid = np.linspace(0, 1, 300)
    for name, values in groups.items():
        values = np.asarray(values, dtype=float)
        if len(values) > 1 and values.std() > 0:
            ax.plot(grid, gaussian_kde(values)(grid), label=f"{name} (median {np.median(values):.3f}, n={len(values)})")
        else:
            ax.axvline(values.mean(), label=f"{name} (n={len(values)})")
    ax.set_xlabel("max SSIM against the training images")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
