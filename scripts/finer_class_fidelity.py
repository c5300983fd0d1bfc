"""Does a generator make its finer classes on purpose?  For each DDPM bundle given, COUNT cells of each class from the
same seed (so the same noise for every class), then:

- the classes a real-data classifier that made none of them calls them (``--judge``, default the 7-class zoo
  classifier), beside that classifier's recall on real test cells of each class (from its card);
- how much the class changes the cell: the mean absolute difference between two classes' cells made from the same
  noise, over the mean difference between one class's cells made from different noise (0: the class changes
  nothing; 1: as much as the noise does), on the network's normalised scale;
- with ``--data`` and ``--train-index`` (the run's ``train_index.npz``): memorisation, each generated cell's largest
  SSIM to the training cells of its class, beside the same for the real cells of the class that the run never saw.

    python scripts/finer_class_fidelity.py --bundle plain=runs/class-lr/bundle-plain \\
        --bundle class-lr=runs/class-lr/bundle-class-lr --classes Prophase Metaphase Anaphase Telophase \\
        --count 128 --data ../shared/data/jurkat/jurkat_cells.npz --label-map jurkat7 \
        --train-index runs/class-lr/ft-plain/train_index.npz --out runs/class-lr/fidelity.json

Prints a markdown table; writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.classify import classify_crops
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.training.data.labelled_crops import load_labelled
from napari_cellsynth.training.study.fidelity import nearest_ssim


def class_effect(cells: dict[str, np.ndarray]) -> float:
    """Mean |x_a − x_b| over cells of two classes from the same noise, over mean |x_a − x_a'| from other noise."""
    across = [np.abs(cells[a] - cells[b]).mean() for a, b in itertools.combinations(cells, 2)]
    within = [np.abs(x - np.roll(x, 1, axis=0)).mean() for x in cells.values()]
    return float(np.mean(across) / np.mean(within))


def memorisation(cells: np.ndarray, name: str, real: tuple[np.ndarray, np.ndarray, list[str]], train: np.ndarray,
                 most: int = 64) -> dict:
    """Mean largest SSIM of ``most`` generated cells to the training cells of class ``name``, and of as many of the
    class's real cells outside the training index."""
    images, y, classes = real
    own = np.flatnonzero(y == classes.index(name))
    seen, unseen = own[np.isin(own, train)], own[~np.isin(own, train)]
    data_range = float(images[seen].max()) - float(images[seen].min()) or 1.0
    return {"ssim_max": float(np.mean(nearest_ssim(cells[:most], images[seen], data_range))),
            "ssim_max_unseen_real": float(np.mean(nearest_ssim(images[unseen[:most]], images[seen], data_range))),
            "training_cells": int(len(seen)), "unseen_real_cells": int(len(unseen))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", action="append", required=True, metavar="NAME=BUNDLE")
    p.add_argument("--classes", nargs="+", required=True)
    p.add_argument("--count", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", default="zoo:classifier-jurkat7")
    p.add_argument("--data", help="the labelled cells the generators learnt from (for memorisation)")
    p.add_argument("--label-map")
    p.add_argument("--train-index", help="the run's train_index.npz: the cells it learnt from")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    real = None
    if args.data and args.train_index:
        data = load_labelled(args.data, args.label_map, report=lambda line: None)
        real = (data.crops.images, data.y, data.classes)
        with np.load(args.train_index) as saved:
            train = saved["index"]
    judge = OnnxModel(args.judge, kind="classifier")
    real_recall = {c: m["recall"] for c, m in (judge.card.trained.test_metrics or {}).get("per_class", {}).items()}
    result = {"judge": args.judge, "judge_real_test_recall": real_recall, "count": args.count, "seed": args.seed,
              "bundles": {}}
    for name, location in (item.split("=", 1) for item in args.bundle):
        model = OnnxModel(location, kind="ddpm")
        cells, calls, memorised = {}, {}, {}
        for cls in args.classes:
            made = run_to_end(generate(model, GenerationSettings(cls, args.count, seed=args.seed, batch_size=32)))
            cells[cls] = normalize(made.images, model.card.normalization)
            names = np.array(run_to_end(classify_crops(judge, made.images)).predicted_names)
            calls[cls] = {c: float(np.mean(names == c)) for c in judge.card.classes}
            if real is not None:
                memorised[cls] = memorisation(made.images, cls, real, train)
        result["bundles"][name] = {"bundle": location, "calls": calls, "class_effect": class_effect(cells),
                                   "memorisation": memorised}
        print(f"{name}: class effect {result['bundles'][name]['class_effect']:.3f}", flush=True)
    write_json_atomic(args.out, result)
    print("| bundle | class made | called it (judge's real recall) | "
          + " | ".join(judge.card.classes) + " | class effect | SSIM-max (unseen real) |")
    print("|---" * (len(judge.card.classes) + 5) + "|")
    for name, b in result["bundles"].items():
        for cls, shares in b["calls"].items():
            own = f"{shares.get(cls, 0):.3f} ({real_recall.get(cls, float('nan')):.2f})"
            m = b["memorisation"].get(cls)
            ssim = f"{m['ssim_max']:.3f} ({m['ssim_max_unseen_real']:.3f})" if m else "–"
            print(f"| {name} | {cls} | {own} | " + " | ".join(f"{shares[c]:.3f}" for c in judge.card.classes)
                  + f" | {b['class_effect']:.3f} | {ssim} |")
    return result


if __name__ == "__main__":
    main()
