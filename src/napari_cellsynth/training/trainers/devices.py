"""Which torch device a trainer runs on, and the start every run on one shares."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_cellsynth.training.trainers.checkpoints import refuse_to_overwrite


def torch_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here; use --device cpu")
    return device


def start_run(args) -> tuple[Path, torch.device]:
    """``--threads`` (0: torch's own choice), ``--seed``, the ``--out`` folder made, the ``--device`` checked."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    refuse_to_overwrite(out, args.resume)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    return out, torch_device(args.device)
