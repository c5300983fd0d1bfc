"""Self-supervised pretraining (cellsynth train pretrain) and the classifier's --init-from, on real Jurkat crops."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import CELLSYNTH

from napari_cellsynth.training.nets.resnet import ResNetClassifier
from napari_cellsynth.training.trainers import classifier, pretrain, starting_backbone


def nt_xent_by_hand(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    """SimCLR's eq. 1 written out: l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), averaged over
    both orders of every pair."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n, losses = len(z1), []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        s = z @ z[i] / t
        losses.append(-s[j] + np.log(sum(np.exp(s[k]) for k in range(2 * n) if k != i)))
    return float(np.mean(losses))


def test_nt_xent_is_simclr_loss_and_prefers_matching_views():
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    got = pretrain.nt_xent(torch.tensor(z1), torch.tensor(z2), 0.5).item()
    assert got == pytest.approx(nt_xent_by_hand(z1, z2, 0.5), rel=1e-6)
    same = pretrain.nt_xent(torch.tensor(z1), torch.tensor(z1 + 0.01 * z2), 0.2).item()
    shuffled = pretrain.nt_xent(torch.tensor(z1), torch.tensor(z1[[1, 2, 3, 4, 5, 0]]), 0.2).item()
    assert same < np.log(11) < shuffled  # log(2N - 1): the loss of views that carry no information


@pytest.fixture(scope="module")
def unlabelled(jurkat_slice, tmp_path_factory):
    """300 real Jurkat crops saved as images only (no labels), and the first 100 of them to exclude (without
    ../shared/data: the 226 sample cells, 300 drawn with repeats)."""
    folder = tmp_path_factory.mktemp("unlabelled")
    with np.load(jurkat_slice) as data:
        images = data["images"]
    pick = np.arange(0, len(images), 4)[:300] if len(images) >= 1200 else np.arange(300) % len(images)
    np.savez(folder / "crops.npz", images=images[pick])
    np.savez(folder / "exclude.npz", source_index=np.arange(100))
    return folder


PRETRAIN_ARGS = ["--width", "8", "--batch-size", "32", "--ckpt-every", "2", "--threads", "1", "--quiet"]


def pretrain_command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([CELLSYNTH, "train", "pretrain", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pretrained(unlabelled, tmp_path_factory):
    run = tmp_path_factory.mktemp("pretrain") / "run"
    done = pretrain_command("--data", str(unlabelled / "crops.npz"), "--exclude", str(unlabelled / "exclude.npz"),
                            "--steps", "4", *PRETRAIN_ARGS, "--out", str(run))
    assert done.returncode == 0, done.stderr
    return run


def test_pretrain_command_writes_backbone_and_resumes(pretrained):
    config = json.loads((pretrained / "config.json").read_text())
    assert config["crops"] == 200 and config["steps_run"] == 4
    assert config["image_size"] == [40, 40] and len(config["channels"]) == 3 and config["width"] == 8
    assert config["normalization"]["type"] == "standardize"
    backbone = torch.load(pretrained / "backbone.pt", weights_only=True)
    assert backbone and not any(k.startswith("head.") for k in backbone)
    history = json.loads((pretrained / "history.json").read_text())
    assert [h["step"] for h in history] == [2, 4] and all(np.isfinite(h["loss"]) for h in history)
    args = json.loads((pretrained / "config.json").read_text())["args"]
    done = pretrain_command("--data", args["data"], "--exclude", args["exclude"], "--steps", "6", *PRETRAIN_ARGS,
                            "--out", str(pretrained), "--resume")
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    history = json.loads((pretrained / "history.json").read_text())
    assert [h["step"] for h in history] == [2, 4, 6]


def test_classifier_starts_from_the_pretrained_backbone(pretrained, jurkat_slice, tmp_path):
    model = ResNetClassifier("resnet18", 3, 4, 40, 8).eval()
    starting_backbone.load_backbone(model, pretrained)
    reference = ResNetClassifier("resnet18", 3, 1, 40, 8).eval()
    reference.load_state_dict(torch.load(pretrained / "backbone.pt", weights_only=True), strict=False)
    x = torch.randn(5, 3, 40, 40)
    with torch.inference_mode():
        assert torch.equal(model(x)[1], reference(x)[1])
    # a run with a vanishing learning rate keeps the pretrained weights: they were loaded, not drawn
    run = tmp_path / "clf"
    classifier.train(classifier.config(data=str(jurkat_slice), label_map="jurkat4", width=8, steps=2,
                                       evaluations=1, lr=1e-12, threads=1, init_from=str(pretrained),
                                       out=str(run), quiet=True))
    best = torch.load(run / "best.pt", weights_only=True)["model"]
    backbone = torch.load(pretrained / "backbone.pt", weights_only=True)
    assert torch.allclose(best["stem.0.weight"], backbone["stem.0.weight"], atol=1e-6)
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"]["run"] == str(pretrained.resolve()) and config["init_from"]["crops"] == 200
    from napari_cellsynth.export.export_classifier import export_classifier

    card = json.loads((export_classifier(run, tmp_path / "bundle") / "card.json").read_text())
    assert card["training"]["recipe"]["init_from"]["run"] == str(pretrained.resolve())


@pytest.mark.parametrize("change, message", [
    ({"width": 16}, "its width is 8, this classifier's 16; pass --width 8"),
    ({"arch": "resnet34"}, "its arch is resnet18, this classifier's resnet34; pass --arch resnet18"),
    ({"size": 32}, "its image size is [40, 40], this classifier's [32, 32]; pass --size 40"),
])
def test_init_from_refuses_a_mismatched_backbone_in_one_line(pretrained, jurkat_slice, tmp_path, change, message):
    settings = {"data": str(jurkat_slice), "label_map": "jurkat4", "width": 8, "steps": 1, "threads": 1,
                "init_from": str(pretrained), "out": str(tmp_path / "clf"), "quiet": True, **change}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        classifier.train(classifier.config(**settings))
    assert "\n" not in str(err.value)


def test_init_from_refuses_other_channels_and_a_missing_run(unlabelled, jurkat_slice, tmp_path):
    with np.load(unlabelled / "crops.npz") as data:
        np.savez(tmp_path / "grey.npz", images=data["images"][:40, :1])
    grey = pretrain.train(pretrain.config(data=str(tmp_path / "grey.npz"), width=8, steps=1, batch_size=16,
                                          threads=1, out=str(tmp_path / "grey"), quiet=True))
    for run, message in ((grey, "its channel count is 1, this classifier's 3"),
                         (tmp_path / "nowhere", "neither a finished pretraining run .* pass the --out folder of "
                                                "cellsynth train pretrain")):
        with pytest.raises(ValueError, match=message) as err:
            classifier.train(classifier.config(data=str(jurkat_slice), label_map="jurkat4", width=8, steps=1,
                                               threads=1, init_from=str(run), out=str(tmp_path / "clf"), quiet=True))
        assert "\n" not in str(err.value)
    done = subprocess.run([CELLSYNTH, "train", "classifier", "--data", str(jurkat_slice), "--label-map", "jurkat4",
                           "--width", "8", "--steps", "1", "--init-from", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "clf2")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
