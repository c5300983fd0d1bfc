"""Paper 004's translocation experiment on real metaphases: slide-held-out split, synthesis from donor DAPI,
the UMAP filter, and classifiers on real vs real + synthetic chromosomes."""

import json

import numpy as np
import pytest
import torch

from napari_cellsynth.core.images import ImageInputError
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.translate import TranslationSettings, translate_crops
from napari_cellsynth.training.data.labelled_crops import read_split
from napari_cellsynth.training.data.translocations import donors, load_chromosomes, slide_split

TEST_SLIDES = ["V14", "V26"]


def test_slide_split_holds_out_whole_slides(mfish_five_metaphases):
    chromosomes = load_chromosomes(str(mfish_five_metaphases))
    split = slide_split(chromosomes, TEST_SLIDES, 0.2, seed=0)
    labelled = np.flatnonzero(chromosomes["translocation"] >= 0)
    slides, y = chromosomes["slide"][labelled], chromosomes["translocation"][labelled]
    assert set(slides[split["test"]]) == {"V14", "V26"}
    assert not set(slides[np.concatenate([split["train"], split["val"]])]) & set(TEST_SLIDES)
    assert len(np.concatenate(list(split.values()))) == len(labelled)  # every labelled chromosome, once
    for part in ("train", "val", "test"):
        assert set(y[split[part]]) == {0, 1}, part
    pool = donors(chromosomes, TEST_SLIDES)
    assert not set(chromosomes["slide"][pool]) & set(TEST_SLIDES) and (chromosomes["translocation"][pool] != 1).all()
    again = slide_split(chromosomes, TEST_SLIDES, 0.2, seed=0)
    assert all(np.array_equal(split[k], again[k]) for k in split)  # seeded


def test_slide_split_refuses_a_test_set_without_both_classes(mfish_five_metaphases):
    chromosomes = load_chromosomes(str(mfish_five_metaphases))
    with pytest.raises(ValueError, match="hold no 'translocation' chromosome"):
        slide_split(chromosomes, ["V14"], 0.2, seed=0)  # a normal karyotype's slide
    with pytest.raises(ValueError, match=r"test slides \['Z99'\] are not in the data"):
        slide_split(chromosomes, ["Z99"], 0.2, seed=0)


def test_read_split_rejects_overlaps_and_out_of_range(tmp_path):
    np.savez(tmp_path / "ok.npz", train=[0, 1], val=[2], test=[3])
    assert read_split(str(tmp_path / "ok.npz"), 4)["train"].tolist() == [0, 1]
    np.savez(tmp_path / "overlap.npz", train=[0, 1], val=[1], test=[3])
    with pytest.raises(ValueError, match="overlap"):
        read_split(str(tmp_path / "overlap.npz"), 4)
    with pytest.raises(ValueError, match="outside"):
        read_split(str(tmp_path / "ok.npz"), 3)
    np.savez(tmp_path / "partial.npz", train=[0, 1], test=[3])
    with pytest.raises(ValueError, match=r"lacks \['val'\]"):
        read_split(str(tmp_path / "partial.npz"), 4)


def test_balanced_class_weights_follow_scikit_learn():
    from napari_cellsynth.training.trainers.classifier import balanced_weights

    y = np.array([0] * 90 + [1] * 10)
    assert np.allclose(balanced_weights(y, 2).numpy(), [100 / 180, 100 / 20])
    assert np.allclose(balanced_weights(y, 3).numpy(), [100 / 270, 100 / 30, 0])  # a class without crops: 0


def test_translate_crops_checks_the_crop_shape(bbdm_bundle):
    model = OnnxModel(bbdm_bundle, kind="bbdm")
    with pytest.raises(ImageInputError, match="N×1×64×64"):
        run_to_end(translate_crops(model, np.zeros((2, 1, 32, 32), np.uint8), np.ones((2, 32, 32), bool),
                                   TranslationSettings(steps=2)))
    with pytest.raises(ImageInputError, match="masks must be"):
        run_to_end(translate_crops(model, np.zeros((2, 1, 64, 64), np.uint8), np.ones((1, 64, 64), bool),
                                   TranslationSettings(steps=2)))


