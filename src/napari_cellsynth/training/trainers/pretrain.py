"""Pretrain a classifier's backbone on unlabelled crops (SimCLR, Chen et al. 2020): the stand-in for
the ImageNet weights that paper 001 fine-tunes and that cannot be downloaded here.

    cellsynth train pretrain --data unlabelled.npz --width 16 --steps 1500 --out runs/pretrain
    cellsynth train classifier --data labelled.npz --width 16 --init-from runs/pretrain --out runs/clf

Every crop is seen as two augmented views (flips, 90° turns, brightness, ``--shift``, a random
crop-and-resize of ``--crop-scale``–1 of the area, Gaussian ``--noise``; ``training/data/contrastive.py``).
The ResNet backbone's features (the classifier's penultimate layer) go through a 2-layer MLP
projection head, and the NT-Xent loss (temperature ``--temperature``) pulls each crop's two views
together against the other ``2 × batch - 2`` views of the batch.  Labels are not needed and not read:
any crops ``read_crops`` reads (.npz ``images``, a folder of images, a TIFF stack); ``--exclude``
leaves out crops by index (an .npz with ``source_index``, e.g. the cells a classifier will be tested on).

AdamW, linear warm-up over 5 % of ``--steps``, cosine decay to 0.  A run folder gets ``config.json``
(arch, width, channels, image size, the normalisation of the pretraining crops), ``backbone.pt`` (the
backbone's ``state_dict``, no head; what ``--init-from`` loads), ``last.pt`` (to ``--resume``),
``history.json`` and ``loss.png``.  ``--max-minutes`` stops with a checkpoint.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.datasets import CropSet, read_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.sizing import FIT_POLICIES
from napari_cellsynth.training.data.contrastive import ViewPairs
from napari_cellsynth.training.data.labelled_crops import channel_stats
from napari_cellsynth.training.records.pretrain_run import PretrainRun, PretrainSettings
from napari_cellsynth.training.nets.resnet import ResNetClassifier
from napari_cellsynth.training.reports.plots import plot_loss
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.devices import start_run
from napari_cellsynth.training.trainers.loop import Every, endless, training_loop
from napari_cellsynth.training.trainers.starting_backbone import backbone_state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth train pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help=".npz (images; labels ignored), TIFF stack or folder of images")
    p.add_argument("--exclude", help=".npz with 'source_index': crops to leave out (e.g. a classifier's data)")
    p.add_argument("--size", type=int, help="bring every crop to SIZE×SIZE (as the classifier's --size)")
    p.add_argument("--fit", choices=FIT_POLICIES, help="how crops reach --size: resize (default) or pad")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34"])
    p.add_argument("--width", type=int, default=64, help="channels of the first stage (as the classifier's)")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="crops per batch (2 views each)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps spent warming the lr up")
    p.add_argument("--temperature", type=float, default=0.5, help="NT-Xent temperature")
    p.add_argument("--projection-dim", type=int, default=64, help="output size of the projection head")
    p.add_argument("--shift", type=float, default=0.1, help="augmentation: shift by up to this fraction of the side")
    p.add_argument("--crop-scale", type=float, default=0.5,
                   help="augmentation: random crop of this to 1 × the area, resized back (1 = off)")
    p.add_argument("--noise", type=float, default=0.1, help="augmentation: Gaussian noise (normalised units)")
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this many minutes, with a checkpoint")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: for each of the 2N views, cross-entropy of finding its partner among the other
    2N - 1 views by cosine similarity / ``temperature``; the mean over the 2N views."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return nn.functional.cross_entropy(similarity, partner)


class Contrastive(nn.Module):
    """The classifier's backbone (its head unused) and a 2-layer MLP projection head on its features."""

    def __init__(self, backbone: ResNetClassifier, projection_dim: int):
        super().__init__()
        self.backbone = backbone
        d = backbone.feature_dim
        self.projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, projection_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, features = self.backbone(x)
        return self.projection(features)


def warmup_cosine(total: int, warmup: int):
    """The lr factor of step ``step``: linear warm-up, then cosine decay to 0 (as the classifier's)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


def load_unlabelled(args) -> CropSet:
    crops = read_crops(args.data, None, args.size, args.fit)
    for note in crops.notes:
        print(note, file=sys.stderr)
    if args.exclude:
        with np.load(args.exclude, allow_pickle=False) as held_out:
            keep = np.setdiff1d(np.arange(len(crops)), held_out["source_index"])
        crops = CropSet(crops.images[keep], None, crops.channels, [crops.names[i] for i in keep], crops.source,
                        crops.fit)
    if len(crops) < 2:
        raise ValueError(f"{args.data}: {len(crops)} crop(s) left; contrastive pretraining needs at least 2")
    return crops


def save_state(out: Path, model: Contrastive, optimizer, scheduler, step: int, history: list, batches) -> None:
    with atomic_open(out / "last.pt", "wb") as fh:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "history": history,
                    "rng": torch.get_rng_state(), "batch_rng": batches.generator.get_state()}, fh)
    with atomic_open(out / "backbone.pt", "wb") as fh:
        torch.save(backbone_state(model.backbone), fh)
    write_json_atomic(out / "history.json", history)


def train(args) -> Path:
    """Pretrain one backbone into ``args.out``; returns the run folder."""
    out, device = start_run(args)
    crops = load_unlabelled(args)
    images = crops.images
    mean, std = channel_stats(images)
    normalization = {"type": "standardize", "mean": mean, "std": std}
    batches = ViewPairs(images, normalization, args.batch_size, args.seed,
                        int(round(args.shift * min(images.shape[-2:]))), args.crop_scale, args.noise, device)
    backbone = ResNetClassifier(args.arch, images.shape[1], 1, int(images.shape[-1]), args.width)
    model = Contrastive(backbone, args.projection_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(args.steps, int(args.warmup * args.steps)))
    history, start = [], 0
    if args.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        batches.generator.set_state(state["batch_rng"].cpu())
        history, start = state["history"], state["step"]
        print(f"resuming {out} at step {start} of {args.steps}", file=sys.stderr)
    record = PretrainRun(
        method=f"SimCLR (NT-Xent, temperature {args.temperature})", data=str(Path(args.data).resolve()),
        crops=len(images), channels=crops.channels, image_size=[int(s) for s in images.shape[-2:]],
        normalization=normalization, steps=args.steps, settings=PretrainSettings.from_namespace(args),
        exclude=args.exclude, dtype=str(images.dtype), fit=crops.fit.fit if crops.fit is not None else args.fit,
        arch=args.arch, width=args.width)
    write_json_atomic(out / "config.json", record.to_dict())
    stream = endless(batches)

    def one_step(step: int) -> dict:
        model.train()
        view_1, view_2 = next(stream)
        loss = nt_xent(model(view_1), model(view_2), args.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": loss.detach(), "lr": optimizer.param_groups[0]["lr"]}

    every = {"checkpoint": Every(args.ckpt_every,
                                 lambda s: save_state(out, model, optimizer, scheduler, s, history, batches))}
    run_to_end(training_loop(one_step, start, args.steps, history, every, args.max_minutes,
                             log_every=min(50, args.ckpt_every), describe=lambda e: f"NT-Xent {e['loss']:.4f}",
                             quiet=args.quiet))
    if history:
        write_json_atomic(out / "config.json", record.finished(history[-1]["step"], history[-1]["seconds"]).to_dict())
        plot_loss(history, out / "loss.png", "NT-Xent")
    return out


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train pretrain"))
