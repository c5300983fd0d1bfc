"""Issue 20: the translocation classifier's routes on real metaphases: identity pretraining then
fine-tuning, the decision threshold chosen on validation, and the per-slide report."""

import json

import numpy as np
import pytest
import torch

from napari_cellsynth.training.experiments import translocation_classifier as experiment
from napari_cellsynth.training.nets.resnet import ResNetClassifier
from napari_cellsynth.training.trainers import starting_backbone


def test_val_threshold_maximises_f1_on_validation():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    score = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7])
    threshold = experiment.val_threshold(y, score)
    # calling the top 5 (0.35 and up) finds all 3 positives with 1 false positive: F1 6/7, the best cut
    assert 0.3 < threshold <= 0.35
    f1 = lambda t: 2 * (y & (score >= t)).sum() / ((score >= t).sum() + y.sum())  # noqa: E731
    assert f1(threshold) == max(f1(t) for t in score)


def test_test_metrics_count_each_slide():
    split = {"val": np.arange(4), "test": np.arange(4, 10), "y": np.array([0, 1, 0, 1, 1, 1, 0, 0, 0, 1]),
             "slide": np.array(["a"] * 4 + ["A", "A", "A", "B", "B", "C"])}
    scores = {"val": np.array([0.1, 0.8, 0.2, 0.9]), "test": np.array([0.9, 0.1, 0.7, 0.2, 0.95, 0.3])}
    result = experiment.test_metrics(scores, split)
    assert result["per_slide"]["A"] == {"positives": 2, "negatives": 1, "true_positives": 1, "false_positives": 1,
                                        "recall": 0.5}
    assert result["per_slide"]["B"] == {"positives": 0, "negatives": 2, "true_positives": 0, "false_positives": 1}
    assert result["per_slide"]["C"]["recall"] == 0.0
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert 0 < result["roc_auc"] < 1 and 0 < result["pr_auc"] <= 1


def test_disjoint_ensembles_average_each_groups_scores():
    split = {"val": np.arange(4), "test": np.arange(4, 10), "y": np.array([0, 1, 0, 1, 1, 1, 0, 0, 0, 1]),
             "slide": np.array(["a"] * 4 + ["A"] * 6)}
    rng = np.random.default_rng(0)
    scores = [{"val": rng.random(4), "test": rng.random(6)} for _ in range(5)]
    seeds = [f"seed{k}" for k in range(5)]
    result = experiment.disjoint_ensembles(scores, seeds, 2, split)
    assert result["n"] == 2 and result["members"] == [["seed0", "seed1"], ["seed2", "seed3"]]  # seed4 left over
    first = experiment.test_metrics({p: (scores[0][p] + scores[1][p]) / 2 for p in ("val", "test")}, split)
    assert result["groups"][0]["roc_auc"] == pytest.approx(first["roc_auc"])
    assert result["roc_auc"]["mean"] == pytest.approx(np.mean([g["roc_auc"] for g in result["groups"]]))


def test_confirmed_test_leaves_out_only_unconfirmed_positives(tmp_path):
    split = {"train": np.arange(2), "val": np.arange(2, 4), "test": np.arange(4, 10),
             "y": np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 0]), "row": np.arange(100, 110)}
    (tmp_path / "check.json").write_text(json.dumps({"confirmed": {"A": [105, 100], "B": [107]}}))
    clean = experiment.confirmed_test(split, str(tmp_path / "check.json"))
    assert clean["test"].tolist() == [5, 6, 7, 8, 9]  # row 104 (positive, unconfirmed) left out; negatives kept
    assert clean["keep"].tolist() == [False, True, True, True, True, True]
    scores = experiment.restricted({"val": np.zeros(2), "test": np.arange(6.0)}, clean["keep"])
    assert scores["test"].tolist() == [1, 2, 3, 4, 5] and scores["val"].shape == (2,)
    (tmp_path / "bad.json").write_text(json.dumps({"confirmed": [1, 2]}))
    with pytest.raises(ValueError, match="expected"):
        experiment.confirmed_test(split, str(tmp_path / "bad.json"))


