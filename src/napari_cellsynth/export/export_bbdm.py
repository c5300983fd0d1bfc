"""Export a BBDM run's EMA network to a bundle: ``model.onnx`` = one forward pass f(x_t, t) → x_t - x_0.

    cellsynth export bbdm runs/bbdm-transloc --out bundles/bbdm-transloc

Inputs ``x`` (N×3×H×W float32, the bridge state) and ``t`` (N int64, 0…T); output ``prediction``
(the BBDM objective x_t - x_0).  The card carries the bridge schedule, the target channels and
their [-1, 1] normalisation, the condition (DAPI, its normalisation, repeated on the target's
channels) and the training provenance.  Parity: torch and ONNX Runtime on real chromosome pairs
bridged at several timesteps.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.cards import BbdmCard
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.schedules import BridgeSchedule
from napari_cellsynth.export.common import (TrainedWeights, export_main, export_onnx, fresh_staging, library_versions,
                                            load_last_ema, load_snapshot, publish_checked)
from napari_cellsynth.training.data.translocations import load_pairs
from napari_cellsynth.training.nets.unet import bridge_unet
from napari_cellsynth.training.records.bbdm_run import BbdmRun


def load_bbdm_run(run: Path, snapshot: int | None = None) -> tuple[BbdmRun, torch.nn.Module, TrainedWeights]:
    """The run's record and EMA network: the last one, or the fp16 snapshot of step ``snapshot``."""
    record = BbdmRun.read(run)
    model = bridge_unet(record.net, len(record.channels), int(record.image_size[-1]))
    if snapshot is not None:
        return record, load_snapshot(run, snapshot, model), TrainedWeights(snapshot, None)
    return record, *load_last_ema(run, model)


def real_bridged_inputs(record: BbdmRun, n: int = 12) -> dict[str, np.ndarray]:
    pairs = load_pairs(record.data, record.exclude_slides, record.only_translocations)
    x0 = normalize(pairs[record.planes][:n], record.normalization)
    y = np.repeat(normalize(pairs["dapi"][:n], record.condition_normalization), x0.shape[1], axis=1)
    schedule = BridgeSchedule.from_card(record.schedule)
    t = np.linspace(0, schedule.num_timesteps, len(x0)).astype(np.int64)
    rng = np.random.default_rng(0)
    return {"x": schedule.forward(x0, y, t, rng.standard_normal(x0.shape).astype(np.float32)), "t": t}


def export_bbdm(run: str | Path, out: str | Path, name: str | None = None, atol: float = 1e-3,
                rtol: float = 1e-3, snapshot: int | None = None) -> Path:
    """``snapshot`` exports the EMA snapshot of that step instead of the last weights."""
    run, out = Path(run), Path(out)
    record, model, weights = load_bbdm_run(run, snapshot)
    staging = fresh_staging(out)
    c, (h, w) = len(record.channels), record.image_size
    export_onnx(model, (torch.zeros(2, c, h, w), torch.zeros(2, dtype=torch.long)), staging / "model.onnx",
                list(BbdmCard.INPUTS), ["prediction"])
    card = Card(
        kind="bbdm", name=name or out.name, classes=[record.made_class], channels=record.channels,
        input={"size": [int(h), int(w)], "layout": "NCHW", "dtype": record.dtype,
               "value_range": record.value_range, "name": "x"},
        normalization=record.normalization, outputs={"names": ["prediction"], "prediction": "x_t - x_0"},
        training={"data": {"source": record.data, "train_count": record.train_count,
                           "exclude_slides": record.exclude_slides,
                           "only_translocations": record.only_translocations},
                  "init_from": record.init_from, "steps": weights.step, "loss": record.loss,
                  "final_loss": weights.final_loss, "net": record.net,
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
        extra={"schedule": record.schedule, "condition": record.condition})
    save_bundle(staging, card)
    feeds = real_bridged_inputs(record)
    return publish_checked(staging, out, card, model, feeds, "prediction",
                           f"{len(feeds['x'])} real chromosome pairs, bridged", atol, rtol)


def main(argv: list[str] | None = None) -> None:
    export_main("cellsynth export bbdm", __doc__, export_bbdm, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export bbdm"))
