"""Train a Cellpose 3 model (from scratch, or on from a model's weights) to segment chromosomes in M-FISH DAPI planes.

    cellsynth train cellpose --root ../shared/data/mfish --epochs 60 --out runs/cellpose-chromosomes

Pretrained Cellpose weights cannot be downloaded here, so the network starts from random weights
(``pretrained_model=False``; MKL-DNN off, which trains 5× faster on this CPU), or from a model of this
trainer's (``--init-from``: training goes on from its weights).  Instance masks
come from the karyotype images: each class's connected components are chromosomes, and overlap
pixels (255) go to the nearest chromosome.  Whole slides are held out (``--test-slides``, default
every fourth slide) and AP@0.5 is reported on their metaphases, which training never saw, twice: at the
flow and cell-probability thresholds chosen on the training metaphases (``reports.mask_thresholds``; the
export writes them into the bundle's card, and segmentation uses them unless told otherwise) and at
Cellpose's own 0.4 / 0.0.

``--pseudo-labels-from MODEL`` adds the root's unlabelled metaphases (M-FISH's EX ones; none of a held-out slide)
to training, labelled by MODEL's masks (self-training; a bundle's at its card's thresholds, a model file's at
Cellpose's); thresholds are still chosen on the
labelled training metaphases only, and the record names the metaphases added and the objects each was given.

Training is Cellpose's own (``cellpose_epochs``: ``train_seg``'s loop, one epoch at a time).  Every
``--checkpoint-every`` epochs the run folder's ``last.pt`` holds the weights, the optimizer's moments and the epoch
reached; ``--resume`` goes on from it, with the learning-rate schedule where it stopped, to the weights an
uninterrupted run reaches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.batch.record import cellpose_identity
from napari_cellsynth.core.bundle import CELLPOSE_THRESHOLDS
from napari_cellsynth.core.segment import BUILT_IN, CELLPOSE_NBASE, load_model_file
from napari_cellsynth.training.data.chromosome_masks import (chromosome_instances, load_split, pseudo_labels,
                                                             scores_of, unlabelled_metaphases)
from napari_cellsynth.training.records.cellpose_run import CellposeRun, CellposeSettings
from napari_cellsynth.training.reports.mask_thresholds import choose_thresholds, masks_at, network_outputs
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.cellpose_epochs import EpochPlan, read_checkpoint, train_epochs, write_model
from napari_cellsynth.training.trainers.checkpoints import refuse_to_overwrite


def cellpose_model(model: str):
    """What segments with ``model``: a built-in name, a cellpose bundle or a model file (with the widths it holds),
    as segmentation reads them."""
    from napari_cellsynth.core.segment import load_model

    return load_model(model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellsynth train cellpose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the mfish folder")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--limit", type=int, help="use at most this many training (and test) metaphases")
    parser.add_argument("--test-slides", nargs="+", help="slides to hold out, e.g. V26 A20")
    parser.add_argument("--bsize", type=int, default=128)
    parser.add_argument("--images-per-epoch", type=int, default=64,
                        help="random crops per epoch (few metaphases would give few optimizer steps)")
    parser.add_argument("--learning-rate", type=float, default=0.005, help="AdamW, as Cellpose 3 trains")
    parser.add_argument("--nbase", type=int, nargs=4, default=list(CELLPOSE_NBASE), metavar="N",
                        help="the network's widths per level (Cellpose's own: 32 64 128 256; 16 32 64 128 is "
                             "4x cheaper and fits the model zoo's 10 MB)")
    parser.add_argument("--init-from", help="start from this Cellpose model's weights instead of random ones: a "
                                            "cellpose bundle (zoo:NAME or a folder) or a model file this trainer "
                                            "wrote; its widths replace --nbase")
    parser.add_argument("--pseudo-labels-from", metavar="MODEL",
                        help="also train on the root's unlabelled metaphases (no karyotype plane, none of a held-out "
                             "slide), labelled by this Cellpose model's masks: zoo:NAME or a bundle folder (at its "
                             "card's thresholds), a built-in name or a model file (at Cellpose's 0.4 / 0.0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the network's random start (Cellpose seeds each epoch's crops by its index)")
    parser.add_argument("--checkpoint-every", type=int, default=5, metavar="EPOCHS",
                        help="epochs between checkpoints (OUT/last.pt), which --resume goes on from")
    parser.add_argument("--resume", action="store_true",
                        help="go on from OUT/last.pt, with the options the run started with")
    parser.add_argument("--out", required=True)
    return parser


# The options that decide what a run computes: a resumed run must be given the ones it started with.
RUN_OPTIONS = ("root", "epochs", "limit", "test_slides", "bsize", "images_per_epoch", "learning_rate", "nbase",
               "init_from", "seed", "pseudo_labels_from")


def run_options(args) -> dict:
    """:data:`RUN_OPTIONS` as given, with folders as absolute paths (a run resumed from another working directory
    reads the same data and starts from the same model)."""
    options = {key: getattr(args, key) for key in RUN_OPTIONS}
    options["root"] = str(Path(args.root).resolve())
    for key in ("init_from", "pseudo_labels_from"):
        if options[key] and not options[key].startswith("zoo:") and options[key] not in BUILT_IN:
            options[key] = str(Path(options[key]).resolve())
    return options


def as_option(key: str, value) -> str:
    """``--test-slides A20 V26`` as a user types it (``--limit`` not given: the option alone, marked so)."""
    shown = "(not given)" if value is None else " ".join(map(str, value)) if isinstance(value, list) else value
    return f"--{key.replace('_', '-')} {shown}"


def checkpoint_to_resume(args) -> dict | None:
    """The checkpoint ``--resume`` goes on from (None: a fresh run); refuses a run folder whose checkpoint would be
    overwritten without ``--resume``, or one started with other options."""
    state = read_checkpoint(Path(args.out))
    if state is None:
        return None
    refuse_to_overwrite(args.out, args.resume)
    given = run_options(args)
    changed = [key for key in RUN_OPTIONS if state["options"].get(key) != given[key]]
    if changed:
        given = " ".join(as_option(key, state["options"].get(key)) for key in changed)
        raise ValueError(f"{args.out} was started with {given}; resume it with the options it started with, "
                         "or start another --out")
    return state


def starting_network(init_from: str):
    """The network of the model training continues from, and its widths."""
    from napari_cellsynth.core.segment import is_bundle, load_bundle_model

    if is_bundle(init_from):
        model = load_bundle_model(init_from)
        return model.net, list(model.nbase[1:])  # cellpose_from_weights: [input channels, *widths]
    if not Path(init_from).is_file():
        raise FileNotFoundError(f"--init-from {init_from}: neither a cellpose bundle (zoo:NAME or a folder with "
                                "card.json) nor a model file; pass one that cellsynth train cellpose wrote")
    model = load_model_file(Path(init_from))
    return model.net, list(model.nbase[1:])


def train(args) -> dict:
    """Train one Cellpose model (from random weights or ``--init-from``'s) into ``args.out``, choose its thresholds
    on the training metaphases; returns its record with the held-out scores."""
    from napari_cellsynth.core.numba_cached import import_cellpose

    out = Path(args.out)
    resumed = checkpoint_to_resume(args)  # a folder refused before Cellpose is imported (seconds)
    import_cellpose()  # before Cellpose's training module: its compiled functions from the disk cache
    import torch
    from cellpose.models import CellposeModel

    out.mkdir(parents=True, exist_ok=True)
    options = run_options(args)
    start = starting_network(args.init_from) if args.init_from else None  # refused before any work
    started_from = cellpose_identity(args.init_from) if args.init_from else None
    labeller = cellpose_identity(args.pseudo_labels_from) if args.pseudo_labels_from else None  # refused early too
    train_set, test_set, held_out_slides = load_split(args.root, args.test_slides, args.limit)
    images = [m.dapi for m in train_set]
    masks = [chromosome_instances(m.karyotype) for m in train_set]
    pseudo_labelled = None
    if args.pseudo_labels_from:
        unlabelled = unlabelled_metaphases(args.root, held_out_slides, args.limit)
        if not unlabelled:
            raise ValueError(f"--pseudo-labels-from: {args.root} has no unlabelled metaphase (one without a "
                             "karyotype plane) outside the held-out slides; leave the option out")
        print(f"pseudo-labelling {len(unlabelled)} unlabelled metaphases with {args.pseudo_labels_from}",
              file=sys.stderr)
        labels = pseudo_labels(cellpose_model(args.pseudo_labels_from), unlabelled)
        images += [m.dapi for m in unlabelled]
        masks += labels
        pseudo_labelled = {"model": labeller,
                           "objects": {m.name: int(mask.max()) for m, mask in zip(unlabelled, labels)}}
    torch.manual_seed(args.seed)
    model = CellposeModel(gpu=False, pretrained_model=False, model_type=None, mkldnn=False)
    if start is not None:
        model.net, args.nbase = start
    elif tuple(args.nbase) != CELLPOSE_NBASE:
        from cellpose.resnet_torch import CPnet

        torch.manual_seed(args.seed)
        model.net = CPnet([2, *args.nbase], 3, sz=3, mkldnn=False, max_pool=True)
    plan = EpochPlan(args.epochs, args.images_per_epoch, args.bsize, args.learning_rate)
    if resumed is not None:
        print(f"resuming {out} at epoch {resumed['epoch']} of {args.epochs}", file=sys.stderr)
    started = time.time()
    for done, epochs, loss in train_epochs(model.net, images, masks, plan, out, args.checkpoint_every, resumed,
                                           options):
        if done % 10 == 0 or done == epochs:
            left = (time.time() - started) / (done - (resumed or {"epoch": 0})["epoch"]) * (epochs - done)
            print(f"epoch {done}/{epochs}  loss {loss:.4f}  about {left / 60:.0f} min left", file=sys.stderr)
    trained_until = read_checkpoint(out)
    model_path = out / "models" / "chromosomes"
    write_model(model.net, model_path)
    trained = load_model_file(model_path, args.nbase)
    thresholds = choose_thresholds(trained, images[:len(train_set)], masks[:len(train_set)],
                                   f"the {len(train_set)} training metaphases")
    held_out = network_outputs(trained, [m.dapi for m in test_set])  # once, for both pairs of thresholds
    truths = [chromosome_instances(m.karyotype) for m in test_set]
    record = CellposeRun(
        model=str(model_path), root=str(Path(args.root).resolve()), nbase=list(args.nbase), bsize=args.bsize,
        epochs=args.epochs, images_per_epoch=args.images_per_epoch, learning_rate=args.learning_rate,
        train_metaphases=len(train_set), test_metaphases=len(test_set), held_out_slides=held_out_slides,
        train_seconds=trained_until["seconds"], thresholds=thresholds, init_from=started_from,
        pseudo_labelled=pseudo_labelled,
        test=scores_of(test_set, masks_at(held_out, thresholds["flow"], thresholds["cellprob"]), truths),
        test_at_defaults=scores_of(test_set, masks_at(held_out, *CELLPOSE_THRESHOLDS), truths),
        final_train_loss=trained_until["losses"][-1], settings=CellposeSettings.from_namespace(args))
    report = record.to_dict()
    write_json_atomic(out / CellposeRun.FILE, report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("test", "test_at_defaults", "thresholds", "args")}
                     | {"ap50": record.test["ap50_mean"], "ap50_at_cellpose_thresholds":
                        record.test_at_defaults["ap50_mean"], "flow_threshold": thresholds["flow"],
                        "cellprob_threshold": thresholds["cellprob"]}))
    return report


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train cellpose"))
