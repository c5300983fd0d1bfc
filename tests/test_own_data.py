"""A user's own data (issue 14), along the user's path: commands run as commands.

Real Jurkat cells written the way a user's data set arrives — 8-bit RGB JPEGs of mixed sizes, one
folder per class, one class of only two images — are trained on with the default recipe, exported,
and classified with ``cellsynth classify``; a 16-bit multichannel TIFF stack with a labels table is
read as it is.
"""

import csv
import json
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_cellsynth._sample_data import load_jurkat_sample
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.label_maps import NAMED_MAPS
from napari_cellsynth.core.metrics import majority_macro_f1
from napari_cellsynth.core.sizing import SizeFit, fit_crop

from conftest import CELLSYNTH, JURKAT, require

JURKAT4 = {original: name for name, originals in NAMED_MAPS["jurkat4"].items() for original in originals}


def command(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([CELLSYNTH, *args], capture_output=True, text=True)
    if check and done.returncode:
        raise AssertionError(f"{args} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def to_rgb8(crop: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """3×H×W uint16 → H×W×3 uint8 by a per-channel percentile window, as a user's export would."""
    scaled = (crop.astype(np.float64) - low[:, None, None]) / (high - low)[:, None, None]
    return np.moveaxis(np.clip(np.rint(255 * scaled), 0, 255).astype(np.uint8), 0, -1)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """About 330 real cells as RGB JPEGs, each cut with a random margin (40–60 px): one folder per
    4-class phase, and Anaphase as a class of its own with only two images."""
    root = tmp_path_factory.mktemp("user") / "cells"
    rng = np.random.default_rng(0)
    with np.load(require(JURKAT), allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    low = np.percentile(images, 0.5, axis=(0, 2, 3))
    high = np.percentile(images, 99.5, axis=(0, 2, 3))
    picks = []
    for original, n in (("G1", 120), ("S_phase", 60), ("G2", 60), ("Prophase", 60), ("Metaphase", 30),
                        ("Anaphase", 2)):
        picks += [(i, original) for i in rng.choice(np.flatnonzero(labels == original), n, replace=False)]
    for i, original in picks:
        folder = root / ("Anaphase" if original == "Anaphase" else JURKAT4[original])
        folder.mkdir(parents=True, exist_ok=True)
        margin = int(rng.integers(0, 11))
        crop = np.pad(images[i], ((0, 0), (margin, margin), (margin, margin)), mode="edge")
        iio.imwrite(folder / f"cell_{i:05d}.jpg", to_rgb8(crop, low, high), quality=92)
    return root


@pytest.mark.slow
def test_jpeg_folder_of_mixed_sizes_trains_beats_majority_and_classifies(jpeg_folder, tmp_path):
    run, bundle, table = tmp_path / "run", tmp_path / "bundle", tmp_path / "predictions.csv"
    done = command("train", "classifier", "--data", str(jpeg_folder), "--width", "8",
                   "--steps", "200", "--seed", "0", "--out", str(run), "--quiet")
    assert "brought to 56×56 by resize" in done.stderr  # the median longer side (about 50 px), up to a multiple of 8
    assert "['Anaphase'] have fewer than 5 crops" in done.stderr

    config = json.loads((run / "config.json").read_text())
    assert config["fit"] == "resize" and config["train_only_classes"] == ["Anaphase"]
    assert config["counts"]["train"]["Anaphase"] == 2
    assert config["counts"]["val"]["Anaphase"] == config["counts"]["test"]["Anaphase"] == 0
    metrics = json.loads((run / "metrics_test.json").read_text())
    majority_f1 = majority_macro_f1(config["counts"]["train"], config["counts"]["test"])
    assert metrics["macro_f1"] > majority_f1 + 0.25, (metrics["macro_f1"], majority_f1)

    command("export", "classifier", str(run), "--out", str(bundle))
    card = json.loads((bundle / "card.json").read_text())
    assert card["input"]["fit"] == "resize" and card["input"]["size"] == config["image_size"]
    assert card["input"]["object_crop"] == "resize"  # boxes of mixed sizes, resized: objects are cut alike

    # inference fits the mixed-size JPEGs as training did, from the card
    done = command("classify", str(jpeg_folder), "--model", str(bundle),
                   "--out", str(table), "--quiet")
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(1 for _ in jpeg_folder.rglob("*.jpg"))
    agree = np.mean([r["class"] == r["true_label"] for r in rows if r["true_label"] != "Anaphase"])
    # the folder is mostly training crops: fitted as in training, they agree at least as well as the held-out test
    # split did (a 200-step model's accuracy moves with the CPU; a wrong size policy falls far below it)
    assert agree >= metrics["accuracy"] - 0.05, (agree, metrics["accuracy"])


def test_mixed_sizes_get_the_median_size_and_the_policy_is_recorded(jpeg_folder):
    crops = read_crops(jpeg_folder)
    sides = sorted(max(iio.improps(f).shape[:2]) for f in jpeg_folder.rglob("*.jpg"))
    assert sides[0] < 44 and sides[-1] > 56  # the fixture's sizes really are mixed
    side = 8 * int(np.ceil(np.median(sides) / 8))
    assert crops.images.dtype == np.uint8 and crops.images.shape[1:] == (3, side, side)
    assert crops.fit == SizeFit((side, side), "resize") and f"brought to {side}×{side}" in crops.notes[0]
    padded = read_crops(jpeg_folder, size=40, fit="pad")
    assert padded.images.shape[-2:] == (40, 40) and padded.fit.fit == "pad"
    # crops that already have the asked size: the policy is recorded, and no note says they were changed
    tiff = jpeg_folder.parent / "same_size.tif"
    tifffile.imwrite(tiff, crops.images[:4])
    same = read_crops(tiff, size=side, fit="pad")
    assert same.fit == SizeFit((side, side), "pad") and same.notes == []


def test_pad_keeps_native_scale_and_resize_keeps_the_aspect_ratio():
    crop = load_jurkat_sample()["images"][0]  # 3×40×40 uint16, shipped with the package
    padded = fit_crop(crop, SizeFit((56, 56), "pad"))
    assert padded.dtype == crop.dtype and np.array_equal(padded[:, 8:48, 8:48], crop)
    cropped = fit_crop(crop, SizeFit((32, 32), "pad"))
    assert np.array_equal(cropped, crop[:, 4:36, 4:36])
    wide = crop[:, :20, :]  # 20×40: scaled to 16×32, then padded to 32×32
    fitted = fit_crop(wide, SizeFit((32, 32), "resize"))
    assert fitted.shape == (3, 32, 32) and fitted.dtype == crop.dtype
    border = np.median(np.concatenate([wide[:, 0], wide[:, -1], wide[:, :, 0], wide[:, :, -1]], axis=1), axis=1)
    assert np.array_equal(fitted[:, 0, 0], border.astype(crop.dtype))  # the padding is the local background


def test_16_bit_multichannel_tiff_stack_with_a_labels_table(tmp_path):
    sample = load_jurkat_sample()
    images, labels = sample["images"][:24], sample["labels"][:24]
    tifffile.imwrite(tmp_path / "stack.tif", images)
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "label"])
        writer.writerows(enumerate(labels))
    crops = read_crops(tmp_path / "stack.tif", tmp_path / "labels.csv")
    assert crops.images.dtype == np.uint16 and np.array_equal(crops.images, images)
    assert crops.labels.tolist() == labels.tolist() and crops.fit is None


def test_recipes_experiment_pairs_recipes_seed_by_seed(jurkat_slice, tmp_path):
    """The recipes experiment (results §1b) as a command, briefly: two recipes on two seeds of real Jurkat cells,
    each a real training run; every recipe is paired with the first on the seeds both finished."""
    import shutil
    import sys

    sets = tmp_path / "sets"
    sets.mkdir()
    shutil.copy(jurkat_slice, sets / "jurkat300.npz")  # the small-data slot, filled with the test slice
    out = tmp_path / "recipes"
    done = subprocess.run([sys.executable, "-m", "napari_cellsynth.training.experiments.recipes", "--sets", str(sets),
                           "--datasets", "jurkat4-300", "--recipes", "adamw-1000", "adamw-1000-shift", "--seeds", "0",
                           "1", "--jobs", "2", "--out", str(out), "--steps", "8", "--width", "8"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["recipe"], r["seeds"], r["steps"]) for r in summary["rows"]] == [
        ("adamw-1000", 2, [8, 8]), ("adamw-1000-shift", 2, [8, 8])]
    (paired,) = summary["paired"]
    assert (paired["before"], paired["after"], paired["seeds"]) == ("adamw-1000", "adamw-1000-shift", [0, 1])
    for recipe, key in (("adamw-1000", "macro_f1_before"), ("adamw-1000-shift", "macro_f1_after")):
        assert paired[key] == [json.loads((out / "jurkat4-300" / recipe / f"seed{s}" / "metrics_test.json")
                                          .read_text())["macro_f1"] for s in (0, 1)]
        config = json.loads((out / "jurkat4-300" / recipe / "seed0" / "config.json").read_text())
        assert config["augmentation"]["shift"] == (0.1 if recipe.endswith("shift") else 0.0)
    change = np.subtract(paired["macro_f1_after"], paired["macro_f1_before"])
    assert paired["mean_change"] == pytest.approx(change.mean())
    assert paired["seeds_higher"] + paired["seeds_lower"] == int(np.count_nonzero(change))
    assert 0 < paired["p_wilcoxon"] <= 1 and "| against |" in (out / "summary.md").read_text()


def test_recipe_pairs_are_scipy_tests_on_the_runs_files(tmp_path):
    """The pairing reads each seed's metrics_test.json and gives scipy's two-sided Wilcoxon and paired t-test."""
    from scipy.stats import ttest_rel, wilcoxon

    from napari_cellsynth.training.experiments.recipes import paired_recipes
    from napari_cellsynth.training.records.classifier_run import ClassifierRun, ClassifierSettings

    before, after = [0.60, 0.62, 0.58, 0.65, 0.61], [0.66, 0.61, 0.64, 0.70, 0.68]
    for recipe, values in (("a", before), ("b", after)):
        for seed, value in enumerate(values):
            run = tmp_path / "set" / recipe / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "metrics_test.json").write_text(json.dumps({"macro_f1": value}))
    (tmp_path / "set" / "b" / "seed4" / "metrics_test.json").unlink()  # an unfinished run leaves its seed out
    paired = paired_recipes(tmp_path, "set", "a", "b", [0, 1, 2, 3, 4])
    assert paired["seeds"] == [0, 1, 2, 3] and (paired["seeds_higher"], paired["seeds_lower"]) == (3, 1)
    assert paired["mean_change"] == pytest.approx(np.mean(np.subtract(after[:4], before[:4])))
    assert paired["p_wilcoxon"] == pytest.approx(wilcoxon(after[:4], before[:4]).pvalue)
    assert paired["p_ttest"] == pytest.approx(ttest_rel(after[:4], before[:4]).pvalue)
    assert paired_recipes(tmp_path, "set", "a", "missing", [0, 1]) is None
    # with per-class F1 and the split's test counts: the macro-F1 of the classes with ≥ 20 test crops, paired too
    for recipe, values in (("a", before), ("b", after)):
        for seed, value in enumerate(values[:4]):
            run = tmp_path / "set" / recipe / f"seed{seed}"
            (run / "metrics_test.json").write_text(json.dumps({"macro_f1": value, "per_class": {
                "big": {"f1": value + 0.1}, "large": {"f1": value}, "tiny": {"f1": 0.0}}}))
            (run / "config.json").write_text(json.dumps(ClassifierRun(
                data="cells.npz", label_map={}, classes=["big", "large", "tiny"], channels=["dna"], image_size=[40, 40],
                dtype="uint8", value_range=[0, 255], normalization={}, settings=ClassifierSettings("cells.npz", "run"),
                counts={"test": {"big": 200, "large": 20, "tiny": 3}}).to_dict()))
    large = paired_recipes(tmp_path, "set", "a", "b", [0, 1, 2, 3])["large_classes"]
    assert large["classes"] == ["big", "large"]
    assert large["before"] == pytest.approx(np.add(before[:4], 0.05)) and large["after"] == pytest.approx(
        np.add(after[:4], 0.05))
    for run in (tmp_path / "set").glob("*/seed*"):  # no class with 20 test crops: no such pairing, not a NaN row
        record = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else None
        if record:
            (run / "config.json").write_text(json.dumps(record | {"counts": {"test": {"big": 5, "large": 5, "tiny": 3}}}))
    assert "large_classes" not in paired_recipes(tmp_path, "set", "a", "b", [0, 1, 2, 3])
