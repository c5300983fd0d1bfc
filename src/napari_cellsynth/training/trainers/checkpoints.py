"""What the generator trainers share around their loop: run options, the EMA of the weights, and
``last.pt`` checkpoints (written atomically) to resume from."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from napari_cellsynth.core.atomic import atomic_open


def add_run_arguments(p: argparse.ArgumentParser, fine_tuning: bool = True) -> None:
    """(Fine-tuning start,) sample/checkpoint cadence, seed, output folder, resume and quiet."""
    if fine_tuning:
        p.add_argument("--init-from", help="run folder whose EMA weights start this run (fine-tuning)")
    p.add_argument("--sample-every", type=int, default=2000,
                   help="steps between sample grids (and one at the end); 0: none")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")


def refuse_to_overwrite(out: str | Path, resume: bool) -> None:
    """A folder that holds a training run (its ``last.pt`` or ``config.json``) is not started over without
    ``--resume``: one slip of ``--out`` would otherwise wipe a long run."""
    held = [name for name in ("last.pt", "config.json") if (Path(out) / name).is_file()]
    if held and not resume:
        raise ValueError(f"{out} already holds a training run ({held[0]}): pass --resume to go on with it, or give "
                         "another --out")


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


def save_snapshot(path: Path, module: nn.Module) -> None:
    """A module's weights in fp16 (integers as they are), written atomically: the EMA snapshots a run keeps
    along training, to choose a checkpoint or draw a quality curve over steps after the fact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in module.state_dict().items()}, fh)


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
