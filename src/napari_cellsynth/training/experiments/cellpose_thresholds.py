"""Choose a Cellpose bundle's flow and cell-probability thresholds on its training metaphases, measure them on its
held-out ones, and write the bundle again with them in its card (issue 35 item 7).

    python -m napari_cellsynth.training.experiments.cellpose_thresholds zoo:cellpose-chromosomes \\
        --root ../shared/data/mfish --out runs/cellpose-thresholds/cellpose-chromosomes

Bundles exported before ``cellsynth train cellpose`` chose thresholds segment at Cellpose's own 0.4 / 0.0.  This
runs the network once on every karyotyped metaphase of the M-FISH folder, chooses the grid point of highest mean
AP@0.5 on the slides the bundle trained on (``reports.mask_thresholds``), and scores both settings on the slides its
card holds out, paired per metaphase (Wilcoxon signed-rank) and per slide.  The new bundle (``--out``: never the
input) has the same weights and a card that records the thresholds, how they were chosen and the held-out AP@0.5 at
them and at Cellpose's; ``summary.json`` beside it holds the whole grid on both sets.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.bundle import CELLPOSE_THRESHOLDS, Card, check_kind, read_card, save_bundle, verify_files
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.segment import load_bundle_model
from napari_cellsynth.core.zoo import resolve
from napari_cellsynth.export.common import fresh_staging, publish
from napari_cellsynth.training.data.chromosome_masks import chromosome_instances, load_split
from napari_cellsynth.training.reports.mask_thresholds import choose_thresholds, network_outputs, threshold_grid
from napari_cellsynth.training.reports.summaries import paired_test

SHARED = Path(__file__).resolve().parents[4].parent / "shared" / "data"


def rethresholded_card(card: Card, thresholds: dict, at_chosen: dict, at_defaults: dict) -> Card:
    data = card.to_dict()
    data["cellpose"] = {**data.get("cellpose", {}), "thresholds": thresholds}
    data["training"] = {**data["training"], "test_ap50": [at_chosen["ap50_mean"], at_chosen["ap50_std"]],
                        "test_ap50_at_cellpose_thresholds": [at_defaults["ap50_mean"], at_defaults["ap50_std"]]}
    return Card.from_dict(data)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.cellpose_thresholds",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="a cellpose bundle: zoo:NAME or a folder")
    p.add_argument("--root", default=str(SHARED / "mfish"), help="the mfish folder (default ../shared/data/mfish)")
    p.add_argument("--limit", type=int, help="at most this many training (and held-out) metaphases")
    p.add_argument("--out", required=True, help="the new bundle's folder (not the input's)")
    args = p.parse_args(argv)
    bundle, out = resolve(args.bundle), Path(args.out)
    if out.resolve() == Path(bundle).resolve():
        raise ValueError(f"--out {out} is the input bundle; write the re-thresholded bundle to another folder")
    card = read_card(bundle)
    check_kind(card, "cellpose", str(bundle))
    if not card.trained.held_out_slides:
        raise ValueError(f"{args.bundle}: its card records no held-out slides, so its training metaphases are unknown; "
                         "retrain it with cellsynth train cellpose, which chooses thresholds itself")
    if not Path(args.root).is_dir():
        raise FileNotFoundError(f"M-FISH folder {args.root} not found; pass --root path/to/mfish")
    train, held_out, slides = load_split(args.root, list(card.trained.held_out_slides), args.limit)
    model = load_bundle_model(bundle)
    train_truth = [chromosome_instances(m.karyotype) for m in train]
    chosen = choose_thresholds(model, [m.dapi for m in train], train_truth, f"the {len(train)} training metaphases")
    outputs, truth = network_outputs(model, [m.dapi for m in held_out]), [chromosome_instances(m.karyotype)
                                                                         for m in held_out]
    grid = threshold_grid(outputs, truth)  # holds the chosen point and Cellpose's
    at = {name: next({k: v for k, v in p.items() if k not in ("flow", "cellprob")} for p in grid
                     if (p["flow"], p["cellprob"]) == point)
          for name, point in (("chosen", (chosen["flow"], chosen["cellprob"])), ("cellpose", CELLPOSE_THRESHOLDS))}
    change = np.array(at["chosen"]["per_image"]) - np.array(at["cellpose"]["per_image"])
    per_slide = {s: {k: float(np.mean([a for m, a in zip(held_out, at[k]["per_image"]) if m.slide == s])) for k in at}
                 for s in sorted({m.slide for m in held_out})}
    summary = {"bundle": args.bundle, "root": args.root, "thresholds": chosen, "held_out_slides": slides,
               "held_out": {"metaphases": [m.name for m in held_out], **at,
                            "chosen_minus_cellpose": paired_test(list(range(len(held_out))), change),
                            "per_slide": per_slide,
                            "grid": grid},
               "command": "python -m napari_cellsynth.training.experiments.cellpose_thresholds "
                          + " ".join(argv or sys.argv[1:])}
    staging = fresh_staging(out)
    verify_files(bundle, card)
    for name in card.files:  # the same weights, byte for byte
        shutil.copyfile(Path(bundle) / name, staging / name)
    save_bundle(staging, rethresholded_card(card, chosen, at["chosen"], at["cellpose"]))
    publish(staging, out)
    write_json_atomic(out.parent / f"{out.name}-summary.json", summary)
    print(f"thresholds chosen on {chosen['chosen_on']}: flow {chosen['flow']}, cell probability {chosen['cellprob']} "
          f"(AP@0.5 there {chosen['ap50']:.3f}; {chosen['ap50_at_defaults']:.3f} at Cellpose's 0.4 / 0.0)")
    print(f"held out ({', '.join(slides)}, {len(held_out)} metaphases): AP@0.5 {at['chosen']['ap50_mean']:.3f} ± "
          f"{at['chosen']['ap50_std']:.3f} against {at['cellpose']['ap50_mean']:.3f} ± {at['cellpose']['ap50_std']:.3f} "
          f"at Cellpose's; chromosomes found {at['chosen']['found']} against {at['cellpose']['found']} of "
          f"{at['chosen']['objects']}; Wilcoxon p {summary['held_out']['chosen_minus_cellpose']['p_wilcoxon']:.2g}")
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.cellpose_thresholds"))
