"""Train a ResNet classifier on labelled microscopy crops.

    python -m training.train_classifier --data ../shared/data/jurkat/jurkat_cells.npz \
        --label-map jurkat4 --arch resnet18 --epochs 30 --seed 0 --out runs/jurkat4-s0

A run folder gets ``config.json``, ``split.npz`` (indices), ``samples.npz`` (real test
crops for the export parity check), ``last.pt`` / ``best.pt`` checkpoints (selected
on validation macro-F1), ``history.json``, ``curves.png``, and the test metrics
(``metrics_test.json``, ``confusion_test.png``).  ``--resume`` continues from ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.metrics import classification_metrics, format_table, plot_confusion

from .data import (CropBatches, LabelledData, channel_stats, load_extra, load_labelled, read_split,
                   stratified_split, thin_classes)
from .focused_sampling import PARTS as FOCUSED_PARTS
from .focused_sampling import FocusedBatches, MinorityPool
from .nets.resnet import ResNetClassifier
from .plots import plot_training_curves


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_classifier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help=".npz, TIFF stack (with --labels-csv) or folder per class")
    p.add_argument("--labels-csv", help="labels for a TIFF stack: a 'label' column, one row per slice")
    p.add_argument("--label-map", default="identity",
                   help="jurkat7, jurkat4 (mitotic phases merged into M), identity, or a .json map")
    p.add_argument("--exclude", help=".npz with 'source_index': crops to leave out (e.g. the shipped sample)")
    p.add_argument("--keep-fraction", nargs="+", default=[], metavar="CLASS=F",
                   help="keep only a seeded fraction of a class's training crops, e.g. M=0.1")
    p.add_argument("--extra-train", nargs="+", default=[], metavar="PATH",
                   help="labelled crops added to the training split only (e.g. generated images)")
    p.add_argument("--focused", nargs="+", default=[], metavar="CLASS=N",
                   help="paper 001's minority-focused sampling: each batch gets N × (2 generated + 1 mixup + "
                        "1 nonlinear mixup) crops of CLASS, the original part shrinking to keep --batch-size")
    p.add_argument("--focused-generated", nargs="+", default=[], metavar="PATH",
                   help="labelled generated crops (npz or folder per class, e.g. cellsynth generate's output) "
                        "for the generated slots of --focused")
    p.add_argument("--focused-parts", nargs="+", default=list(FOCUSED_PARTS), choices=list(FOCUSED_PARTS),
                   help="which parts fill the supplementary batch (the ablation of paper 001 Table 2)")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34"])
    p.add_argument("--width", type=int, default=64, help="channels of the first stage (64 = standard ResNet)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                   help="sgd: Nesterov momentum 0.9 (default); adam: Adam as paper 004's classifier (use --lr 1e-3)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--no-augment", action="store_true", help="turn off flips, rotations and brightness")
    p.add_argument("--class-weights", default="none", choices=["none", "balanced"],
                   help="balanced: weight the loss by n / (classes × count) of the training crops (extras included)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, help="seed of the train/val/test split (default: --seed)")
    p.add_argument("--split", help=".npz with 'train', 'val' and 'test' index arrays: a fixed split (e.g. test "
                                   "slides held out) instead of the seeded stratified one")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's choice)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def evaluate(model: nn.Module, batches: CropBatches) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy, true and predicted class indices."""
    model.eval()
    losses, truth, predicted = [], [], []
    with torch.inference_mode():
        for x, y in batches:
            logits, _ = model(x)
            losses.append(nn.functional.cross_entropy(logits, y, reduction="sum").item())
            truth.append(y.numpy())
            predicted.append(logits.argmax(1).numpy())
    truth_all = np.concatenate(truth)
    return sum(losses) / len(truth_all), truth_all, np.concatenate(predicted)