def test_experiment_end_to_end(mfish_five_metaphases, bbdm_bundle, tmp_path):
    from napari_cellsynth.training.experiments import translocation as experiment_translocation

    out = tmp_path / "exp"
    argv = ["--data", str(mfish_five_metaphases), "--test-slides", *TEST_SLIDES, "--seeds", "0", "--augment", "on",
            "--epochs", "1", "--width", "8", "--bbdm", str(bbdm_bundle), "--synthetic", "12", "--bbdm-steps", "4",
            "--filter", "bbdm", "--balanced-baseline", "--out", str(out)]
    summary = experiment_translocation.main(argv)
    assert set(summary["classification"]) == {"real, augmentation on", "real (class-balanced loss), augmentation on",
                                              "real + BBDM, augmentation on",
                                              "real + BBDM (UMAP-filtered), augmentation on"}
    for result in summary["classification"].values():
        assert result["classes"] == ["normal", "translocation"] and result["n_runs"] == 1
    metrics = json.loads((out / "real" / "aug-on" / "seed0" / "metrics_test.json").read_text())
    # V14 (46,XX) and V26's classes its karyotype never names: 90 negatives
    assert metrics["per_class"]["translocation"]["support"] == 1 and metrics["per_class"]["normal"]["support"] == 90
    with np.load(out / "synthetic-bbdm.npz") as synthetic:
        assert synthetic["images"].shape == (12, 3, 64, 64) and set(synthetic["labels"]) == {"translocation"}
        assert (synthetic["images"][np.repeat(synthetic["dapi"] == 0, 3, axis=1)] == 0).all()  # masked
        chromosomes = load_chromosomes(str(mfish_five_metaphases))
        assert not set(chromosomes["slide"][synthetic["donor_index"]]) & set(TEST_SLIDES)
    counts = summary["umap_filter"]["BBDM"]
    assert 0 <= counts["after"] <= counts["before"] == 12
    with np.load(out / "kept-bbdm.npz") as kept:
        assert len(kept["images"]) == counts["after"]
    balanced = json.loads((out / "real-balanced" / "aug-on" / "seed0" / "config.json").read_text())
    assert balanced["args"]["class_weights"] == "balanced"
    config = json.loads((out / "bbdm" / "aug-on" / "seed0" / "config.json").read_text())
    assert config["extra_train"][0]["counts"] == {"normal": 0, "translocation": 12}
    quality = summary["generator_quality"]
    assert {"held-out real", "BBDM"} <= set(quality) and np.isfinite(quality["BBDM"]["fid_resnet"])
    assert (out / "ssim_max.png").is_file() and (out / "umap_filter-bbdm.png").is_file()
    # a second call finds everything on disk and gives the same numbers
    assert experiment_translocation.main(argv)["classification"] == summary["classification"]
    # the colour-heterogeneity reference runs on the same split
    from napari_cellsynth.training.experiments.colour_baseline import colour_features
    from napari_cellsynth.training.experiments.colour_baseline import main as colour_main

    colour = colour_main(["--out", str(out)])
    assert 0 <= colour["f1"] <= 1 and 0 <= colour["roc_auc"] <= 1 and (out / "colour_baseline.json").is_file()
    uniform = np.zeros((1, 3, 8, 8), np.uint8)
    uniform[0, :, 2:6, 2:6] = [[[50]], [[100]], [[150]]]
    two_colours = uniform.copy()
    two_colours[0, :, 2:4, 2:6] = [[[150]], [[100]], [[50]]]
    features = colour_features(np.concatenate([uniform, two_colours]))
    assert np.isclose(features[0, 0], 0) and features[1, 0] > 0.1 and features[0, 2] == features[1, 2] == 16
    # --collect-only trains nothing: it summarises what is on disk and lists what is missing
    both = [*argv[:argv.index("--augment") + 1], "off", *argv[argv.index("--augment") + 1:], "--collect-only"]
    collected = experiment_translocation.main(both)
    assert collected["classification"] == summary["classification"]
    assert sorted(collected["missing"]) == ["bbdm-filtered/aug-off/seed0", "bbdm/aug-off/seed0",
                                            "real-balanced/aug-off/seed0", "real/aug-off/seed0"]
    assert not (out / "real" / "aug-off").exists()


def test_optimizer_option_builds_paper_004s_adam():
    from napari_cellsynth.training.nets.resnet import ResNetClassifier
    from napari_cellsynth.training.trainers.classifier import build_optimizer, build_parser

    model = ResNetClassifier("resnet18", 3, 2, 64, 8)
    args = build_parser().parse_args(["--data", "x.npz", "--out", "o", "--optimizer", "adam", "--lr", "1e-3"])
    optimizer = build_optimizer(model, args)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 1e-3
    sgd = build_optimizer(model, build_parser().parse_args(["--data", "x.npz", "--out", "o", "--optimizer", "sgd"]))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["lr"] == 0.05
    default = build_optimizer(model, build_parser().parse_args(["--data", "x.npz", "--out", "o"]))
    assert isinstance(default, torch.optim.AdamW) and default.param_groups[0]["weight_decay"] == 0.05
