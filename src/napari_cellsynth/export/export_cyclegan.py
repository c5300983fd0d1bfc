"""Export a CycleGAN run's DAPI → FISH generator to a bundle: ``model.onnx`` = one pass f(x) → fake.

    cellsynth export cyclegan runs/cyclegan-transloc --out bundles/cyclegan-transloc

Input ``x`` (N×3×H×W float32: the DAPI crop in [-1, 1] repeated on the three channels, as the
BBDM's condition); output ``fake`` (the FISH crop in [-1, 1]).  Parity on real DAPI crops.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.cards import CycleganCard
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import normalize
from napari_cellsynth.export.common import export_main, export_onnx, fresh_staging, library_versions, publish_checked
from napari_cellsynth.training.data.translocations import load_pairs
from napari_cellsynth.training.nets.cyclegan import build_cyclegan
from napari_cellsynth.training.records.cyclegan_run import CycleGanRun


def export_cyclegan(run: str | Path, out: str | Path, name: str | None = None, atol: float = 1e-3,
                    rtol: float = 1e-3) -> Path:
    run, out = Path(run), Path(out)
    record = CycleGanRun.read(run)
    channels, (h, w) = len(record.channels), record.image_size
    generator = build_cyclegan(record.net, channels)["g_ab"]
    state = torch.load(run / "last.pt", weights_only=True, map_location="cpu")
    generator.load_state_dict(state["g_ab"])
    generator.eval()
    staging = fresh_staging(out)
    export_onnx(generator, (torch.zeros(2, channels, h, w),), staging / "model.onnx", list(CycleganCard.INPUTS), ["fake"])
    card = Card(
        kind="cyclegan", name=name or out.name, classes=[record.made_class], channels=record.channels,
        input={"size": [int(h), int(w)], "layout": "NCHW", "dtype": record.dtype,
               "value_range": record.value_range, "name": "x"},
        normalization=record.normalization, outputs={"names": ["fake"], "prediction": "image"},
        training={"data": {"source": record.data, "counts": record.counts,
                           "exclude_slides": record.exclude_slides, "target": record.target,
                           "planes": record.planes},
                  "steps": int(state["step"]), "net": record.net,
                  "final_losses": state["history"][-1] if state["history"] else None,
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}}, extra={"condition": record.condition})
    save_bundle(staging, card)
    pairs = load_pairs(record.data, record.exclude_slides, only_translocations=False)
    x = np.repeat(normalize(pairs["dapi"][:12], record.condition_normalization), channels, axis=1)
    return publish_checked(staging, out, card, generator, {"x": x}, "fake", f"{len(x)} real DAPI crops", atol, rtol)


def main(argv: list[str] | None = None) -> None:
    export_main("cellsynth export cyclegan", __doc__, export_cyclegan, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export cyclegan"))
