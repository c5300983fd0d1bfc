"""Train a ResNet classifier on labelled microscopy crops.

    cellsynth train classifier --data ../shared/data/jurkat/jurkat_cells.npz \
        --label-map jurkat4 --seed 0 --out runs/jurkat4-s0

The recipe (defaults, chosen from measurements on five real data sets of 180 to 4,340 training
crops; docs/results.md, "Small-data training"): AdamW (lr 1e-3, weight decay 0.05), a schedule
counted in optimizer steps — at least ``--min-steps`` (1,000) however small the data, else
``--epochs`` (30) passes — with a linear warm-up over the first 5 % and a cosine decay to 0,
validation macro-F1 ``--evaluations`` (40) times over the run and the best checkpoint kept (``--select-on pr-auc``:
the best mean one-vs-rest PR-AUC instead, a score that needs no threshold and still moves while a rare class is never
the argmax; docs/results.md §13g).
Augmentation: flips, 90° turns, brightness and, on small data sets, a shift of up to ``--shift`` (0.1)
of the side in y and x, which brings object mode's windows closer to stack mode and lifts test macro-F1
on small sets.  Left unset, the shift is 0.1 when the run makes at least 50 passes over its training
crops (fewer than about 1,300 crops under the default schedule) and 0 otherwise: on the large sets it
cost macro-F1, and on Jurkat's 7 classes it took the rarest phases to F1 0 (docs/results.md, §1b).
``--epochs`` given alone means exactly that many passes.  ``--init-from RUN`` starts the network from
the backbone of a ``cellsynth train pretrain`` run (self-supervised, on unlabelled crops: the stand-in
for ImageNet weights; docs/results.md §1b) or of a finished classifier run on another task with
more labels (e.g. chromosome identity before translocation; docs/results.md §11); the head starts
fresh and the normalisation stays this run's own, computed on its training split.  Options that were measured and are off by
default: ``--patience N`` (early stopping; it cut the cosine decay short and lost 0.01–0.03
macro-F1), ``--sampling balanced`` (every class drawn equally often; no gain).  The trainer's
defaults before them (SGD for 30 passes: 90 steps on 180 crops) collapsed to the majority class
on one seed in ten.

Any input :mod:`napari_cellsynth.core.datasets` reads: .npz, TIFF stack + labels CSV, folder per class
of TIFF/PNG/JPEG, 8/16-bit, grey/RGB/multichannel; mixed sizes are brought to ``--size`` by
``--fit`` (recorded in the card, so inference fits crops the same way).  A class with fewer than 5
crops is trained on and left out of validation and test, with a warning.

A run folder gets ``config.json``, ``split.npz`` (indices), ``samples.npz`` (real test
crops for the export parity check), ``last.pt`` / ``best.pt`` checkpoints (selected
on validation macro-F1, or PR-AUC), ``history.json``, ``curves.png``, and the test metrics
(``metrics_test.json``, ``confusion_test.png``).  ``--resume`` continues from ``last.pt`` (at its
last evaluation, with a fresh shuffle).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.decisions import choose_thresholds
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.metrics import classification_metrics, format_table
from napari_cellsynth.core.scoring import ranking_metrics
from napari_cellsynth.core.sizing import FIT_POLICIES
from napari_cellsynth.training.data.focused_sampling import PARTS as FOCUSED_PARTS
from napari_cellsynth.training.data.focused_sampling import FocusedBatches, MinorityPool
from napari_cellsynth.training.data.labelled_crops import (SAMPLINGS, CropBatches, LabelledData, channel_stats,
                                                           load_extra, load_labelled, read_split, sampling_weights,
                                                           stratified_split, thin_classes, tiny_classes)
from napari_cellsynth.training.nets.resnet import CROP_SIZES, ResNetClassifier
from napari_cellsynth.training.records.classifier_run import (SELECTION_SCORES, ClassifierRun, ClassifierSettings,
                                                                kept_validation)
from napari_cellsynth.training.reports.plots import plot_confusion, plot_training_curves
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.devices import start_run
from napari_cellsynth.training.trainers.loop import Every, endless, training_loop
from napari_cellsynth.training.trainers.starting_backbone import load_backbone, read_pretrained


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth train classifier", description=__doc__,
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
    p.add_argument("--size", type=int, help="bring every crop to SIZE×SIZE (default: as they are; mixed sizes: "
                                            "the median longer side, at most 128)")
    p.add_argument("--fit", choices=FIT_POLICIES, help="how crops reach --size: resize (default; aspect kept, "
                                                       "then padded) or pad (centre pad/crop at native scale)")
    p.add_argument("--object-crop", default="auto", choices=["auto", "window", "resize"],
                   help="how the training crops were cut, so that objects in napari and batch runs are cut alike: "
                        "window (fixed window at native scale), resize (the object's box resized); auto: resize "
                        "when mixed sizes were resized, else window")
    p.add_argument("--object-mask", default="none", choices=["none", "object"],
                   help="object: the training crops hold only their object's pixels, the rest 0 (as the M-FISH "
                        "chromosome set's), so object crops in napari and batch runs are cut alike")
    p.add_argument("--pixel-size", type=float, help="µm per pixel of the training crops, recorded in the card")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34"])
    p.add_argument("--width", type=int, default=64, help="channels of the first stage (64 = standard ResNet)")
    p.add_argument("--init-from", metavar="RUN",
                   help="start from the backbone of a cellsynth train pretrain run or of a finished classifier run "
                        "(same --arch, --width, channel count and image size; the head starts fresh, the "
                        "normalisation is this run's own)")
    p.add_argument("--epochs", type=int, help="passes over the training crops (default 30, but at least "
                                              "--min-steps optimizer steps; given alone: exactly this many)")
    p.add_argument("--steps", type=int, help="optimizer steps in all (overrides --epochs and --min-steps)")
    p.add_argument("--min-steps", type=int, default=1000,
                   help="the fewest optimizer steps when --epochs is not given (small data sets need many passes)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd", "adam"],
                   help="adamw (default, lr 1e-3, weight decay 0.05); sgd: Nesterov momentum 0.9 (lr 0.05, "
                        "weight decay 5e-4); adam: paper 004's classifier (lr 1e-3)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the optimizer's, above)")
    p.add_argument("--weight-decay", type=float, help="default: the optimizer's, above")
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps spent warming the lr up linearly")
    p.add_argument("--evaluations", type=int, default=40,
                   help="validations over the run (at most one per epoch; with --epochs alone: one per epoch)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many validations without a better --select-on score (default 0: never stop early)")
    p.add_argument("--select-on", default="macro-f1", choices=list(SELECTION_SCORES),
                   help="the validation score that picks the checkpoint kept: macro-f1 (at argmax; default) or pr-auc "
                        "(the mean over classes of one-vs-rest PR-AUC: no threshold, so it still ranks checkpoints "
                        "while a rare class is never the argmax; docs/results.md §13g)")
    p.add_argument("--sampling", default="shuffle", choices=SAMPLINGS,
                   help="balanced: draw crops so that every class is seen equally often (with replacement)")
    p.add_argument("--no-augment", action="store_true", help="turn off flips, rotations, brightness and shifts")
    p.add_argument("--shift", type=float,
                   help="augmentation: move each crop by up to this fraction of its side in y and x, whole pixels, "
                        "edges repeated (0 = off).  Default: 0.1 (4 px on 40 px crops) when the run makes at least "
                        f"{AUTO_SHIFT_PASSES} passes over its training crops (small data sets), else 0 (docs/results.md "
                        "§1b)")
    p.add_argument("--class-weights", default="none", choices=["none", "balanced"],
                   help="balanced: weight the loss by n / (classes × count) of the training crops (extras included)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, help="seed of the train/val/test split (default: --seed)")
    p.add_argument("--split", help=".npz with 'train', 'val' and 'test' index arrays: a fixed split (e.g. test "
                                   "slides held out) instead of the seeded stratified one")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the training steps' forward pass (validation and export stay fp32).  Pays on "
                        "CPUs with bf16 units and costs on others: measure first (docs/results.md §2c)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (CUDA when there is a GPU)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def evaluate(model: nn.Module, batches: CropBatches) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy, true class indices and softmax probabilities (N×K)."""
    model.eval()
    losses, truth, probabilities = [], [], []
    with torch.inference_mode():
        for x, y in batches:
            logits, _ = model(x)
            losses.append(nn.functional.cross_entropy(logits, y, reduction="sum").item())
            truth.append(y.cpu().numpy())
            probabilities.append(torch.softmax(logits.float(), 1).cpu().numpy())
    truth_all = np.concatenate(truth)
    return sum(losses) / len(truth_all), truth_all, np.concatenate(probabilities)