def test_identity_pretraining_then_fine_tuning_on_real_metaphases(mfish_five_metaphases, tmp_path):
    out = tmp_path / "experiment"
    with np.load(mfish_five_metaphases, allow_pickle=False) as data:
        v26 = np.flatnonzero((data["slide"] == "V26") & (data["translocation"] == 1))
    (tmp_path / "check.json").write_text(json.dumps({"confirmed": {"V26": v26[:1].tolist()}}))
    summary = experiment.main(["--data", str(mfish_five_metaphases), "--test-slides", "V14", "V26",
                               "--routes", "six-identity", "rgb", "six-identity-spliced", "six-spliced-focused",
                               "--seeds", "0", "1",
                               "--width", "8",
                               "--steps", "12", "--spliced", "30", "--confirmed", str(tmp_path / "check.json"),
                               "--out", str(out)])
    assert summary["confirmed"]["test_positives"] == 1
    assert set(summary["confirmed"]["routes"]) == {"six-identity", "rgb", "six-identity-spliced", "six-spliced-focused"}
    focused = json.loads((out / "six-spliced-focused" / "seed1" / "config.json").read_text())
    assert focused["args"]["focused"] == ["translocation=2"] and not focused["args"]["extra_train"]
    assert focused["args"]["focused_generated"] == [str(out / "spliced" / "seed1.npz")]
    assert summary["confirmed"]["colour_baseline"]["per_slide"]["V26"]["positives"] == 1
    identity = json.loads((out / "identity" / "seed0" / "config.json").read_text())
    assert identity["channels"] == ["DAPI"] + [f"plane {k}" for k in range(1, 6)]
    assert set(identity["classes"]) <= set(experiment.CLASS_NAMES) and len(identity["classes"]) >= 20
    tuned = json.loads((out / "six-identity" / "seed0" / "config.json").read_text())
    assert tuned["init_from"]["kind"] == "classifier" and tuned["classes"] == ["normal", "translocation"]
    spliced = json.loads((out / "six-identity-spliced" / "seed0" / "config.json").read_text())
    assert spliced["extra_train"][0]["counts"] == {"normal": 0, "translocation": 30}
    with np.load(out / "spliced" / "seed0.npz") as made, np.load(out / "split.npz") as split:
        assert set(made["recipient"]) | set(made["donor"]) <= set(split["train"])  # never a validation or test crop
    with pytest.raises(ValueError, match="holds 30 spliced crops, not --spliced 40"):
        experiment.main(["--data", str(mfish_five_metaphases), "--test-slides", "V14", "V26", "--routes", "six-spliced",
                         "--seeds", "0", "--spliced", "40", "--out", str(out)])
    for route in ("six-identity", "rgb", "six-identity-spliced"):
        row = summary["routes"][route]
        assert row["n_seeds"] == 2 and 0 <= row["roc_auc"]["mean"] <= 1
        assert 0 <= row["ensemble"]["roc_auc"] <= 1 and set(row["ensemble"]["per_slide"]) == {"V14", "V26"}
        per_slide = row["runs"][0]["per_slide"]
        assert set(per_slide) == {"V14", "V26"} and per_slide["V14"]["positives"] == 0 < per_slide["V26"]["positives"]
    assert "V26 recall" in (out / "summary.md").read_text()
    assert summary["colour_baseline"]["per_slide"]["V26"]["positives"] == summary["counts"]["test"]["translocation"]


def test_a_classifier_run_starts_a_backbone_without_its_head(tmp_path, trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    width, size = config["args"]["width"], config["image_size"][0]
    model = ResNetClassifier("resnet18", len(config["channels"]), 2, size, width)
    info = starting_backbone.read_pretrained(trained_run, "resnet18", width, len(config["channels"]), [size, size])
    assert info["kind"] == "classifier"
    starting_backbone.load_backbone(model, trained_run)
    source = torch.load(trained_run / "best.pt", weights_only=True)["model"]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items() if not k.startswith("head."))
    assert state["head.weight"].shape[0] == 2
    with pytest.raises(ValueError, match="its width is"):
        starting_backbone.read_pretrained(trained_run, "resnet18", width * 2, len(config["channels"]), [size, size])
    with pytest.raises(ValueError, match="neither a finished pretraining run"):
        starting_backbone.read_pretrained(tmp_path, "resnet18", width, 3, [size, size])


