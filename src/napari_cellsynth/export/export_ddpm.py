"""Export a DDPM run's EMA noise network to a bundle: ``model.onnx`` = one forward pass f(x, t, class).

    cellsynth export ddpm runs/ddpm-jurkat4-M --out bundles/ddpm-jurkat4-M

Inputs ``x`` (N×C×H×W float32), ``t`` (N int64 timesteps), ``class`` (N int64; the null class
``len(classes)`` is unconditional); output ``eps`` (or ``v`` for a v-predicting run).  The card
carries the schedule, the prediction type, classes, channels, size, the [-1, 1] normalisation and the training provenance.
Parity: torch and ONNX Runtime on real training crops noised at several timesteps.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.cards import DdpmCard
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.schedules import NoiseSchedule
from napari_cellsynth.export.common import (TrainedWeights, export_main, export_onnx, fresh_staging, library_versions,
                                            load_last_ema, load_snapshot, publish_checked)
from napari_cellsynth.training.nets.unet import UNet, unet_from_net
from napari_cellsynth.training.records.ddpm_run import DdpmRun


def load_ddpm_run(run: Path, snapshot: int | None = None) -> tuple[DdpmRun, UNet, TrainedWeights]:
    """The run's record and EMA network: the last one, or the fp16 snapshot of step ``snapshot``."""
    record = DdpmRun.read(run)
    model = unet_from_net(record.net, len(record.channels), int(record.image_size[-1]))
    if snapshot is not None:
        return record, load_snapshot(run, snapshot, model), TrainedWeights(snapshot, None)
    return record, *load_last_ema(run, model)


def training_crops(record: DdpmRun, run: Path) -> np.ndarray:
    """The run's training crops, normalised as the network saw them."""
    crops = read_crops(record.data, size=record.size, fit=record.fit)
    with np.load(run / "train_index.npz", allow_pickle=False) as saved:
        index = saved["index"]
    return normalize(crops.images[index], record.normalization)


def x0_bounds(train: np.ndarray) -> dict:
    """Each channel's minimum and maximum over the training crops (normalised scale): the bounds of
    static x̂₀ thresholding, so that a sampler never leaves the range real data occupies."""
    return {"low": train.min(axis=(0, 2, 3)).astype(float).round(4).tolist(),
            "high": train.max(axis=(0, 2, 3)).astype(float).round(4).tolist(),
            "measured_on": f"{len(train)} training crops"}


def real_noised_inputs(record: DdpmRun, train: np.ndarray, n: int = 16) -> dict[str, np.ndarray]:
    x0 = train[:n]
    schedule = NoiseSchedule.from_card(record.schedule)
    rng = np.random.default_rng(0)
    t = np.linspace(0, schedule.num_timesteps - 1, len(x0)).astype(np.int64)
    xt = schedule.add_noise(x0, rng.standard_normal(x0.shape).astype(np.float32), t)
    classes = np.arange(len(x0), dtype=np.int64) % (len(record.classes) + 1)
    return {"x": xt, "t": t, "class": classes}


def make_card(record: DdpmRun, weights: TrainedWeights, train: np.ndarray, output: str, name: str) -> Card:
    """The run's record mapped to a DDPM card."""
    h, w = record.image_size
    return Card(
        kind="ddpm", name=name, classes=record.classes, channels=record.channels,
        input={"size": [int(h), int(w)], "layout": "NCHW", "dtype": record.dtype,
               **({"fit": record.fit} if record.fit else {}),
               "value_range": record.value_range, "name": "x"},
        normalization=record.normalization,
        outputs={"names": [output], "prediction": record.prediction},
        training={"data": {"source": record.data, "label_map": record.label_map,
                           "train_counts": record.train_counts, "split": record.split},
                  "init_from": record.init_from, "steps": weights.step,
                  "final_loss": weights.final_loss, "net": record.net,
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
        extra={"schedule": record.schedule, "null_class": len(record.classes), "x0_bounds": x0_bounds(train)})


def export_ddpm(run: str | Path, out: str | Path, name: str | None = None, atol: float = 1e-3,
                rtol: float = 1e-3, data: str | None = None, snapshot: int | None = None) -> Path:
    """``data`` replaces the training data path recorded in the run (a run trained on another machine);
    ``snapshot`` exports the EMA snapshot of that step instead of the last weights."""
    run, out = Path(run), Path(out)
    record, model, weights = load_ddpm_run(run, snapshot)
    if data is not None:
        record = replace(record, data=str(Path(data).resolve()))
    train = training_crops(record, run)
    staging = fresh_staging(out)
    example = (torch.zeros(2, len(record.channels), *record.image_size), torch.zeros(2, dtype=torch.long),
               torch.zeros(2, dtype=torch.long))
    output = "eps" if record.prediction == "epsilon" else "v"
    export_onnx(model, example, staging / "model.onnx", list(DdpmCard.INPUTS), [output])
    card = make_card(record, weights, train, output, name or out.name)
    save_bundle(staging, card)
    feeds = real_noised_inputs(record, train)
    return publish_checked(staging, out, card, model, feeds, output, f"{len(feeds['x'])} real training crops, noised",
                           atol, rtol)


def main(argv: list[str] | None = None) -> None:
    export_main("cellsynth export ddpm", __doc__, export_ddpm, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export ddpm"))