def mean_pr_auc(truth: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float:
    """The mean over classes of one-vs-rest PR-AUC (average precision), over the classes that the crops hold
    with both positives and negatives; 0.0 when none does."""
    scores = [r["pr_auc"] for r in ranking_metrics(truth, probabilities, classes).values() if r["pr_auc"] is not None]
    return float(np.mean(scores)) if scores else 0.0


def predict_probabilities(model: nn.Module, batches: CropBatches) -> tuple[np.ndarray, np.ndarray]:
    """True class indices and softmax probabilities (N×K)."""
    _, truth, probabilities = evaluate(model, batches)
    return truth, probabilities


def decide_on_validation(model: nn.Module, val: CropBatches, test: tuple[np.ndarray, np.ndarray],
                         classes: list[str], out: Path) -> dict | None:
    """Thresholds for the rare classes chosen on the validation crops (``decision.json``, which the exporter puts
    in the card), and the metrics under them of ``test`` (true indices, probabilities); None when no threshold
    raised validation macro-F1."""
    truth, probabilities = predict_probabilities(model, val)
    rule = choose_thresholds(probabilities, truth, classes)
    write_json_atomic(out / "decision.json", rule.to_dict())
    if not rule.thresholds:
        return None
    truth, probabilities = test
    return {**classification_metrics(truth, rule.predict(probabilities, classes), classes),
            "thresholds": rule.thresholds}


OPTIMIZER_DEFAULTS = {"adamw": (1e-3, 0.05), "sgd": (0.05, 5e-4), "adam": (1e-3, 0.0)}


@dataclass(frozen=True)
class Schedule:
    """How long a run is and when it validates, all counted in optimizer steps."""

    total_steps: int
    eval_every: int
    warmup_steps: int
    steps_per_epoch: int

    @classmethod
    def from_args(cls, args, steps_per_epoch: int) -> "Schedule":
        if args.steps is not None:
            total = args.steps
        elif args.epochs is not None:
            total = args.epochs * steps_per_epoch
        else:
            total = max(30 * steps_per_epoch, args.min_steps)
        if args.epochs is not None and args.steps is None:
            eval_every = steps_per_epoch  # epochs asked for: one validation per epoch
        else:
            eval_every = max(steps_per_epoch, -(-total // args.evaluations))
        return cls(total, min(eval_every, total), int(args.warmup * total), steps_per_epoch)

    def lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 0 over the remaining steps."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_steps(model, optimizer, scheduler, train, val: CropBatches, classes, schedule: Schedule, start_step: int,
                history: list, out: Path, class_weights: torch.Tensor | None = None, patience: int = 0,
                quiet: bool = True, bf16: bool = False, select_on: str = "macro-f1"
                ) -> Generator[tuple[int, int], None, list]:
    """Train for ``schedule.total_steps`` optimizer steps in the trainers' loop (:mod:`.loop`), validating
    every ``schedule.eval_every``: each validation is a history entry (validation macro-F1 and mean PR-AUC) and
    writes ``best.pt`` (by the ``select_on`` score, :data:`SELECTION_SCORES`), ``last.pt`` and ``history.json``;
    stops early after ``patience`` validations without a better one.  ``bf16``: the training steps' forward pass
    and loss under bf16 autocast.  Yields ``(step, total)``; returns the history."""
    key, label = SELECTION_SCORES[select_on]

    def score(record: dict) -> float:
        return record.get(key, -1.0)  # a history written before the score was recorded

    best_index = max(range(len(history)), key=lambda i: score(history[i])) if history else None
    state = {"best": score(history[best_index]) if history else -1.0,
             "since_best": len(history) - 1 - best_index if history else 0, "stop": False}
    batches = endless(train)

    def one_step(step: int) -> dict:
        model.train()
        x, y = next(batches)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y, weight=class_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"train_loss": loss.item()}

    def validation(step: int) -> dict:
        val_loss, truth, probabilities = evaluate(model, val)
        metrics = classification_metrics(truth, probabilities.argmax(1), classes)
        return {"epoch": round(step / schedule.steps_per_epoch, 3), "val_loss": val_loss,
                "val_macro_f1": metrics["macro_f1"], "val_pr_auc": mean_pr_auc(truth, probabilities, classes),
                "val_accuracy": metrics["accuracy"], "lr": optimizer.param_groups[0]["lr"]}

    def checkpoint(step: int) -> None:
        record = history[-1]
        state["since_best"] += 1
        if score(record) > state["best"]:
            state["best"], state["since_best"] = score(record), 0
            with atomic_open(out / "best.pt", "wb") as fh:
                torch.save({"model": model.state_dict(), "epoch": record["epoch"], "step": step}, fh)
        state["stop"] = bool(patience) and state["since_best"] >= patience
        with atomic_open(out / "last.pt", "wb") as fh:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "step": step, "history": history,
                        "stopped_early": state["stop"], "rng": torch.get_rng_state(),
                        "train_rng": train.generator.get_state()}, fh)
        write_json_atomic(out / "history.json", history)
        tqdm.write(f"epoch {record['epoch']:7.2f}  step {step:6d}  train loss {record['train_loss']:.4f}  "
                   f"val loss {record['val_loss']:.4f}  val macro-F1 {record['val_macro_f1']:.3f}  "
                   f"val PR-AUC {record['val_pr_auc']:.3f}")
        if state["stop"]:
            tqdm.write(f"stopped early at step {step}: no better validation {label} in {state['since_best']} "
                       "validations (--patience)")

    return (yield from training_loop(one_step, start_step, schedule.total_steps, history,
                                     {"checkpoint": Every(schedule.eval_every, checkpoint)},
                                     log_every=schedule.eval_every, extra_log=validation,
                                     describe=lambda e: f"val {label} {score(e):.3f}",
                                     stop=lambda: state["stop"], quiet=quiet))


