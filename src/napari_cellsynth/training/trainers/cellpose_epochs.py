"""Cellpose 3's segmentation training (``cellpose.train.train_seg``), one epoch at a time, so that a run keeps a
checkpoint and goes on after a kill to the weights it would have reached without one.

``train_seg`` seeds NumPy's generator with the epoch's index before it draws the epoch's crops and their
augmentations, so an epoch depends only on the weights and the optimizer's moments it starts from: ``last.pt``
holds those, the epoch reached, the losses and training seconds so far and the run's options (a dict of tensors,
numbers and strings, loaded with ``weights_only``).
The loop below is ``train_seg``'s step for step, on Cellpose's own helpers for the data, the flows, the
augmentation and the loss (``tests/test_cellpose_training.py`` checks that its weights equal ``train_seg``'s);
it leaves out ``train_seg``'s test loss, which changes no weight (the trainer scores held-out metaphases by AP).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open

CHECKPOINT = "last.pt"


def cellpose_learning_rates(learning_rate: float, epochs: int) -> np.ndarray:
    """The learning rate of each epoch, as ``train_seg`` sets it: a 10-epoch warm-up, then constant; a run of more
    than 100 epochs halves it ten times over its last 50, one of more than 300 over its last 100."""
    rates = np.append(np.linspace(0, learning_rate, 10), learning_rate * np.ones(max(0, epochs - 10)))
    if epochs > 100:
        tail, block = (100, 10) if epochs > 300 else (50, 5)
        rates = rates[:-tail]
        for _ in range(10):
            rates = np.append(rates, rates[-1] / 2 * np.ones(block))
    return rates


@dataclass(frozen=True)
class EpochPlan:
    """What ``train_seg`` is given here: epochs, crops per epoch (drawn with replacement unless they are the
    training images' count), crop side, batch size, AdamW's learning rate and weight decay."""

    epochs: int
    images_per_epoch: int
    bsize: int
    learning_rate: float
    batch_size: int = 8
    weight_decay: float = 1e-5
    min_train_masks: int = 1


def read_checkpoint(out: Path) -> dict | None:
    """``out/last.pt`` (epoch, weights, optimizer, losses) or None when the run has none."""
    import torch

    path = Path(out) / CHECKPOINT
    return torch.load(path, weights_only=True, map_location="cpu") if path.is_file() else None


def _save_checkpoint(out: Path, net, optimizer, epoch: int, losses: list[float], seconds: float,
                     options: dict) -> None:
    import torch

    with atomic_open(Path(out) / CHECKPOINT, "wb") as fh:
        torch.save({"epoch": epoch, "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "losses": list(losses), "seconds": seconds, "options": options}, fh)


def train_epochs(net, images: list[np.ndarray], labels: list[np.ndarray], plan: EpochPlan, out: Path,
                 checkpoint_every: int = 5, start: dict | None = None,
                 options: dict | None = None) -> Iterator[tuple[int, int, float]]:
    """Train ``net`` in place on single-channel ``images`` and their instance ``labels``; yields (epochs done,
    epochs, the epoch's mean loss) after each epoch and writes ``out/last.pt`` (with ``options``, what the run was
    started with) every ``checkpoint_every`` epochs and after the last.  ``start`` (a :func:`read_checkpoint`)
    goes on from its epoch."""
    import torch
    from cellpose import models, transforms
    from cellpose.train import _get_batch, _loss_fn_seg, _process_train_test

    began = time.time()  # the flows and normalisation count as training time, as in train_seg
    device = net.device
    normalize_params = {**models.normalize_default, "normalize": True}
    (data, flows, _, _, probs, diameters, *_) = _process_train_test(
        train_data=images, train_labels=labels, min_train_masks=plan.min_train_masks, channels=[0, 0],
        normalize_params=normalize_params, device=device)
    net.diam_labels.data = torch.Tensor([diameters.mean()]).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay)
    first, losses, before = 0, [], 0.0
    if start is not None:
        net.load_state_dict(start["net"])
        optimizer.load_state_dict(start["optimizer"])
        first, losses, before = int(start["epoch"]), [float(v) for v in start["losses"]], float(start["seconds"])
    rates = cellpose_learning_rates(plan.learning_rate, plan.epochs)
    count, per_epoch = len(data), plan.images_per_epoch
    for epoch in range(first, plan.epochs):
        np.random.seed(epoch)
        order = (np.random.choice(np.arange(count), size=(per_epoch,), p=probs) if count != per_epoch
                 else np.random.permutation(np.arange(count)))
        for group in optimizer.param_groups:
            group["lr"] = float(rates[epoch])  # a NumPy scalar would not load with weights_only
        net.train()
        total = 0.0
        for k in range(0, per_epoch, plan.batch_size):
            chosen = order[k:k + plan.batch_size]
            batch, batch_flows = _get_batch(chosen, data=data, labels=flows)
            scale = np.array([diameters[i] for i in chosen]) / net.diam_mean.item()
            crops, targets = transforms.random_rotate_and_resize(batch, Y=batch_flows, rescale=scale,
                                                                 scale_range=0.5, xy=(plan.bsize, plan.bsize))[:2]
            loss = _loss_fn_seg(targets, net(torch.from_numpy(crops).to(device))[0], device)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(crops)
        losses.append(total / per_epoch)
        done = epoch + 1
        if done % checkpoint_every == 0 or done == plan.epochs:
            _save_checkpoint(out, net, optimizer, done, losses, before + time.time() - began, options or {})
        yield done, plan.epochs, losses[-1]


def write_model(net, path: Path) -> None:
    """The trained weights as Cellpose writes a model file (``CPnet.save_model``: a state dict), atomically."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        torch.save(net.state_dict(), fh)
