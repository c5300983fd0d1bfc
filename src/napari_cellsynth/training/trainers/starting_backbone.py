"""Where a classifier's backbone starts (``cellsynth train classifier --init-from RUN``).

Two kinds of run can give it:

- a ``cellsynth train pretrain`` run (self-supervised, on unlabelled crops; its ``backbone.pt``);
- a finished ``cellsynth train classifier`` run (supervised pretraining on another task with more
  labels, e.g. chromosome identity, 24 classes, before translocation, 2 classes; its ``best.pt``
  without the head).

Either way the new head starts fresh, and the normalisation is the new run's own.  A run whose
architecture, width, channel count or image size differs is refused with a one-line error naming
the fix.
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_cellsynth.training.nets.resnet import ResNetClassifier
from napari_cellsynth.training.records.registry import read_run


def backbone_state(model: ResNetClassifier) -> dict:
    """The backbone's weights: everything but the classification head."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}


def _kind(run: Path) -> str:
    if (run / "config.json").is_file() and (run / "backbone.pt").is_file():
        return "pretrain"
    if (run / "config.json").is_file() and (run / "best.pt").is_file():
        return "classifier"
    raise ValueError(f"--init-from {run}: neither a finished pretraining run (config.json, backbone.pt) nor a "
                     "finished classifier run (config.json, best.pt); pass the --out folder of cellsynth train "
                     "pretrain or cellsynth train classifier")


def read_pretrained(run: str | Path, arch: str, width: int, channels: int, image_size) -> dict:
    """Check a run against the classifier about to start from it; returns what the classifier's
    config records.  Raises a one-line ``ValueError`` naming the fix on a mismatch."""
    run = Path(run)
    kind = _kind(run)
    record = read_run(run, (kind,))
    size = [int(s) for s in image_size]
    wanted = {"arch": (record.settings.arch, arch, "--arch"), "width": (record.settings.width, width, "--width"),
              "channel count": (len(record.channels), channels, None),
              "image size": (list(record.image_size), size, "--size")}
    for what, (theirs, ours, option) in wanted.items():
        if theirs != ours:
            fix = (f"pass {option} {theirs if what != 'image size' else theirs[-1]}" if option else
                   "pretrain on crops with the classifier's channels")
            raise ValueError(f"--init-from {run}: its {what} is {theirs}, this classifier's {ours}; {fix}, "
                             "or pretrain again to match")
    return {"run": str(run.resolve()), "kind": kind, **record.as_start()}


def load_backbone(model: ResNetClassifier, run: str | Path) -> None:
    """Start ``model`` from a run's backbone; its head stays as initialised."""
    run = Path(run)
    if _kind(run) == "pretrain":
        state = torch.load(run / "backbone.pt", weights_only=True, map_location="cpu")
    else:
        state = torch.load(run / "best.pt", weights_only=True, map_location="cpu")["model"]
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ValueError(f"--init-from {run}: its weights do not fit this network (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); train it again with the classifier's --arch and --width")