def prepare_run(args, out: Path) -> tuple[LabelledData, dict, ClassifierRun]:
    """Read the data, split it and write the run's record (``config.json``), its split and its test samples.
    The options are mapped once onto :class:`ClassifierSettings`, with the shift resolved from the data's size."""
    exclude = None
    if args.exclude:
        with np.load(args.exclude, allow_pickle=False) as held_out:
            exclude = held_out["source_index"]
    data = load_labelled(args.data, args.label_map, args.labels_csv, exclude, args.size, args.fit,
                         report=lambda line: print(line, file=sys.stderr))
    split_seed = args.split_seed if args.split_seed is not None else args.seed
    split = read_split(args.split, len(data.y)) if args.split else stratified_split(data.y, split_seed)
    tiny = [data.classes[k] for k in tiny_classes(data.y, len(data.classes))]
    if tiny and not args.split:
        print(f"warning: class(es) {tiny} have fewer than 5 crops: trained on, but left out of validation and "
              "test, which cannot score them", file=sys.stderr)
    in_val, in_data = data.counts(split["val"]), data.counts()
    warned = set() if args.split else set(tiny)  # the line above named those
    unvalidated = [name for name in data.classes if in_val[name] == 0 < in_data[name] and name not in warned]
    if unvalidated:  # a --split without them: the checkpoint is chosen without them (the PR-AUC mean leaves them out)
        print(f"warning: class(es) {unvalidated} have no validation crops, so the checkpoint (--select-on "
              f"{args.select_on}) is chosen without them; give a --split whose 'val' holds some of each class",
              file=sys.stderr)
    split["train"] = thin_classes(split["train"], data.y, data.classes, args.keep_fraction, split_seed)
    mean, std = channel_stats(data.crops.images[split["train"]])
    images = data.crops.images
    passes = planned_passes(args, len(split["train"]))
    settings = replace(ClassifierSettings.from_namespace(args), shift=resolved_shift(args.shift, passes))
    init_from = (read_pretrained(settings.init_from, settings.arch, settings.width, images.shape[1],
                                 images.shape[-2:]) if settings.init_from else None)
    record = ClassifierRun(
        data=str(Path(settings.data).resolve()), label_map=data.label_map, classes=data.classes,
        channels=data.crops.channels, image_size=list(images.shape[-2:]), dtype=str(images.dtype),
        value_range=[float(images.min()), float(images.max())],
        normalization={"type": "standardize", "mean": mean, "std": std},
        counts={part: data.counts(index) for part, index in split.items()}, settings=settings,
        fit=size_fit_record(data, settings), train_only_classes=tiny, object_crop=object_crop_record(data, settings),
        object_mask=settings.object_mask, pixel_size=settings.pixel_size,
        extra_train=extra_summary(settings.extra_train, data), excluded=int(0 if exclude is None else len(exclude)),
        init_from=init_from,
        augmentation={"on": not settings.no_augment, "shift": settings.shift, "shift_given": args.shift is not None,
                      "passes": round(passes, 1), "max_shift_px": max_shift(settings, images)})
    np.savez(out / "split.npz", **split)
    test = split["test"]
    pick = np.random.default_rng(0).permutation(len(test))[:64]
    np.savez(out / "samples.npz", images=images[test[pick]], labels=data.y[test[pick]])
    write_json_atomic(out / "config.json", record.to_dict())
    return data, split, record


