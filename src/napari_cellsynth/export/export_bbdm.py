"""Export a BBDM run's EMA network to a bundle: ``model.onnx`` = one forward pass f(x_t, t) → x_t - x_0.

    cellsynth export bbdm runs/bbdm-transloc --out bundles/bbdm-transloc

Inputs ``x`` (N×3×H×W float32, the bridge state) and ``t`` (N int64, 0…T); output ``prediction``
(the BBDM objective x_t - x_0).  The card carries the bridge schedule, the target channels and
their [-1, 1] normalisation, the condition (DAPI, its normalisation, repeated on the target's
channels) and the training provenance.  Parity: torch and ONNX Runtime on real chromosome pairs
bridged at several timesteps.
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
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.schedules import BridgeSchedule
from napari_cellsynth.export.common import (export_main, export_onnx, fresh_staging, library_versions, load_snapshot,
                                            publish_checked)
from napari_cellsynth.training.data.translocations import load_pairs
from napari_cellsynth.training.nets.unet import bridge_unet


def load_bbdm_run(run: Path, snapshot: int | None = None) -> tuple[dict, torch.nn.Module]:
    """The run's config and EMA network: the last one, or the fp16 snapshot of step ``snapshot``."""
    config = json.loads((run / "config.json").read_text())
    model = bridge_unet(config["net"], len(config["channels"]), int(config["image_size"][-1]))
    if snapshot is not None:
        config["trained_steps"], config["final_loss"] = snapshot, None
        return config, load_snapshot(run, snapshot, model)
    state = torch.load(run / "last.pt", weights_only=True, map_location="cpu")
    model.load_state_dict(state["ema"])
    config["trained_steps"] = int(state["step"])
    config["final_loss"] = state["history"][-1]["loss"] if state["history"] else None
    return config, model.eval()


def real_bridged_inputs(config: dict, n: int = 12) -> dict[str, np.ndarray]:
    pairs = load_pairs(config["data"], config["exclude_slides"], config["only_translocations"])
    x0 = normalize(pairs[config.get("target", "rgb")][:n], config["normalization"])
    y = np.repeat(normalize(pairs["dapi"][:n], config["condition_normalization"]), x0.shape[1], axis=1)
    schedule = BridgeSchedule.from_card(config["schedule"])
    t = np.linspace(0, schedule.num_timesteps, len(x0)).astype(np.int64)
    rng = np.random.default_rng(0)
    return {"x": schedule.forward(x0, y, t, rng.standard_normal(x0.shape).astype(np.float32)), "t": t}


def export_bbdm(run: str | Path, out: str | Path, name: str | None = None, atol: float = 1e-3,
                rtol: float = 1e-3, snapshot: int | None = None) -> Path:
    """``snapshot`` exports the EMA snapshot of that step instead of the last weights."""
    run, out = Path(run), Path(out)
    config, model = load_bbdm_run(run, snapshot)
    staging = fresh_staging(out)
    c, (h, w) = len(config["channels"]), config["image_size"]
    export_onnx(model, (torch.zeros(2, c, h, w), torch.zeros(2, dtype=torch.long)), staging / "model.onnx",
                ["x", "t"], ["prediction"])
    card = Card(
        kind="bbdm", name=name or out.name, classes=["translocation" if config["only_translocations"] else "any"],
        channels=config["channels"],
        input={"size": [int(h), int(w)], "layout": "NCHW", "dtype": config["dtype"],
               "value_range": config["value_range"], "name": "x"},
        normalization=config["normalization"], outputs={"names": ["prediction"], "prediction": "x_t - x_0"},
        training={"data": {"source": config["data"], "train_count": config["train_count"],
                           "exclude_slides": config["exclude_slides"],
                           "only_translocations": config["only_translocations"]},
                  "init_from": config["init_from"], "steps": config["trained_steps"], "loss": config["loss"],
                  "final_loss": config["final_loss"], "net": config["net"],
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
        extra={"schedule": config["schedule"],
               "condition": {"channels": config["condition_channels"], "dtype": "uint8",
                             "normalization": config["condition_normalization"],
                             "to_target": "repeated on every target channel"}})
    save_bundle(staging, card)
    feeds = real_bridged_inputs(config)
    return publish_checked(staging, out, card, model, feeds, "prediction",
                           f"{len(feeds['x'])} real chromosome pairs, bridged", atol, rtol)


def main(argv: list[str] | None = None) -> None:
    export_main("cellsynth export bbdm", __doc__, export_bbdm, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export bbdm"))
