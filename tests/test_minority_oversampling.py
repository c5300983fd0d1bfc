"""Paper 001's experiment (issue 15) on real Jurkat cells, with a real (short) WGAN-div: the arms, the fixed split,
standard sampling's synthetic share, the rank-sum tests, resuming, and GAN checkpoint choice by KID."""

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_cellsynth.training.experiments import minority_oversampling as experiment


@pytest.fixture(scope="module")
def anaphase_gan(jurkat_slice, tmp_path_factory):
    """A WGAN-div of the slice's Anaphase cells (a few steps: real weights, not a good generator) and its bundle."""
    from napari_cellsynth.export.export_gan import export_gan
    from napari_cellsynth.training.trainers import gan as train_gan

    folder = tmp_path_factory.mktemp("gan")
    run = train_gan.main(["--data", str(jurkat_slice), "--label-map", "jurkat7", "--only-class", "Anaphase",
                          "--split-seed", "0", "--base", "8", "--latent", "16", "--steps", "4", "--snapshot-every", "2",
                          "--sample-every", "4", "--device", "cpu", "--quiet", "--out", str(folder / "run")])
    return run, export_gan(run, folder / "bundle")


def test_arms_follow_paper_001_ablation():
    table = experiment.arms(["wgan-div", "wgan-gp"])
    assert list(table) == ["base", "balanced", "standard-wgan-div", "focused-wgan-div", "focused-wgan-gp",
                           "focused-wgan-div-no-mixup", "focused-wgan-div-no-nonlinear", "focused-no-generator"]
    assert table["balanced"] == {"sampling": "balanced"}  # the cheap alternative: rare crops drawn more often
    assert table["standard-wgan-div"] == {"standard": "wgan-div"}
    assert table["focused-wgan-div-no-mixup"] == {"generator": "wgan-div", "parts": ("generated", "nonlinear")}
    assert table["focused-wgan-gp"]["parts"] == ("generated", "mixup", "nonlinear")
    assert table["focused-no-generator"] == {"generator": None, "parts": ("mixup", "nonlinear")}
    assert experiment.parse_generators([["a=x", "a=y"], ["b=z"]]) == {"a": ["x", "y"], "b": ["z"]}
    with pytest.raises(ValueError, match="write KIND=BUNDLE"):
        experiment.parse_generators([["runs/gan"]])


@pytest.mark.full_data
def test_experiment_on_real_cells_resumes_and_tests_against_the_full_method(jurkat_slice, anaphase_gan, tmp_path):
    _, bundle = anaphase_gan
    out = tmp_path / "exp"
    argv = ["--data", str(jurkat_slice), "--label-map", "jurkat7", "--focused", "Anaphase=2",
            "--generator", f"wgan-div={bundle}", "--generated-count", "16", "--seeds", "0", "1", "--width", "8",
            "--steps", "6", "--batch-size", "32", "--arms", "base", "standard-wgan-div", "focused-wgan-div",
            "focused-no-generator", "--out", str(out)]
    summary = experiment.main(argv)

    assert list(summary["arms"]) == ["base", "standard-wgan-div", "focused-wgan-div", "focused-no-generator"]
    assert summary["full_method"] == "focused-wgan-div" and summary["focused"] == {"Anaphase": 2}
    # every run trained on the one split the generator was trained on (split seed 0)
    with np.load(out / "split.npz") as saved:
        split = {part: saved[part] for part in saved.files}
    for arm in summary["arms"]:
        with np.load(out / arm / "seed1" / "split.npz") as used:
            np.testing.assert_array_equal(used["test"], split["test"])
    config = json.loads((out / "focused-wgan-div" / "seed0" / "config.json").read_text())
    assert config["args"]["focused"] == ["Anaphase=2"]
    assert config["args"]["focused_parts"] == ["generated", "mixup", "nonlinear"]
    assert json.loads((out / "focused-no-generator" / "seed0" / "config.json").read_text())["args"][
        "focused_generated"] in (None, [])
    # standard sampling: the same mix, merged, as many crops as give a focused batch's synthetic share (8 of 32)
    for seed in (0, 1):  # each seed's run took its own draw
        used = json.loads((out / "standard-wgan-div" / f"seed{seed}" / "config.json").read_text())["args"]["extra_train"]
        assert used == [str(out / f"standard-wgan-div-seed{seed}.npz")]
    with np.load(out / "standard-wgan-div-seed0.npz") as standard:
        assert len(standard["labels"]) == round(len(split["train"]) * 8 / 24)
        assert set(standard["labels"].tolist()) == {"Anaphase"}
    with np.load(out / "generated-wgan-div.npz") as generated:
        assert generated["images"].shape == (16, 3, 40, 40) and set(generated["labels"].tolist()) == {"Anaphase"}
    assert (out / "generated-wgan-div.png").is_file()

    probabilities = np.load(out / "base" / "seed0" / "test_probabilities.npy")
    assert probabilities.shape == (len(split["test"]), 7)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    for arm, row in summary["arms"].items():
        assert row["seeds"] == [0, 1] and 0 <= row["macro_f1"]["mean"] <= 1
        if arm == "focused-wgan-div":
            assert "vs_full" not in row
        else:
            assert row["vs_full"]["seeds"] == [0, 1]
            assert all(0 <= row["vs_full"][k] <= 1 for k in ("p_crops_all", "p_crops_minority", "p_seeds_macro_f1"))
    assert "| focused-wgan-div | 2 |" in (out / "summary.md").read_text()

    # the settings the files depend on are fixed: another step count is refused
    with pytest.raises(ValueError, match="other steps"):
        experiment.main([*argv[:argv.index("--steps")], "--steps", "7", *argv[argv.index("--steps") + 2:]])
    # a rerun trains nothing again
    stamp = (out / "base" / "seed0" / "metrics_test.json").stat().st_mtime_ns
    again = experiment.main(argv)
    assert (out / "base" / "seed0" / "metrics_test.json").stat().st_mtime_ns == stamp
    assert again["arms"]["base"]["macro_f1"] == summary["arms"]["base"]["macro_f1"]


