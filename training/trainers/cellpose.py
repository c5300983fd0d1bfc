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
from skimage.measure import label as connected
from skimage.segmentation import expand_labels

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings, segment
from napari_cellsynth.training.data.mfish import OVERLAP, list_metaphases, read_metaphase
from napari_cellsynth.training.trainers.arguments import entry_points


def chromosome_instances(karyotype: np.ndarray, min_area: int = 20) -> np.ndarray:
    """Instance labels (int32) of every chromosome; overlap pixels join the nearest one."""
    out = np.zeros(karyotype.shape, np.int32)
    for k in range(1, 25):
        components = connected(karyotype == k)
        sizes = np.bincount(components.ravel())
        for c in np.flatnonzero(sizes >= min_area):
            if c:
                out[components == c] = out.max() + 1
    grown = expand_labels(out, distance=5)
    overlap = karyotype == OVERLAP
    out[overlap] = grown[overlap]
    return out


def load_split(root: str, test_slides: list[str] | None, limit: int | None):
    found = [read_metaphase(f, n) for f, n in list_metaphases(root)]
    found = [m for m in found if m.karyotype is not None]
    slides = sorted({m.slide for m in found})
    test = set(test_slides) if test_slides else set(slides[3::4])
    train = [m for m in found if m.slide not in test][:limit]
    held_out = [m for m in found if m.slide in test][:limit]
    return train, held_out, sorted(test)


def average_precision(model_path: Path, metaphases, diameter: float | None = None) -> dict:
    from cellpose import metrics
    from cellpose.models import CellposeModel

    model = CellposeModel(gpu=False, pretrained_model=str(model_path))
    truth = [chromosome_instances(m.karyotype) for m in metaphases]
    predicted = [run_to_end(segment(m.dapi, SegmentSettings(str(model_path), diameter), model=model))
                 for m in metaphases]
    ap, tp, fp, fn = metrics.average_precision(truth, predicted, threshold=[0.5])
    return {"ap50_mean": float(ap[:, 0].mean()), "ap50_std": float(ap[:, 0].std()), "n_images": len(truth),
            "per_image": {m.name: float(a) for m, a in zip(metaphases, ap[:, 0])}}


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
    parser.add_argument("--out", required=True)
    return parser


def train(args) -> dict:
    """Train one Cellpose model from scratch into ``args.out``; returns its held-out scores."""
    from cellpose import train
    from cellpose.models import CellposeModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, test_set, held_out_slides = load_split(args.root, args.test_slides, args.limit)
    model = CellposeModel(gpu=False, pretrained_model=False, model_type=None, mkldnn=False)
    started = time.time()
    model_path, train_losses, _ = train.train_seg(
        model.net, train_data=[m.dapi for m in train_set],
        train_labels=[chromosome_instances(m.karyotype) for m in train_set], channels=[0, 0],
        n_epochs=args.epochs, bsize=args.bsize, batch_size=8, learning_rate=args.learning_rate,
        save_path=str(out), model_name="chromosomes", min_train_masks=1, nimg_per_epoch=args.images_per_epoch)
    seconds = time.time() - started
    report = {"model": str(model_path), "epochs": args.epochs, "images_per_epoch": args.images_per_epoch,
              "learning_rate": args.learning_rate, "train_metaphases": len(train_set),
              "test_metaphases": len(test_set), "held_out_slides": held_out_slides,
              "train_seconds": seconds, "final_train_loss": float(np.asarray(train_losses)[-1]),
              "test": average_precision(Path(model_path), test_set)}
    write_json_atomic(out / "report.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "test"} | {"ap50": report["test"]["ap50_mean"]}))
    return report


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train cellpose"))
