"""Export a DDPM run's EMA noise network to a bundle: ``model.onnx`` = one forward pass f(x, t, class).

    cellsynth export ddpm runs/ddpm-jurkat4-M --out bundles/ddpm-jurkat4-M

Inputs ``x`` (N×C×H×W float32), ``t`` (N int64 timesteps), ``class`` (N int64; the null class
``len(classes)`` is unconditional); output ``eps`` (or ``v`` for a v-predicting run).  The card
carries the schedule, the prediction type, classes, channels, size, the [-1, 1] normalisation and the training provenance.
Parity: torch and ONNX Runtime on real training crops noised at several timesteps.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.schedules import NoiseSchedule
from napari_cellsynth.export.common import (export_main, export_onnx, fresh_staging, library_versions, load_snapshot,
                                            publish_checked)
from napari_cellsynth.training.nets.unet import UNet, unet_from_net


def load_ddpm_run(run: Path, snapshot: int | None = None) -> tuple[dict, UNet]:
    """The run's config and EMA network: the last one, or the fp16 snapshot of step ``snapshot``."""
    config = json.loads((run / "config.json").read_text())
    net = config["net"]
    model = unet_from_net(net, len(config["channels"]), int(config["image_size"][-1]))
    if snapshot is not None:
        config["trained_steps"], config["final_loss"] = snapshot, None
        return config, load_snapshot(run, snapshot, model)
    state = torch.load(run / "last.pt", weights_only=True, map_location="cpu")
    model.load_state_dict(state["ema"])
    config["trained_steps"] = int(state["step"])
    config["final_loss"] = state["history"][-1]["loss"] if state["history"] else None
    return config, model.eval()


def training_crops(config: dict, run: Path) -> np.ndarray:
    """The run's training crops, normalised as the network saw them."""
    crops = read_crops(config["data"], size=config.get("size"), fit=config.get("fit"))
    with np.load(run / "train_index.npz", allow_pickle=False) as saved:
        index = saved["index"]
    return normalize(crops.images[index], config["normalization"])


def x0_bounds(train: np.ndarray) -> dict:
    """Each channel's minimum and maximum over the training crops (normalised scale): the bounds of
    static x̂₀ thresholding, so that a sampler never leaves the range real data occupies."""
    return {"low": train.min(axis=(0, 2, 3)).astype(float).round(4).tolist(),
            "high": train.max(axis=(0, 2, 3)).astype(float).round(4).tolist(),
            "measured_on": f"{len(train)} training crops"}


def real_noised_inputs(config: dict, train: np.ndarray, n: int = 16) -> dict[str, np.ndarray]:
    x0 = train[:n]
    schedule = NoiseSchedule.from_card(config["schedule"])
    rng = np.random.default_rng(0)
    t = np.linspace(0, schedule.num_timesteps - 1, len(x0)).astype(np.int64)
    xt = schedule.add_noise(x0, rng.standard_normal(x0.shape).astype(np.float32), t)
    classes = np.arange(len(x0), dtype=np.int64) % (len(config["classes"]) + 1)
    return {"x": xt, "t": t, "class": classes}


def export_ddpm(run: str | Path, out: str | Path, name: str | None = None, atol: float = 1e-3,
                rtol: float = 1e-3, data: str | None = None, snapshot: int | None = None) -> Path:
    """``data`` replaces the training data path recorded in the run (a run trained on another machine);
    ``snapshot`` exports the EMA snapshot of that step instead of the last weights."""
    run, out = Path(run), Path(out)
    config, model = load_ddpm_run(run, snapshot)
    if data is not None:
        config["data"] = str(Path(data).resolve())
    train = training_crops(config, run)
    staging = fresh_staging(out)
    c, (h, w) = len(config["channels"]), config["image_size"]
    example = (torch.zeros(2, c, h, w), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    output = "eps" if config["schedule"].get("prediction", "epsilon") == "epsilon" else "v"
    export_onnx(model, example, staging / "model.onnx", ["x", "t", "class"], [output])
    card = Card(
        kind="ddpm", name=name or out.name, classes=config["classes"], channels=config["channels"],
        input={"size": [int(h), int(w)], "layout": "NCHW", "dtype": config["dtype"],
               **({"fit": config["fit"]} if config.get("fit") else {}),
               "value_range": config["value_range"], "name": "x"},
        normalization=config["normalization"],
        outputs={"names": [output], "prediction": config["schedule"].get("prediction", "epsilon")},
        training={"data": {"source": config["data"], "label_map": config["label_map"],
                           "train_counts": config["train_counts"], "split": config.get("split")},
                  "init_from": config["init_from"], "steps": config["trained_steps"],
                  "final_loss": config["final_loss"], "net": config["net"],
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
        extra={"schedule": config["schedule"], "null_class": len(config["classes"]), "x0_bounds": x0_bounds(train)})
    save_bundle(staging, card)
    feeds = real_noised_inputs(config, train)
    return publish_checked(staging, out, card, model, feeds, output, f"{len(feeds['x'])} real training crops, noised",
                           atol, rtol)


def main(argv: list[str] | None = None) -> None:
    export_main("cellsynth export ddpm", __doc__, export_ddpm, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export ddpm"))
