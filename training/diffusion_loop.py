"""What the diffusion trainers (DDPM, BBDM) share: EMA update, checkpoints, the loss plot."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_cellsynth.core.atomic import atomic_open


def add_run_arguments(p: argparse.ArgumentParser, fine_tuning: bool = True) -> None:
    """(Fine-tuning start,) sample/checkpoint cadence, seed, output folder, resume and quiet."""
    if fine_tuning:
        p.add_argument("--init-from", help="run folder whose EMA weights start this run (fine-tuning)")
    p.add_argument("--sample-every", type=int, default=2000)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")


def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """EMA of the weights with a warm-up (decay grows as (1 + step) / (10 + step) up to ``decay``)."""
    decay = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def save_checkpoint(out: Path, model, ema, optimizer, step, history, batches, **extra) -> None:
    """``last.pt`` (written atomically): weights, EMA, optimizer, step, loss history and both RNG states."""
    with atomic_open(out / "last.pt", "wb") as fh:
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "history": history, "rng": torch.get_rng_state(),
                    "batch_rng": batches.generator.get_state(), **extra}, fh)


def restore_checkpoint(out: Path, model, ema, optimizer, batches) -> tuple[int, list, dict]:
    """Load ``last.pt`` into the given objects; returns (step, history, the whole state).

    A checkpoint slimmed for transfer (no ``optimizer`` entry, e.g. brought back from a GPU machine)
    resumes with fresh optimizer moments."""
    state = torch.load(out / "last.pt", weights_only=True, map_location="cpu")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    batches.generator.set_state(state["batch_rng"])
    return state["step"], state["history"], state


def plot_loss(history: list[dict], path: Path, ylabel: str) -> None:
    from matplotlib.figure import Figure

    steps = np.array([h["step"] for h in history])
    loss = np.array([h["loss"] for h in history])
    fig = Figure(figsize=(6, 3.5))
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
    from matplotlib.figure import Figure

    fig = Figure(figsize=(len(dapi) * 1.1, 3 * 1.2))
    axes = fig.subplots(3, len(dapi), squeeze=False)
    for col in range(len(dapi)):
        for row, image in enumerate([dapi[col][0], real[col].transpose(1, 2, 0), fake[col].transpose(1, 2, 0)]):
            axes[row, col].imshow(image, cmap="gray" if row == 0 else None)
            axes[row, col].axis("off")
    for row, name in enumerate(["DAPI", "real", model_name]):
        axes[row, 0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
