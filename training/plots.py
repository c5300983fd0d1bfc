"""Training-curve plots (PNG, no GUI backend)."""

from __future__ import annotations

from matplotlib.figure import Figure


def plot_training_curves(history: list[dict], path, title: str = "training") -> None:
    """Train/validation loss and validation macro-F1 per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.5))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], label="train")
    left.plot(epochs, [h["val_loss"] for h in history], label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.legend()
    right.plot(epochs, [h["val_macro_f1"] for h in history], color="C2", label="macro-F1")
    right.plot(epochs, [h["val_accuracy"] for h in history], color="C3", label="accuracy")
    best = max(history, key=lambda h: h["val_macro_f1"])
    right.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
    right.set_xlabel("epoch")
    right.set_ylabel("validation score")
    right.set_ylim(0, 1)
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
