"""Decision thresholds for rare classes (issue 33 item 4): the rule, how it is chosen on validation, the card that
carries it, and `cellsynth classify` that uses it, overrides it, and reports PR-AUC, ROC-AUC, per-group counts
and bootstrap intervals."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from napari_cellsynth.core.decisions import DecisionRule, choose_thresholds, parse_thresholds
from napari_cellsynth.core.scoring import bootstrap_intervals, group_counts, ranking_metrics, score_labelled

CLASSES = ["common", "other", "rare"]


def test_a_threshold_calls_its_class_when_reached_and_the_argmax_of_the_rest_otherwise():
    p = np.array([[0.70, 0.10, 0.20],   # rare reaches 0.2: rare, though common is larger
                  [0.85, 0.10, 0.05],   # rare below: argmax of the others
                  [0.30, 0.45, 0.25],   # rare reaches: rare
                  [0.10, 0.60, 0.15]])  # below: other
    rule = DecisionRule({"rare": 0.2})
    assert rule.predict(p, CLASSES).tolist() == [2, 0, 2, 1]
    assert DecisionRule({}).predict(p, CLASSES).tolist() == p.argmax(1).tolist()
    # two thresholded classes: the one furthest above its threshold wins; a high threshold can refuse an argmax
    both = DecisionRule({"rare": 0.2, "other": 0.5})
    assert both.predict(np.array([[0.2, 0.5, 0.3], [0.5, 0.45, 0.05]]), CLASSES).tolist() == [2, 0]
    binary = DecisionRule({"yes": 0.3})
    assert binary.predict(np.array([[0.75, 0.25], [0.7, 0.3]]), ["no", "yes"]).tolist() == [0, 1]
    assert DecisionRule.from_dict(json.loads(json.dumps(both.to_dict()))) == both


def test_thresholds_given_on_the_command_line_are_checked():
    assert parse_thresholds(["rare=0.25"], CLASSES).thresholds == {"rare": 0.25}
    assert parse_thresholds(["none"], CLASSES).thresholds == {}
    for bad, message in ((["rare"], "CLASS=T"), (["rare=x"], "CLASS=T"), (["Mitosis=0.2"], "does not have"),
                         (["rare=0"], r"\(0, 1\]"), (["rare=1.5"], r"\(0, 1\]")):
        with pytest.raises(ValueError, match=message):
            parse_thresholds(bad, CLASSES)


def _validation(seed=0, n_rare=20, separation=3.0):
    """A rare class that a classifier ranks well but whose probability rarely tops the common class's."""
    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.zeros(400, int), np.ones(300, int), np.full(n_rare, 2)])
    logits = rng.normal(0, 1, (len(truth), 3))
    logits[truth == 0, 0] += 3
    logits[truth == 1, 1] += 3
    logits[:, 0] += 4  # the common class dominates
    logits[truth == 2, 2] += separation
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), truth


def test_thresholds_are_chosen_for_rare_classes_only_and_kept_only_when_validation_macro_f1_rises():
    p, truth = _validation()
    rule = choose_thresholds(p, truth, CLASSES)
    assert set(rule.thresholds) == {"rare"} and rule.record["kept"]  # "other" (300 of 720) is not rare
    assert rule.record["validation_macro_f1_thresholds"] > rule.record["validation_macro_f1_argmax"]
    rare = truth == 2
    assert np.mean(rule.predict(p, CLASSES)[rare] == 2) > np.mean(p.argmax(1)[rare] == 2)  # recall rises
    few = choose_thresholds(*_validation(n_rare=3), CLASSES)  # 3 validation crops decide nothing
    assert few.thresholds == {} and not few.record["kept"]
    p, truth = _validation()
    perfect = np.eye(3)[truth] * 0.9 + 0.1 / 3  # argmax is already right: nothing to gain
    assert choose_thresholds(perfect, truth, CLASSES).thresholds == {}


def test_ranking_metrics_group_counts_and_group_bootstrap():
    p, truth = _validation(seed=1)
    ranking = ranking_metrics(truth, p, CLASSES)
    assert ranking["rare"]["pr_auc"] == pytest.approx(average_precision_score(truth == 2, p[:, 2]))
    assert ranking["rare"]["roc_auc"] == pytest.approx(roc_auc_score(truth == 2, p[:, 2]))
    assert ranking_metrics(np.zeros(4, int), p[:4], CLASSES)["common"]["pr_auc"] is None  # no negatives
    groups = np.array([f"slide{i % 6}" for i in range(len(truth))])
    predicted = p.argmax(1)
    counts = group_counts(truth, predicted, groups, CLASSES)
    assert sum(row["n"] for row in counts.values()) == len(truth)
    assert sum(row["hits"]["common"] for row in counts.values()) == np.sum((truth == 0) & (predicted == 0))
    boot = bootstrap_intervals(truth, predicted, p, CLASSES, 50, groups)
    assert boot["unit"] == "group" and boot["units"] == 6
    low, high = boot["macro_f1"]
    scores = score_labelled(truth, p, predicted, CLASSES)
    assert low <= scores["macro_f1"] <= high