def test_label_grids_draw_every_positive_of_each_slide(mfish_five_metaphases, tmp_path):
    from napari_cellsynth.training.data import label_grids

    counts = label_grids.main(["--chromosomes", str(mfish_five_metaphases), "--out", str(tmp_path)])
    with np.load(mfish_five_metaphases, allow_pickle=False) as data:
        positive = data["translocation"] == 1
        slides = sorted(set(data["slide"][positive].tolist()))
        assert sorted(counts) == slides  # every slide with positives, and only those
        for slide in slides:
            assert counts[slide]["positives"] == int((positive & (data["slide"] == slide)).sum())
            assert (tmp_path / f"labels_{slide}.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"slides \['Z99'\] are not in"):
        label_grids.main(["--chromosomes", str(mfish_five_metaphases), "--slides", "Z99", "--out", str(tmp_path)])


def test_a_generators_translocations_added_raw_and_umap_filtered(mfish_five_metaphases, mfish_pairs, tmp_path):
    """Paper 004's comparison with the working recipe: a five-plane BBDM (3 training steps: the pipeline, not its
    quality, is under test) makes translocations from the DAPI of training negatives on the slides it trained on
    (it excluded V16), added as they are or as the UMAP filter keeps them (features of the six-spliced route's
    first seed)."""
    from napari_cellsynth.export.export_bbdm import export_bbdm
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    run = tmp_path / "bbdm5"
    train_bbdm.main(["--data", str(mfish_pairs), "--target", "fluorophores", "--exclude-slides", "V16", "--base", "16",
                     "--steps", "3", "--sample-every", "3", "--sample-steps", "2", "--ckpt-every", "3",
                     "--out", str(run), "--quiet"])
    bundle = export_bbdm(run, tmp_path / "bbdm5-bundle")
    out = tmp_path / "experiment"
    common = ["--data", str(mfish_five_metaphases), "--test-slides", "V14", "V26", "--seeds", "0", "--width", "8",
              "--steps", "12", "--spliced", "30", "--synthetic", "40", "--bridge-steps", "3", "--out", str(out)]
    with pytest.raises(ValueError, match="--bbdm BUNDLE"):
        experiment.main([*common, "--routes", "six-bbdm"])
    summary = experiment.main([*common, "--routes", "six-bbdm-filtered", "six-spliced-bbdm", "--bbdm", str(bundle)])
    with np.load(out / "synthetic-bbdm.npz") as made, np.load(out / "split.npz") as split, \
            np.load(out / "six.npz") as six:
        assert made["images"].shape == (40, 6, 64, 64) and set(made["labels"]) == {"translocation"}
        assert set(made["donor"]) <= set(split["train"]) and (six["labels"][made["donor"]] == "normal").all()
        assert set(six["slide"][made["donor"]]) == {"V28"}  # the slides the BBDM trained on, not V16
        assert np.array_equal(made["images"][:, 0], six["images"][made["donor"], 0])  # the donors' own DAPI
    counts = summary["umap_filter"]["bbdm"]
    assert counts["before"] == 40 and 0 <= counts["after"] <= 40 and counts["features"] == "features-six-spliced-seed0"
    with np.load(out / "kept-bbdm.npz") as kept:
        assert len(kept["images"]) == counts["after"]
    both = json.loads((out / "six-spliced-bbdm" / "seed0" / "config.json").read_text())["extra_train"]
    assert [e["counts"]["translocation"] for e in both] == [30, 40]
    assert set(summary["routes"]) == {"six-bbdm-filtered", "six-spliced-bbdm"}
    assert "kept" in (out / "summary.md").read_text()