def test_bad_generator_and_focused_arguments_give_one_line(jurkat_slice, anaphase_gan, tmp_path):
    _, bundle = anaphase_gan
    base = [sys.executable, "-m", "napari_cellsynth.training.experiments.minority_oversampling", "--data",
            str(jurkat_slice), "--label-map", "jurkat7", "--out", str(tmp_path / "bad")]
    cases = [(["--focused", "Anaphase=2", "--generator", str(bundle)], "write KIND=BUNDLE"),
             (["--focused", "Mitosis=2", "--generator", f"g={bundle}"], "use CLASS=N with a class of"),
             (["--focused", "Telophase=1", "--generator", f"g={bundle}", "--arms", "focused-g", "--seeds", "0"],
              "no bundle makes ['Telophase']")]
    for extra, message in cases:
        done = subprocess.run(base + extra, capture_output=True, text=True)
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_gan_checkpoints_scored_by_kid_against_the_cells_it_learnt_from(jurkat_slice, anaphase_gan,
                                                                          classifier_bundle, tmp_path):
    from napari_cellsynth.core.label_maps import apply_label_map, resolve_label_map
    from napari_cellsynth.training.data.labelled_crops import stratified_split
    from napari_cellsynth.training.experiments import kid_curve

    run, _ = anaphase_gan
    with np.load(jurkat_slice) as data:
        labels = data["labels"]
    y, classes = apply_label_map(labels, resolve_label_map("jurkat7", labels))
    train = stratified_split(y, 0)["train"]
    record = kid_curve.main(["--run", str(run), "--classifier", str(classifier_bundle), "--reference", "train",
                             "--count", "16", "--out", str(tmp_path / "kid.json")])
    assert record["class"] == "Anaphase" and record["sampler"] == "one generator pass"
    assert record["reference"] == "train" and record["reference_cells"] == (y[train] == classes.index("Anaphase")).sum()
    assert [row["step"] for row in record["rows"]] == [2, 4]
    assert all(np.isfinite(row["fid"]) for row in record["rows"]) and (tmp_path / "kid_curve.png").is_file()
    with pytest.raises(ValueError, match="other settings"):
        kid_curve.main(["--run", str(run), "--classifier", str(classifier_bundle), "--reference", "val",
                        "--count", "16", "--out", str(tmp_path / "kid.json")])


def test_rank_sum_tests_ask_whether_the_full_method_beats_an_arm_on_shared_seeds(tmp_path):
    """Hand-made runs with known outcomes: the full method gives the true class 0.9, 'base' 0.3 (so p is small), 'other'
    0.95 (so p is large: the test is one-sided); 'base' has a seed the full method lacks, which is left out."""
    from types import SimpleNamespace

    classes, y = ["A", "B"], np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    rng = np.random.default_rng(0)

    def write(arm, seed, p_true, macro_f1):
        run = tmp_path / arm / f"seed{seed}"
        run.mkdir(parents=True)
        p = np.clip(p_true + rng.normal(0, 0.01, len(y)), 0, 1)
        probabilities = np.zeros((len(y), 2))
        probabilities[np.arange(len(y)), y] = p
        probabilities[np.arange(len(y)), 1 - y] = 1 - p
        np.save(run / "test_probabilities.npy", probabilities)
        per_class = {c: {"ppv": macro_f1, "recall": macro_f1, "f1": macro_f1} for c in classes}
        (run / "metrics_test.json").write_text(json.dumps({"classes": classes, "per_class": per_class,
                                                            "macro_f1": macro_f1, "accuracy": macro_f1}))

    for seed in range(3):
        write("focused-g", seed, 0.9, 0.8 + 0.01 * seed)
        write("base", seed, 0.3, 0.5 + 0.01 * seed)
        write("other", seed, 0.95, 0.9 + 0.01 * seed)
    write("base", 7, 0.3, 0.5)
    fake = SimpleNamespace(out=tmp_path, y=y, split={"test": np.arange(len(y))}, classes=classes, focused={"B": 1},
                           generators={"g": ["bundle"]}, arms={"base": {}, "focused-g": {}, "other": {}},
                           probabilities=lambda run: np.load(run / "test_probabilities.npy"))
    summary = experiment.collect(fake, [0, 1, 2, 7])
    base, other = summary["arms"]["base"], summary["arms"]["other"]
    assert summary["full_method"] == "focused-g" and "vs_full" not in summary["arms"]["focused-g"]
    assert base["seeds"] == [0, 1, 2, 7] and base["vs_full"]["seeds"] == [0, 1, 2]
    assert base["vs_full"]["p_crops_all"] < 1e-3 and base["vs_full"]["p_crops_minority"] < 0.01
    assert base["vs_full"]["p_seeds_macro_f1"] == pytest.approx(0.05)  # 3 against 3, fully separated
    assert base["vs_full"]["macro_f1_difference"] == pytest.approx(0.3)
    assert other["vs_full"]["p_crops_all"] > 0.99 and other["vs_full"]["p_seeds_macro_f1"] > 0.9
    assert base["mean_p_true"]["minority"] == pytest.approx(0.3, abs=0.01)
    assert "| base | 4 |" in experiment.markdown(summary)


