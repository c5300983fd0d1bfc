"""Export a trained classifier run to a bundle (``model.onnx`` + ``card.json``).

    cellsynth export classifier runs/jurkat4-s0 --out bundles/jurkat4

The graph takes normalised ``images`` (N×C×H×W float32, dynamic N) and returns
``logits`` (N×K) and ``features`` (N×D, the penultimate layer).  Torch and ONNX
Runtime outputs are compared on the run's real test crops; the export fails above
tolerance and the card records the differences.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.export.common import export_onnx, fresh_staging, library_versions, parity, publish
from napari_cellsynth.training.nets.resnet import ResNetClassifier


def load_run(run: Path) -> tuple[dict, ResNetClassifier]:
    if not (run / "config.json").is_file() or not (run / "best.pt").is_file():
        raise ValueError(f"{run} is not a finished classifier run (it needs config.json and best.pt); pass the "
                         "--out folder of cellsynth train classifier")
    config = json.loads((run / "config.json").read_text())
    args = config["args"]
    model = ResNetClassifier(args["arch"], len(config["channels"]), len(config["classes"]),
                             int(config["image_size"][-1]), args["width"])
    model.load_state_dict(torch.load(run / "best.pt", weights_only=True, map_location="cpu")["model"])
    return config, model.eval()


def make_card(run: Path, config: dict, model: ResNetClassifier, name: str) -> Card:
    metrics_path = run / "metrics_test.json"
    history = json.loads((run / "history.json").read_text())
    return Card(
        kind="classifier", name=name, classes=config["classes"], channels=config["channels"],
        input={"size": [int(s) for s in config["image_size"]], "layout": "NCHW", "dtype": config["dtype"],
               "value_range": config["value_range"], "name": "images",
               **({"fit": config["fit"]} if config.get("fit") else {}),
               **({"object_crop": config["object_crop"]} if config.get("object_crop") else {}),
               **({"pixel_size": config["pixel_size"]} if config.get("pixel_size") else {})},
        normalization=config["normalization"],
        outputs={"names": ["logits", "features"], "feature_dim": model.feature_dim},
        training={"arch": config["args"]["arch"], "width": config["args"]["width"],
                  "epochs": config["args"]["epochs"], "seed": config["args"]["seed"],
                  "recipe": {k: config["args"].get(k) for k in ("optimizer", "lr", "weight_decay", "batch_size",
                                                                "sampling", "patience", "shift")}
                  | {"init_from": config.get("init_from")},
                  "schedule": config.get("schedule"), "train_only_classes": config.get("train_only_classes", []),
                  "data": {"source": config["data"], "label_map": config["label_map"],
                           "counts": config["counts"], "excluded": config["excluded"]},
                  "best_val_macro_f1": max(h["val_macro_f1"] for h in history),
                  "test_metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else None,
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
    )


def export_classifier(run: str | Path, out: str | Path, name: str | None = None,
                      atol: float = 1e-3, rtol: float = 1e-3) -> Path:
    run, out = Path(run), Path(out)
    config, model = load_run(run)
    staging = fresh_staging(out)
    example = torch.zeros(2, len(config["channels"]), *config["image_size"])
    export_onnx(model, (example,), staging / "model.onnx", ["images"], ["logits", "features"])
    card = make_card(run, config, model, name or out.name)
    with np.load(run / "samples.npz", allow_pickle=False) as samples:
        batch = normalize(samples["images"], config["normalization"])
    with torch.inference_mode():
        logits, features = model(torch.from_numpy(batch))
    save_bundle(staging, card)
    onnx_model = OnnxModel(staging, kind="classifier", providers=["CPUExecutionProvider"])
    got = onnx_model.run({"images": batch})
    card.extra["export"] = {"opset": 17, "parity_on": f"{len(batch)} real test crops",
                            "parity": parity({"logits": logits.numpy(), "features": features.numpy()},
                                             got, atol, rtol)}
    save_bundle(staging, card)
    return publish(staging, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cellsynth export classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder written by training.trainers.classifier")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--name", help="bundle name in the card (default: the folder name)")
    args = parser.parse_args(argv)
    path = export_classifier(args.run, args.out, args.name)
    card = json.loads((path / "card.json").read_text())
    print(f"wrote {path}: parity {card['export']['parity']}")


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export classifier"))