def train_epochs(model, optimizer, scheduler, train: CropBatches, val: CropBatches, classes, start_epoch: int,
                 epochs: int, history: list, out: Path,
                 class_weights: torch.Tensor | None = None) -> Generator[dict, None, list]:
    """Train, validate and checkpoint epoch by epoch; yields one event per batch and per epoch."""
    best = max((h["val_macro_f1"] for h in history), default=-1.0)
    for epoch in range(start_epoch, epochs):
        model.train()
        started, total, seen = time.time(), 0.0, 0
        for x, y in train:
            logits, _ = model(x)
            loss = nn.functional.cross_entropy(logits, y, weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            seen += len(y)
            yield {"event": "batch", "epoch": epoch, "loss": loss.item()}
        scheduler.step()
        val_loss, truth, predicted = evaluate(model, val)
        val_metrics = classification_metrics(truth, predicted, classes)
        record = {"epoch": epoch + 1, "train_loss": total / seen, "val_loss": val_loss,
                  "val_macro_f1": val_metrics["macro_f1"], "val_accuracy": val_metrics["accuracy"],
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
        history.append(record)
        if record["val_macro_f1"] > best:
            best = record["val_macro_f1"]
            with atomic_open(out / "best.pt", "wb") as fh:
                torch.save({"model": model.state_dict(), "epoch": epoch + 1}, fh)
        with atomic_open(out / "last.pt", "wb") as fh:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                        "rng": torch.get_rng_state(), "train_rng": train.generator.get_state()}, fh)
        write_json_atomic(out / "history.json", history)
        yield {"event": "epoch", **record}
    return history


def prepare_run(args, out: Path) -> tuple[LabelledData, dict, dict]:
    exclude = None
    if args.exclude:
        with np.load(args.exclude, allow_pickle=False) as held_out:
            exclude = held_out["source_index"]
    data = load_labelled(args.data, args.label_map, args.labels_csv, exclude)
    split_seed = args.split_seed if args.split_seed is not None else args.seed
    split = read_split(args.split, len(data.y)) if args.split else stratified_split(data.y, split_seed)
    split["train"] = thin_classes(split["train"], data.y, data.classes, args.keep_fraction, split_seed)
    mean, std = channel_stats(data.crops.images[split["train"]])
    images = data.crops.images
    config = {
        "task": "classifier", "data": str(Path(args.data).resolve()), "label_map": data.label_map,
        "classes": data.classes, "channels": data.crops.channels, "image_size": list(images.shape[-2:]),
        "dtype": str(images.dtype), "value_range": [float(images.min()), float(images.max())],
        "normalization": {"type": "standardize", "mean": mean, "std": std},
        "counts": {part: data.counts(index) for part, index in split.items()},
        "extra_train": extra_summary(args.extra_train, data),
        "excluded": int(0 if exclude is None else len(exclude)),
        "args": {k: v for k, v in vars(args).items() if k not in ("quiet",)},
    }
    np.savez(out / "split.npz", **split)
    test = split["test"]
    pick = np.random.default_rng(0).permutation(len(test))[:64]
    np.savez(out / "samples.npz", images=images[test[pick]], labels=data.y[test[pick]])
    write_json_atomic(out / "config.json", config)
    return data, split, config


def extra_summary(paths: list[str], data: LabelledData) -> list[dict]:
    summary = []
    for path in paths:
        _, y = load_extra(path, data.label_map, data.classes)
        counts = np.bincount(y, minlength=len(data.classes))
        summary.append({"path": str(Path(path).resolve()), "counts": dict(zip(data.classes, counts.tolist()))})
    return summary