@pytest.mark.full_data
def test_a_generator_trained_on_another_split_is_refused(jurkat_slice, anaphase_gan, tmp_path):
    """The card's recorded training crops of a class must be this split's: the real GAN's are; a card claiming one
    more is refused (it may have seen test crops), and so is one fine-tuned from a start that learnt other classes."""
    from types import SimpleNamespace

    from napari_cellsynth.core.runtime import OnnxModel

    _, bundle = anaphase_gan
    args = experiment.build_parser().parse_args(["--data", str(jurkat_slice), "--label-map", "jurkat7", "--focused",
                                                 "Anaphase=1", "--generator", f"g={bundle}", "--out", str(tmp_path)])
    exp = experiment.Experiment(args, tmp_path)
    card = OnnxModel(bundle).card
    exp.check_trained_on_split(card, "Anaphase")
    counts = card.training["data"]["train_counts"]
    other = SimpleNamespace(name="other", training={"data": {"train_counts": {"Anaphase": counts["Anaphase"] + 1}}})
    with pytest.raises(ValueError, match="trained on another split"):
        exp.check_trained_on_split(other, "Anaphase")
    # fine-tuned from a generator of other classes (the zoo's 4-class one): its start's split was another
    fine_tuned = SimpleNamespace(name="from-zoo", training={"data": {"train_counts": counts}, "init_from": {
        "from": "zoo:ddpm-jurkat4-full-v", "kind": "bundle", "classes": ["G1", "S", "G2", "M"]}})
    with pytest.raises(ValueError, match="fine-tuned from zoo:ddpm-jurkat4-full-v, which learnt other classes"):
        exp.check_trained_on_split(fine_tuned, "Anaphase")
    fine_tuned.training["init_from"]["classes"] = exp.classes
    exp.check_trained_on_split(fine_tuned, "Anaphase")
    # a recorded split must be this one: seed and stratification classes
    fine_tuned.training["data"]["split"] = {"seed": 1, "stratify_by": None, "classes": exp.classes}
    with pytest.raises(ValueError, match="learnt from split seed 1"):
        exp.check_trained_on_split(fine_tuned, "Anaphase")
    # --stratify-by jurkat4: the 7-class experiment on the split of the zoo's 4-class generators, which a generator
    # fine-tuned from one of them may use (the start's classes and counts are those of that split's training part)
    args4 = experiment.build_parser().parse_args(["--data", str(jurkat_slice), "--label-map", "jurkat7", "--focused",
                                                  "Anaphase=1", "--generator", f"g={bundle}", "--stratify-by",
                                                  "jurkat4", "--out", str(tmp_path / "by4")])
    exp4 = experiment.Experiment(args4, tmp_path / "by4")
    assert exp4.split_classes == ["G1", "S", "G2", "M"] and exp4.classes[3:] == ["Prophase", "Metaphase", "Anaphase",
                                                                                  "Telophase"]
    train4 = exp4.split_y[exp4.split["train"]]
    start_counts = {c: int((train4 == k).sum()) for k, c in enumerate(exp4.split_classes)}
    here = int((exp4.train_y == exp4.classes.index("Anaphase")).sum())
    zoo_like = SimpleNamespace(name="from-zoo", training={
        "data": {"train_counts": {"Anaphase": here}, "split": {"seed": 0, "stratify_by": "jurkat4",
                                                               "classes": exp4.split_classes}},
        "init_from": {"from": "zoo:ddpm-jurkat4-full-v", "kind": "bundle", "classes": exp4.split_classes,
                      "train_counts": start_counts}})
    exp4.check_trained_on_split(zoo_like, "Anaphase")
    zoo_like.training["init_from"]["train_counts"] = {**start_counts, "M": start_counts["M"] + 1}
    with pytest.raises(ValueError, match="learnt from .* crops of M"):
        exp4.check_trained_on_split(zoo_like, "Anaphase")
    with pytest.raises(ValueError, match="stratified by G1, S, G2, M, this experiment's is seed 0 stratified by G1"):
        exp.check_trained_on_split(SimpleNamespace(name="g", training=zoo_like.training), "Anaphase")
