"""Training-curve, loss, confusion-matrix and DAPI/FISH grid plots (PNG, no GUI backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def new_figure(figsize: tuple[float, float]):
    """A matplotlib Figure, without pyplot; matplotlib is imported here, when a plot is drawn, so that a trainer's
    command refuses bad input without loading it."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def plot_training_curves(history: list[dict], path, best: dict, title: str = "training") -> None:
    """Train/validation loss and validation macro-F1, accuracy and (where recorded) mean PR-AUC per epoch, with the
    kept checkpoint's validation entry (``best``) marked."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure((9, 3.5))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], label="train")
    left.plot(epochs, [h["val_loss"] for h in history], label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.legend()
    right.plot(epochs, [h["val_macro_f1"] for h in history], color="C2", label="macro-F1")
    right.plot(epochs, [h["val_accuracy"] for h in history], color="C3", label="accuracy")
    if all("val_pr_auc" in h for h in history):
        right.plot(epochs, [h["val_pr_auc"] for h in history], color="C4", label="mean PR-AUC")
    right.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
    right.set_xlabel("epoch")
    right.set_ylabel("validation score")
    right.set_ylim(0, 1)
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_confusion(metrics: dict, path, title: str = "Confusion matrix") -> None:
    """Row-normalised confusion matrix with counts, saved as PNG (no GUI backend needed)."""
    counts = np.asarray(metrics["confusion"])
    rows = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    classes = metrics["classes"]
    size = 1.2 + 0.75 * len(classes)
    fig = new_figure((size + 1.5, size))
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if fractions[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(f"{title}\nmacro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_loss(history: list[dict], path: Path, ylabel: str) -> None:
    steps = np.array([h["step"] for h in history])
    loss = np.array([h["loss"] for h in history])
    fig = new_figure((6, 3.5))
    ax = fig.add_subplot()
    ax.plot(steps, loss, alpha=0.3, label="per 50 steps")
    if len(loss) >= 10:
        ax.plot(steps[9:], np.convolve(loss, np.ones(10) / 10, mode="valid"), label="running mean")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def dapi_fish_grid(dapi: np.ndarray, real: np.ndarray, fake: np.ndarray, model_name: str, path: Path) -> None:
    """Columns of chromosomes; rows: DAPI (N×1×H×W), real FISH and generated FISH (N×3×H×W uint8)."""
    fig = new_figure((len(dapi) * 1.1, 3 * 1.2))
    axes = fig.subplots(3, len(dapi), squeeze=False)
    for col in range(len(dapi)):
        for row, image in enumerate([dapi[col][0], real[col].transpose(1, 2, 0), fake[col].transpose(1, 2, 0)]):
            axes[row, col].imshow(image, cmap="gray" if row == 0 else None)
            axes[row, col].axis("off")
    for row, name in enumerate(["DAPI", "real", model_name]):
        axes[row, 0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