def training_arrays(data: LabelledData, split: dict, extra: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The training split's crops plus any extra (generated) crops; never added to validation or test."""
    images, y = [data.crops.images[split["train"]]], [data.y[split["train"]]]
    for path in extra:
        extra_images, extra_y = load_extra(path, data.label_map, data.classes)
        if extra_images.shape[1:] != images[0].shape[1:]:
            raise ValueError(f"{path}: extra crops are {extra_images.shape[1:]}, training crops {images[0].shape[1:]}")
        images.append(extra_images)
        y.append(extra_y)
    return np.concatenate(images), np.concatenate(y)


def focused_pools(args, data: LabelledData, train_images: np.ndarray, train_y: np.ndarray) -> list[MinorityPool]:
    """One pool per ``--focused CLASS=N``: the class's training crops and its generated crops."""
    generated, generated_y = [], []
    for path in args.focused_generated:
        images, y = load_extra(path, data.label_map, data.classes)
        generated.append(images)
        generated_y.append(y)
    gen = np.concatenate(generated) if generated else train_images[:0]
    gen_y = np.concatenate(generated_y) if generated_y else train_y[:0]
    pools = []
    for spec in args.focused:
        name, _, n = spec.partition("=")
        if name not in data.classes or not n.isdigit():
            raise ValueError(f"--focused {spec!r}: use CLASS=N with a class of {data.classes} and N ≥ 1")
        k = data.classes.index(name)
        if "generated" in args.focused_parts and not (gen_y == k).any():
            raise ValueError(f"--focused {name}: no generated crops of {name} in --focused-generated; "
                             "generate some (cellsynth generate) or leave 'generated' out of --focused-parts")
        pools.append(MinorityPool(k, int(n), train_images[train_y == k], gen[gen_y == k]))
    return pools


def build_optimizer(model: nn.Module, args) -> torch.optim.Optimizer:
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay,
                           nesterov=True)


def balanced_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' class weights, n / (classes × count); a class without crops gets 0."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = np.zeros(n_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=y) * len(present) / n_classes
    return torch.tensor(weights, dtype=torch.float32)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    data, split, config = prepare_run(args, out)
    norm = config["normalization"]
    images = data.crops.images
    train_images, train_y = training_arrays(data, split, args.extra_train)
    if args.focused:
        train = FocusedBatches(train_images, train_y, norm, args.batch_size,
                               focused_pools(args, data, train_images, train_y), args.seed,
                               augment=not args.no_augment, parts=tuple(args.focused_parts))
    else:
        train = CropBatches(train_images, train_y, norm, args.batch_size, augment=not args.no_augment,
                            seed=args.seed, shuffle=True)
    val = CropBatches(images[split["val"]], data.y[split["val"]], norm, 256, False, 0)
    model = ResNetClassifier(args.arch, images.shape[1], len(data.classes), int(images.shape[-1]), args.width)
    optimizer = build_optimizer(model, args)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history, start = [], 0
    if args.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        train.generator.set_state(state["train_rng"])
        history, start = state["history"], state["epoch"]
        print(f"resuming {out} at epoch {start + 1}", file=sys.stderr)
    bar = tqdm(total=(args.epochs - start) * len(train), disable=args.quiet, unit="batch")
    weights = balanced_weights(train_y, len(data.classes)) if args.class_weights == "balanced" else None
    for event in train_epochs(model, optimizer, scheduler, train, val, data.classes, start, args.epochs,
                              history, out, weights):
        if event["event"] == "batch":
            bar.update()
            bar.set_description(f"epoch {event['epoch'] + 1}/{args.epochs} loss {event['loss']:.3f}")
        else:
            bar.write(f"epoch {event['epoch']:3d}  train loss {event['train_loss']:.4f}  val loss "
                      f"{event['val_loss']:.4f}  val macro-F1 {event['val_macro_f1']:.3f}")
    bar.close()
    plot_training_curves(history, out / "curves.png", title=f"{args.arch} on {Path(args.data).name}")
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    test = CropBatches(images[split["test"]], data.y[split["test"]], norm, 256, False, 0)
    _, truth, predicted = evaluate(model, test)
    metrics = classification_metrics(truth, predicted, data.classes)
    metrics["best_epoch"] = int(torch.load(out / "best.pt", weights_only=True)["epoch"])
    write_json_atomic(out / "metrics_test.json", metrics)
    plot_confusion(metrics, out / "confusion_test.png", title=f"test split, seed {args.seed}")
    print(format_table(metrics))
    return metrics


if __name__ == "__main__":
    main()
