"""Export a trained classifier run to a bundle (``model.onnx`` + ``card.json``).

    cellsynth export classifier runs/jurkat4-s0 --out bundles/jurkat4
    cellsynth export classifier runs/t/seed0 --ensemble runs/t/seed1 runs/t/seed2 --out bundles/t   # one ensemble

The graph takes normalised ``images`` (N×C×H×W float32, dynamic N) and returns
``logits`` (N×K) and ``features`` (N×D, the penultimate layer).  Torch and ONNX
Runtime outputs are compared on the run's real test crops; the export fails above
tolerance and the card records the differences.

``--ensemble`` adds runs of the same task (same classes, channels, crop size, normalisation and test
split; typically other seeds) and exports them as one :class:`ClassifierEnsemble`: ``logits`` are the
log of the members' mean probability, ``features`` the members' features side by side.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.cards import ClassifierCard
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import normalize
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.export.common import (export_onnx, export_parser, fresh_staging, library_versions, parity,
                                            publish, store_weights_fp16)
from napari_cellsynth.training.nets.classifier_ensemble import ClassifierEnsemble
from napari_cellsynth.training.nets.resnet import ResNetClassifier
from napari_cellsynth.training.records.classifier_run import ClassifierRun, kept_validation


def load_run(run: Path) -> tuple[ClassifierRun, ResNetClassifier]:
    if not (run / "best.pt").is_file():
        raise ValueError(f"{run} is not a finished classifier run (it needs config.json and best.pt); pass the "
                         "--out folder of cellsynth train classifier")
    record = ClassifierRun.read(run)
    model = ResNetClassifier(record.settings.arch, len(record.channels), len(record.classes),
                             int(record.image_size[-1]), record.settings.width)
    model.load_state_dict(torch.load(run / "best.pt", weights_only=True, map_location="cpu")["model"])
    return record, model.eval()


def make_card(run: Path, record: ClassifierRun, model: ResNetClassifier, name: str) -> Card:
    """The run's record mapped to a classifier card."""
    metrics_path = run / "metrics_test.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    history = json.loads((run / "history.json").read_text())
    settings = record.settings
    return Card(
        kind="classifier", name=name, classes=record.classes, channels=record.channels,
        input={"size": [int(s) for s in record.image_size], "layout": "NCHW", "dtype": record.dtype,
               "value_range": record.value_range, "name": "images",
               **({"fit": record.fit} if record.fit else {}),
               **({"object_crop": record.object_crop} if record.object_crop else {}),
               **({"object_mask": record.object_mask} if record.object_mask != "none" else {}),
               **({"pixel_size": record.pixel_size} if record.pixel_size else {})},
        normalization=record.normalization,
        outputs={"names": ["logits", "features"], "feature_dim": model.feature_dim},
        training={"arch": settings.arch, "width": settings.width, "epochs": settings.epochs, "seed": settings.seed,
                  "recipe": settings.recipe | {"init_from": record.init_from},
                  "schedule": record.schedule, "train_only_classes": record.train_only_classes,
                  "data": {"source": record.data, "label_map": record.label_map,
                           "counts": record.counts, "excluded": record.excluded},
                  "best_val_macro_f1": kept_validation(history, (metrics or {}).get("best_step"))["val_macro_f1"],
                  "test_metrics": metrics,
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
    )


def test_split_arrays(run: Path, record: ClassifierRun) -> dict[str, np.ndarray] | None:
    """The run's test crops as indices into its training data file (``test_source_index``), so that the
    bundle can be re-scored on exactly its test split (``experiments.rescore``); None when the data file
    is not at hand to count its crops."""
    data = Path(record.data)
    if not (run / "split.npz").is_file() or data.suffix != ".npz" or not data.is_file():
        return None
    with np.load(data, allow_pickle=False) as d:
        n = len(d["labels"])
    excluded = np.zeros(0, np.int64)
    if record.settings.exclude:
        if not Path(record.settings.exclude).is_file():
            return None
        with np.load(record.settings.exclude, allow_pickle=False) as held_out:
            excluded = held_out["source_index"]
    with np.load(run / "split.npz", allow_pickle=False) as split:
        return {"test_source_index": np.setdiff1d(np.arange(n), excluded)[split["test"]]}


SAME_TASK = ("classes", "channels", "image_size", "normalization", "object_crop", "object_mask", "fit", "dtype")


def load_ensemble(runs: list[Path]) -> tuple[ClassifierRun, ClassifierEnsemble, list[dict]]:
    """The runs as one ensemble, checked to be one task with one test split; also each member's record."""
    loaded = [load_run(run) for run in runs]
    record = loaded[0][0]
    with np.load(runs[0] / "split.npz", allow_pickle=False) as split:
        test = split["test"]
    members = []
    for run, (other, _) in zip(runs, loaded):
        differ = [key for key in SAME_TASK if getattr(other, key) != getattr(record, key)]
        if differ:
            raise ValueError(f"{run} is not the same task as {runs[0]}: its {', '.join(differ)} differ; an ensemble "
                             "takes runs of one data set and recipe that differ in their seed")
        with np.load(run / "split.npz", allow_pickle=False) as split:
            if not np.array_equal(split["test"], test):
                raise ValueError(f"{run} has another test split than {runs[0]}: train the members with one "
                                 "--split-seed (or --split) so that the ensemble's test crops stay unseen")
        history = json.loads((run / "history.json").read_text())
        metrics = json.loads((run / "metrics_test.json").read_text()) if (run / "metrics_test.json").is_file() else {}
        members.append({"run": str(run), "seed": other.settings.seed,
                        "best_val_macro_f1": kept_validation(history, metrics.get("best_step"))["val_macro_f1"],
                        "test_macro_f1": metrics.get("macro_f1")})
    return record, ClassifierEnsemble([model for _, model in loaded]).eval(), members


def ensemble_test_metrics(bundle: OnnxModel, record: ClassifierRun, arrays: dict | None) -> dict | None:
    """The exported ensemble's metrics (argmax of the mean probability) on the test crops of the members' data
    file, through ONNX Runtime as ``experiments.rescore`` scores a bundle; None when that file is not at hand."""
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.label_maps import apply_bundle_label_map
    from napari_cellsynth.core.metrics import classification_metrics

    if arrays is None:
        return None
    with np.load(record.data, allow_pickle=False) as data:
        index = arrays["test_source_index"]
        images, labels = data["images"][index], data["labels"][index]
    truth, classes = apply_bundle_label_map(labels, record.label_map, record.classes)
    result = run_to_end(classify_crops(bundle, images))
    return {**classification_metrics(truth, result.predicted, classes), "measured": "the ensemble, at export"}


# fp16 weights round each weight by up to 2^-11 of itself: logits move by about 1e-2, predictions must not
FP16_TOLERANCE = 5e-2


def export_classifier(run: str | Path, out: str | Path, name: str | None = None,
                      atol: float = 1e-3, rtol: float = 1e-3, weights: str = "fp32",
                      ensemble: list[str | Path] = ()) -> Path:
    """``weights="fp16"`` stores the weights in half precision (half the file; computed in float32): the
    parity check then allows :data:`FP16_TOLERANCE` on the outputs and requires every prediction to agree.
    ``ensemble``: more runs of the same task, exported with ``run`` as one ensemble."""
    if weights not in ("fp32", "fp16"):
        raise ValueError(f"weights must be fp32 or fp16, got {weights!r}")
    run, out = Path(run), Path(out)
    if ensemble:
        record, model, members = load_ensemble([run, *map(Path, ensemble)])
    else:
        record, model = load_run(run)
    staging = fresh_staging(out)
    example = torch.zeros(2, len(record.channels), *record.image_size)
    export_onnx(model, (example,), staging / "model.onnx", list(ClassifierCard.INPUTS), ["logits", "features"])
    if weights == "fp16":
        store_weights_fp16(staging / "model.onnx")
        atol, rtol = max(atol, FP16_TOLERANCE), max(rtol, FP16_TOLERANCE)
    card = make_card(run, record, model, name or out.name)
    if not ensemble and (run / "decision.json").is_file():  # thresholds chosen on the run's validation crops
        card = card.with_sections(decision=json.loads((run / "decision.json").read_text()))
    arrays = test_split_arrays(run, record)
    if ensemble:
        card = card.with_training(ensemble=members, test_metrics=None)  # measured on the bundle below
    with np.load(run / "samples.npz", allow_pickle=False) as samples:
        batch = normalize(samples["images"], record.normalization)
    with torch.inference_mode():
        logits, features = model(torch.from_numpy(batch))
    save_bundle(staging, card, arrays)
    onnx_model = OnnxModel(staging, kind="classifier", providers=["CPUExecutionProvider"])
    got = onnx_model.run(onnx_model.card.feeds(batch))
    agreement = float(np.mean(got["logits"].argmax(1) == logits.numpy().argmax(1)))
    if weights == "fp16" and agreement < 1.0:
        raise AssertionError(f"fp16 weights change {1 - agreement:.1%} of the predictions on {len(batch)} real test "
                             "crops; export with --weights fp32")
    card = card.with_sections(export={"opset": 17, "weights": weights, "parity_on": f"{len(batch)} real test crops",
                                      "parity": parity({"logits": logits.numpy(), "features": features.numpy()},
                                                       got, atol, rtol),
                                      "prediction_agreement": agreement})
    if ensemble:  # a member's metrics are not the ensemble's: score the bundle on the members' shared test split
        card = card.with_training(test_metrics=ensemble_test_metrics(onnx_model, record, arrays))
    save_bundle(staging, card, arrays)
    return publish(staging, out)


def main(argv: list[str] | None = None) -> None:
    parser = export_parser("cellsynth export classifier", __doc__, "a run folder written by training.trainers.classifier")
    parser.add_argument("--weights", default="fp32", choices=["fp32", "fp16"],
                        help="fp16: weights stored in half precision (half the file, computed in float32); refused "
                             "when any prediction on the run's test crops changes")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="RUN",
                        help="more runs of the same task (other seeds, one test split): export all as one ensemble "
                             "whose probability is the members' mean")
    args = parser.parse_args(argv)
    path = export_classifier(args.run, args.out, args.name, weights=args.weights, ensemble=args.ensemble)
    card = json.loads((path / "card.json").read_text())
    print(f"wrote {path}: parity {card['export']['parity']}")


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export classifier"))