def _cellsynth(*args, cwd):
    import subprocess
    import sys
    from pathlib import Path

    cellsynth = Path(sys.executable).with_name("cellsynth")
    return subprocess.run([str(cellsynth), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_classify_reports_pr_auc_roc_auc_groups_and_bootstrap_as_a_command(tmp_path):
    """The zoo's 4-class classifier on the 226 sample cells (never in its training), grouped by an .npz array and
    by a file-name pattern of a folder per class; the metrics JSON holds what the CSV's probabilities give."""
    import csv

    import tifffile

    from napari_cellsynth._sample_data import load_jurkat_sample

    sample = load_jurkat_sample()
    slides = np.array([f"slide{i % 3}" for i in range(len(sample["images"]))])
    np.savez(tmp_path / "cells.npz", images=sample["images"], labels=sample["labels"], slide=slides)
    done = _cellsynth("classify", "cells.npz", "--model", "zoo:classifier-jurkat4", "--out", "out.csv",
                      "--group-by", "slide", "--bootstrap", "100", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "PR-AUC" in done.stdout and "slide2" in done.stdout and "resamples of 3 groups" in done.stdout
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    scores = json.loads((tmp_path / "out.metrics.json").read_text())
    classes = scores["classes"]
    p = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    truth = np.array([classes.index("M") if r["true_label"] not in ("G1", "S_phase", "G2") else
                      ["G1", "S_phase", "G2"].index(r["true_label"]) for r in rows])
    assert scores["ranking"]["M"]["pr_auc"] == pytest.approx(average_precision_score(truth == 3, p[:, 3]), abs=1e-4)
    assert scores["ranking"]["M"]["roc_auc"] == pytest.approx(roc_auc_score(truth == 3, p[:, 3]), abs=1e-4)
    assert set(scores["groups"]) == {"slide0", "slide1", "slide2"} and [r["group"] for r in rows] == slides.tolist()
    assert scores["bootstrap"]["unit"] == "group" and scores["decision"] is None
    # a folder per class, grouped by a pattern anchored at the file names' start (as README's example)
    for i in range(0, len(slides), 5):
        folder = tmp_path / "folder" / str(sample["labels"][i])
        folder.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / f"{slides[i]}_cell{i:03d}.tif", sample["images"][i])
    done = _cellsynth("classify", "folder", "--model", "zoo:classifier-jurkat4", "--out", "folder.csv",
                      "--group-by", r"path:^(slide\d)_", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert set(json.loads((tmp_path / "folder.metrics.json").read_text())["groups"]) == {"slide0", "slide1", "slide2"}
    for args, message in ((["--group-by", "plate"], "no array 'plate'"), (["--group-by", "path:(plate)"], "matches neither"),
                          (["--threshold", "Mitosis=0.3"], "does not have"), (["--bootstrap", "-1"], "resamples")):
        bad = _cellsynth("classify", "cells.npz", "--model", "zoo:classifier-jurkat4", "--out", "bad.csv", *args,
                         cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert not (tmp_path / "bad.csv").exists()


@pytest.mark.full_data
def test_the_trainer_records_its_validation_choice_and_the_card_thresholds_drive_classify(trained_run, tmp_path):
    """The trainer writes decision.json (what was measured, whether thresholds were kept); the exporter puts a rule
    into the card; `cellsynth classify` then calls crops by it, says so, and `--threshold none` gives the argmax."""
    import csv
    import shutil

    from napari_cellsynth._sample_data import JURKAT_SAMPLE
    from napari_cellsynth.core.bundle import read_card

    record = json.loads((trained_run / "decision.json").read_text())
    assert {"thresholds", "chosen_on", "record"} <= set(record) and "validation_macro_f1_argmax" in record["record"]
    assert "with_thresholds" in json.loads((trained_run / "metrics_test.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "decision.json").write_text(json.dumps(DecisionRule({"M": 0.05}, record={"kept": True}).to_dict()))
    assert _cellsynth("export", "classifier", run, "--out", tmp_path / "bundle", cwd=tmp_path).returncode == 0
    assert read_card(tmp_path / "bundle").decision.thresholds == {"M": 0.05}

    def calls(*extra):
        done = _cellsynth("classify", JURKAT_SAMPLE, "--model", tmp_path / "bundle", "--out", "out.csv", "--quiet",
                          *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        with open(tmp_path / "out.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        p = np.array([[float(r[f"p_{c}"]) for c in ("G1", "S", "G2", "M")] for r in rows])
        return [r["class"] for r in rows], p, done.stderr

    by_card, p, said = calls()
    assert "thresholds {'M': 0.05}" in said
    names = np.array(["G1", "S", "G2", "M"])
    assert by_card == names[DecisionRule({"M": 0.05}).predict(p, list(names))].tolist()
    argmax, _, _ = calls("--threshold", "none")
    assert argmax == names[p.argmax(1)].tolist()
    assert by_card.count("M") > argmax.count("M")  # a low threshold calls more cells M
