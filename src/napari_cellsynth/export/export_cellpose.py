"""Export a Cellpose run (``cellsynth train cellpose``) to a ``cellpose`` bundle: ``card.json`` with the
network's widths and diameters, and ``arrays.npz`` with its weights (fp16 by default, never pickled).

    cellsynth export cellpose runs/cellpose-small --out models/cellpose-chromosomes-small

Cellpose runs its own network (flows, then dynamics), so this bundle holds weights for it rather than
an ONNX graph.  Parity: the stored weights and the trained ones segment the same held-out metaphases
(the run's ``--test-slides``); AP@0.5 of both is written in the card, and the export is refused when
they differ by more than ``--ap-tolerance``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.segment import CELLPOSE_NBASE, cellpose_from_weights
from napari_cellsynth.training.records.cellpose_run import CellposeRun
from napari_cellsynth.export.common import export_parser, fresh_staging, library_versions, publish

# the diameters are kept in fp32: Cellpose rescales images by their ratio
KEEP_FP32 = ("diam_mean", "diam_labels")


def stored_weights(state: dict, weights: str) -> dict[str, np.ndarray]:
    """The state dict as plain arrays; floating tensors in ``weights`` precision (fp16 or fp32)."""
    out = {}
    for key, value in state.items():
        array = value.detach().cpu().numpy()
        if weights == "fp16" and array.dtype.kind == "f" and not key.endswith(KEEP_FP32):
            array = array.astype(np.float16)
        out[key] = array
    return out


def export_cellpose(run: str | Path, out: str | Path, name: str | None = None, weights: str = "fp16",
                    root: str | None = None, parity_images: int = 4, ap_tolerance: float = 0.02) -> Path:
    from napari_cellsynth.training.data.chromosome_masks import average_precision, load_split

    run, out = Path(run), Path(out)
    record = CellposeRun.read(run)
    nbase = tuple(record.nbase or CELLPOSE_NBASE)
    state = torch.load(Path(record.model) if Path(record.model).is_file() else run / "models" / "chromosomes",
                       weights_only=True, map_location="cpu")
    arrays = stored_weights(state, weights)
    root = root or record.root
    if not root:
        raise ValueError("the run does not record its data folder; pass --root path/to/mfish for the parity check")
    _, held_out, _ = load_split(root, record.held_out_slides, None)
    held_out = held_out[:parity_images]
    trained = average_precision(cellpose_from_weights(state, nbase), held_out)
    stored = average_precision(cellpose_from_weights(arrays, nbase), held_out)
    if abs(trained["ap50_mean"] - stored["ap50_mean"]) > ap_tolerance:
        raise AssertionError(f"{weights} weights change AP@0.5 on {len(held_out)} held-out metaphases from "
                             f"{trained['ap50_mean']:.3f} to {stored['ap50_mean']:.3f} (tolerance {ap_tolerance}); "
                             "export with --weights fp32")
    staging = fresh_staging(out)
    card = Card(
        kind="cellpose", name=name or out.name, channels=["DAPI"],
        input={"size": [int(record.bsize or 128)] * 2, "diameter": float(state["diam_labels"].item()),
               "cellpose_channels": [0, 0]},
        normalization={"type": "none"},  # Cellpose normalises each image by its own percentiles
        training={"epochs": record.epochs, "images_per_epoch": record.images_per_epoch,
                  "learning_rate": record.learning_rate, "train_metaphases": record.train_metaphases,
                  "held_out_slides": record.held_out_slides, "train_seconds": record.train_seconds,
                  "test_ap50": [record.test["ap50_mean"], record.test["ap50_std"]],
                  **({"test_ap50_at_cellpose_thresholds": [record.test_at_defaults["ap50_mean"],
                                                           record.test_at_defaults["ap50_std"]]}
                     if record.test_at_defaults else {}),
                  "test_metaphases": record.test["n_images"],
                  **({"pseudo_labelled": record.pseudo_labelled} if record.pseudo_labelled else {}),
                  "init_from": record.init_from or ({"model": record.settings.init_from}
                                                    if record.settings and record.settings.init_from else None),
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(),
        extra={"cellpose": {"nbase": list(nbase), "nchan": 2, "weights": weights,
                            **({"thresholds": record.thresholds} if record.thresholds else {})},
               "export": {"parity_on": f"{len(held_out)} held-out metaphases ({', '.join(m.name for m in held_out)})",
                          "ap50_trained": trained["ap50_mean"], "ap50_stored": stored["ap50_mean"],
                          "ap_tolerance": ap_tolerance}})
    save_bundle(staging, card, arrays)
    return publish(staging, out)


def main(argv: list[str] | None = None) -> None:
    parser = export_parser("cellsynth export cellpose", __doc__, "a run folder written by cellsynth train cellpose")
    parser.add_argument("--weights", default="fp16", choices=["fp16", "fp32"])
    parser.add_argument("--root", help="the mfish folder, where the run's recorded one no longer holds")
    parser.add_argument("--parity-images", type=int, default=4, help="held-out metaphases of the parity check")
    args = parser.parse_args(argv)
    path = export_cellpose(args.run, args.out, args.name, args.weights, args.root, args.parity_images)
    card = json.loads((path / "card.json").read_text())
    print(f"wrote {path}: AP@0.5 trained {card['export']['ap50_trained']:.3f}, "
          f"stored {card['export']['ap50_stored']:.3f}")


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export cellpose"))
