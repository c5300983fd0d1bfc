import json

import numpy as np
import pytest

from napari_cellsynth.core.metrics import classification_metrics, format_table
from napari_cellsynth.training.reports.plots import plot_confusion
from napari_cellsynth.training.reports.summaries import summarize_runs


def test_metrics_match_a_hand_count():
    truth = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 0, 2]
    m = classification_metrics(truth, pred, ["G1", "S", "M"])
    # G1: tp 2, fp 1, fn 1 → ppv 2/3 recall 2/3; S: tp 1, fp 1, fn 1 → 1/2, 1/2; M: 1, 1
    assert m["per_class"]["G1"]["ppv"] == pytest.approx(2 / 3)
    assert m["per_class"]["S"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["M"]["f1"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    json.dumps(m)
    table = format_table(m)
    assert "macro-F1" in table and "0.667" in table


def test_macro_f1_ignores_classes_absent_from_the_truth_but_counts_false_positives():
    m = classification_metrics([0, 0, 1], [0, 2, 1], ["a", "b", "c"])
    assert m["per_class"]["c"]["support"] == 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_errors_and_summary(tmp_path):
    with pytest.raises(ValueError, match="equal length"):
        classification_metrics([0, 1], [0], ["a", "b"])
    runs = [classification_metrics([0, 1, 1], p, ["a", "b"]) for p in ([0, 1, 1], [0, 0, 1])]
    summary = summarize_runs(runs)
    assert summary["macro_f1"]["mean"] == pytest.approx(np.mean([r["macro_f1"] for r in runs]))
    assert summary["per_class"]["b"]["recall"]["std"] == pytest.approx(0.25)
    plot_confusion(runs[1], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_seeds_tests_the_change_seed_by_seed():
    from napari_cellsynth.training.reports.summaries import paired_markdown, paired_seeds

    truth = [0] * 6 + [1] * 4
    # five seeds: the rare class b is found 1, 1, 2, 2, 1 times before and 3, 4, 3, 4, 4 times after
    before = [classification_metrics(truth, [0] * 6 + [1] * k + [0] * (4 - k), ["a", "b"]) for k in (1, 1, 2, 2, 1)]
    after = [classification_metrics(truth, [0] * 6 + [1] * k + [0] * (4 - k), ["a", "b"]) for k in (3, 4, 3, 4, 4)]
    paired = paired_seeds(before, after, "b")
    assert paired["recall"]["before"] == [0.25, 0.25, 0.5, 0.5, 0.25] and paired["recall"]["seeds_higher"] == 5
    assert paired["recall"]["p_wilcoxon"] == pytest.approx(1 / 32)  # all five rise: the smallest one-sided p
    assert paired["ppv"]["p_wilcoxon"] == 1.0 and paired["ppv"]["seeds_higher"] == 0  # PPV stays 1: no change
    assert paired_seeds(after, before, "b")["f1"]["p_wilcoxon"] == pytest.approx(1.0)  # all fall: no rise
    assert "higher in 5 of 5" in paired_markdown("b", paired)
    with pytest.raises(ValueError, match="same seeds"):
        paired_seeds(before, after[:3], "b")
