"""Train a Cellpose 3 model from scratch to segment chromosomes in M-FISH DAPI planes.

    cellsynth train cellpose --root ../shared/data/mfish --epochs 60 --out runs/cellpose-chromosomes

Pretrained Cellpose weights cannot be downloaded here, so the network starts from random weights
(``pretrained_model=False``; MKL-DNN off, which trains 5× faster on this CPU).  Instance masks
come from the karyotype images: each class's connected components are chromosomes, and overlap
pixels (255) go to the nearest chromosome.  Whole slides are held out (``--test-slides``, default
every fourth slide) and AP@0.5 is reported on their metaphases, which training never saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.segment import CELLPOSE_NBASE, cellpose_from_weights
from napari_cellsynth.training.data.chromosome_masks import average_precision, chromosome_instances, load_split
from napari_cellsynth.training.records.cellpose_run import CellposeRun, CellposeSettings
from napari_cellsynth.training.trainers.arguments import entry_points


def load_trained(model_path: Path, nbase=CELLPOSE_NBASE):
    """The CellposeModel of a model file this trainer wrote (a state dict, loaded with ``weights_only``)."""
    import torch

    return cellpose_from_weights(torch.load(model_path, weights_only=True, map_location="cpu"), tuple(nbase))


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
    parser.add_argument("--out", required=True)
    return parser


def train(args) -> dict:
    """Train one Cellpose model from scratch into ``args.out``; returns its held-out scores."""
    from napari_cellsynth.core.numba_cached import import_cellpose

    import_cellpose()  # before Cellpose's training module: its compiled functions from the disk cache
    from cellpose import train
    from cellpose.models import CellposeModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, test_set, held_out_slides = load_split(args.root, args.test_slides, args.limit)
    model = CellposeModel(gpu=False, pretrained_model=False, model_type=None, mkldnn=False)
    if tuple(args.nbase) != CELLPOSE_NBASE:
        from cellpose.resnet_torch import CPnet

        model.net = CPnet([2, *args.nbase], 3, sz=3, mkldnn=False, max_pool=True)
    started = time.time()
    model_path, train_losses, _ = train.train_seg(
        model.net, train_data=[m.dapi for m in train_set],
        train_labels=[chromosome_instances(m.karyotype) for m in train_set], channels=[0, 0],
        n_epochs=args.epochs, bsize=args.bsize, batch_size=8, learning_rate=args.learning_rate,
        save_path=str(out), model_name="chromosomes", min_train_masks=1, nimg_per_epoch=args.images_per_epoch)
    seconds = time.time() - started
    record = CellposeRun(
        model=str(model_path), root=str(Path(args.root).resolve()), nbase=list(args.nbase), bsize=args.bsize,
        epochs=args.epochs, images_per_epoch=args.images_per_epoch, learning_rate=args.learning_rate,
        train_metaphases=len(train_set), test_metaphases=len(test_set), held_out_slides=held_out_slides,
        train_seconds=seconds, test=average_precision(load_trained(Path(model_path), args.nbase), test_set),
        final_train_loss=float(np.asarray(train_losses)[-1]), settings=CellposeSettings.from_namespace(args))
    report = record.to_dict()
    write_json_atomic(out / CellposeRun.FILE, report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("test", "args")} | {"ap50": record.test["ap50_mean"]}))
    return report


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train cellpose"))
