"""Several seeds' classifier runs exported and run as one ensemble bundle."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from conftest import CELLSYNTH

from napari_cellsynth.training.nets.classifier_ensemble import ClassifierEnsemble
from napari_cellsynth.training.nets.resnet import ResNetClassifier


def test_the_ensemble_gives_the_members_mean_probability_and_all_their_features():
    torch.manual_seed(0)
    members = [ResNetClassifier("resnet18", 3, 4, 40, 8).eval() for _ in range(3)]
    x = torch.randn(5, 3, 40, 40)
    with torch.inference_mode():
        logits, features = ClassifierEnsemble(members).eval()(x)
        outputs = [m(x) for m in members]
    expected = torch.stack([o[0].softmax(1) for o in outputs]).mean(0)
    assert torch.allclose(logits.softmax(1), expected, atol=1e-6)
    assert torch.equal(features, torch.cat([o[1] for o in outputs], 1)) and features.shape == (5, 3 * 64)
    with pytest.raises(ValueError, match="at least two members"):
        ClassifierEnsemble(members[:1])


def test_two_seeds_runs_export_as_one_bundle(trained_run, jurkat_slice, tmp_path):
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.export.export_classifier import export_classifier
    from napari_cellsynth.training.trainers import classifier as train_classifier

    second = tmp_path / "seed1"
    train_classifier.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--width", "16", "--epochs", "1",
                           "--optimizer", "sgd", "--warmup", "0", "--shift", "0", "--seed", "1", "--split-seed", "0",
                           "--out", str(second), "--quiet"])
    bundle = tmp_path / "ensemble"
    done = subprocess.run([CELLSYNTH, "export", "classifier", str(trained_run), "--ensemble", str(second),
                           "--out", str(bundle)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    card = json.loads((bundle / "card.json").read_text())
    assert [m["seed"] for m in card["training"]["ensemble"]] == [0, 1]
    assert card["training"]["test_metrics"]["measured"] == "the ensemble, at export"
    from napari_cellsynth.training.experiments.rescore import rescore_classifier

    again = rescore_classifier(bundle, str(jurkat_slice))  # through ONNX Runtime, on the shared test split
    assert again["test_crops"] == card["training"]["test_metrics"]["n"]
    assert again["macro_f1"] == pytest.approx(card["training"]["test_metrics"]["macro_f1"], abs=0.01)
    with np.load(trained_run / "samples.npz", allow_pickle=False) as samples:
        crops = samples["images"][:24]
    together = run_to_end(classify_crops(OnnxModel(bundle, kind="classifier"), crops))
    apart = [run_to_end(classify_crops(OnnxModel(export_classifier(run, tmp_path / f"single-{k}"), kind="classifier"),
                                       crops)) for k, run in enumerate((trained_run, second))]
    np.testing.assert_allclose(together.probabilities, (apart[0].probabilities + apart[1].probabilities) / 2, atol=1e-4)
    np.testing.assert_allclose(together.features, np.concatenate([a.features for a in apart], 1), atol=1e-3)
    assert card["outputs"]["feature_dim"] == together.features.shape[1] == 2 * apart[0].features.shape[1]

    other = tmp_path / "other-split"  # a member that saw the first run's test crops in training is refused
    shutil.copytree(second, other)
    with np.load(other / "split.npz") as split:
        parts = {k: split[k] for k in split.files}
    parts["test"] = parts["test"][::-1][:-1]
    np.savez(other / "split.npz", **parts)
    refused = subprocess.run([CELLSYNTH, "export", "classifier", str(trained_run), "--ensemble", str(other),
                              "--out", str(tmp_path / "refused")], capture_output=True, text=True)
    assert refused.returncode == 2 and "another test split" in refused.stderr and "Traceback" not in refused.stderr