AUTO_SHIFT, AUTO_SHIFT_PASSES = 0.1, 50


def planned_passes(args, n_train: int) -> float:
    """How many times the run's schedule goes over its training crops (optimizer steps × batch / crops)."""
    schedule = Schedule.from_args(args, -(-n_train // args.batch_size))
    return schedule.total_steps * args.batch_size / max(n_train, 1)


def resolved_shift(given: float | None, passes: float) -> float:
    """``--shift`` as given, else :data:`AUTO_SHIFT` for a run of at least :data:`AUTO_SHIFT_PASSES` passes and 0
    below.  Measured (docs/results.md §1b): the shift lifted test macro-F1 on the sets of 180–757 training crops
    (85–355 passes) and object mode's agreement with stack mode; on the sets of 3,337–4,340 crops (30 passes) it
    cost mfish24 0.02 and took Jurkat's Metaphase and Anaphase to F1 0 in most seeds."""
    if given is not None:
        return given
    return AUTO_SHIFT if passes >= AUTO_SHIFT_PASSES else 0.0


def max_shift(args, images: np.ndarray) -> int:
    """``--shift`` (a fraction of the crop's shorter side) in whole pixels; 0 without augmentation."""
    return 0 if args.no_augment else int(round(args.shift * min(images.shape[-2:])))


def size_fit_record(data: LabelledData, args) -> str | None:
    """The policy to record in the card: the one that fitted the training crops, or the one asked for."""
    return data.crops.fit.fit if data.crops.fit is not None else args.fit


def object_crop_record(data: LabelledData, args) -> str:
    """How the training crops were cut from their images, for objects cut in napari or a batch run:
    ``window`` (a fixed window at native scale, centred on the object) or ``resize`` (the object's box
    resized).  ``--object-crop auto`` infers it: crops brought to one size by ``resize`` were boxes of
    mixed sizes; crops of one size, or padded at native scale, are windows."""
    if args.object_crop != "auto":
        return args.object_crop
    return "resize" if size_fit_record(data, args) == "resize" else "window"


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
    lr, weight_decay = OPTIMIZER_DEFAULTS[args.optimizer]
    lr = args.lr if args.lr is not None else lr
    weight_decay = args.weight_decay if args.weight_decay is not None else weight_decay
    if args.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)


def balanced_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' class weights, n / (classes × count); a class without crops gets 0."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = np.zeros(n_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=y) * len(present) / n_classes
    return torch.tensor(weights, dtype=torch.float32)


def check_same_rule(args, out: Path) -> None:
    """Refuse, in one line, to resume a run under another ``--select-on``: its ``best.pt`` was kept by the other
    score, so the metrics would name a rule that did not choose the checkpoint."""
    config = out / "config.json"
    if not (args.resume and config.is_file()):
        return
    earlier = json.loads(config.read_text()).get("args", {}).get("select_on") or "macro-f1"
    if earlier != args.select_on:
        raise ValueError(f"{out} kept its checkpoints by validation {earlier} (--select-on {earlier}); resume it with "
                         f"that, or start a new run in another --out for --select-on {args.select_on}")


def train(args) -> dict:
    """Train, validate and test one classifier run into ``args.out``; returns the test metrics."""
    low, high = CROP_SIZES
    if args.size is not None and not low <= args.size <= high:  # before any crop is resized to it
        raise ValueError(f"--size {args.size}: the classifier takes crops of {low}–{high} px; give a size in that "
                         "range, or leave --size out (mixed sizes go to their median side, at most 128)")
    out, device = start_run(args)
    check_same_rule(args, out)
    if args.focused and device.type != "cpu":
        raise ValueError("--focused runs on the CPU only; leave out --device")
    data, split, record = prepare_run(args, out)
    args = record.settings  # the options, typed, with the shift this run resolved
    norm = record.normalization
    images = data.crops.images
    train_images, train_y = training_arrays(data, split, args.extra_train)
    if args.focused:
        train = FocusedBatches(train_images, train_y, norm, args.batch_size,
                               focused_pools(args, data, train_images, train_y), args.seed,
                               augment=not args.no_augment, parts=tuple(args.focused_parts),
                               max_shift=max_shift(args, images))
    else:
        train = CropBatches(train_images, train_y, norm, args.batch_size, augment=not args.no_augment,
                            seed=args.seed, shuffle=True, weights=sampling_weights(train_y, args.sampling),
                            device=device, max_shift=max_shift(args, images))
    val = CropBatches(images[split["val"]], data.y[split["val"]], norm, 256, False, 0, device=device)
    model = ResNetClassifier(args.arch, images.shape[1], len(data.classes), int(images.shape[-1]),
                             args.width)
    if args.init_from:
        load_backbone(model, args.init_from)
    model.to(device)
    optimizer = build_optimizer(model, args)
    schedule = Schedule.from_args(args, len(train))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
    history, start = [], 0
    if args.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", weights_only=True, map_location=device)
        if "step" not in state:
            raise ValueError(f"{out / 'last.pt'} was written by an older trainer (per-epoch schedule); "
                             "start a new run in another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        train.generator.set_state(state["train_rng"].cpu())
        history, start = state["history"], state["step"]
        if state.get("stopped_early"):
            start = schedule.total_steps
        print(f"resuming {out} at step {start} of {schedule.total_steps}", file=sys.stderr)
    write_json_atomic(out / "config.json", record.with_schedule(vars(schedule)).to_dict())
    weights = balanced_weights(train_y, len(data.classes)).to(device) if args.class_weights == "balanced" else None
    run_to_end(train_steps(model, optimizer, scheduler, train, val, data.classes, schedule, start, history, out,
                           weights, args.patience, quiet=args.quiet, bf16=args.bf16,
                           select_on=args.select_on))
    if not (out / "best.pt").is_file():
        raise ValueError(f"{out} has no best.pt: the run never validated; give more --steps")
    best = torch.load(out / "best.pt", weights_only=True, map_location=device)
    plot_training_curves(history, out / "curves.png", kept_validation(history, best.get("step")),
                         title=f"{args.arch} on {Path(args.data).name}")
    model.load_state_dict(best["model"])
    test = CropBatches(images[split["test"]], data.y[split["test"]], norm, 256, False, 0, device=device)
    truth, probabilities = predict_probabilities(model, test)
    metrics = classification_metrics(truth, probabilities.argmax(1), data.classes)
    metrics["ranking"] = ranking_metrics(truth, probabilities, data.classes)  # PR-AUC, ROC-AUC: no threshold
    metrics["best_epoch"] = best["epoch"]
    metrics["best_step"] = best.get("step")
    metrics["selected_on"] = args.select_on
    metrics["steps_run"] = history[-1]["step"] if history else 0
    metrics["train_only_classes"] = record.train_only_classes
    metrics["with_thresholds"] = decide_on_validation(model, val, (truth, probabilities), data.classes, out)
    write_json_atomic(out / "metrics_test.json", metrics)
    plot_confusion(metrics, out / "confusion_test.png", title=f"test split, seed {args.seed}")
    print(format_table(metrics))
    if metrics["with_thresholds"]:
        print(f"with the thresholds chosen on validation ({metrics['with_thresholds']['thresholds']}):")
        print(format_table(metrics["with_thresholds"]))
    return metrics


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train classifier"))
