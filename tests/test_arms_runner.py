"""The experiments' one runner (issue 34 item 5): arms × seeds of real trainings, done-markers, resume, and the
summary's paired numbers read back from the runs' files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cellsynth.training.runner.classifier_arms import (ClassifierArm, arm_metrics, markdown, run_arms, run_folder,
                                                    summarise_arms, train_arms)


def arms_on(data) -> list[ClassifierArm]:
    common = ("--data", str(data), "--label-map", "jurkat4", "--width", "8", "--steps", "6", "--batch-size", "16")
    return [ClassifierArm("shuffle", common), ClassifierArm("balanced", (*common, "--sampling", "balanced"))]


def test_the_runner_trains_every_arm_and_seed_once_and_pairs_them_with_the_reference(jurkat_slice, tmp_path, capsys):
    from scipy.stats import wilcoxon

    arms, seeds, out = arms_on(jurkat_slice), [0, 1, 2], tmp_path / "experiment"
    progress = list(run_arms(arms, seeds, out))
    assert progress[0] == (0, 6, "0 of 6 runs on disk") and progress[-1][:2] == (6, 6)
    assert [m.split(" done")[0] for _, _, m in progress[1:]] == [f"{a.name} seed {s}" for s in seeds for a in arms]
    for arm in arms:
        for seed in seeds:
            config = json.loads((run_folder(out, arm.name, seed) / "config.json").read_text())
            assert config["args"]["seed"] == seed
            assert config["args"]["sampling"] == ("balanced" if arm.name == "balanced" else "shuffle")
    # a rerun trains nothing: every run is on disk
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics_test.json")}
    assert list(run_arms(arms, seeds, out)) == [(6, 6, "6 of 6 runs on disk")]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics_test.json")} == stamps
    train_arms(arms, seeds, out)  # the experiments' command lines: the same progress, one line each on stderr
    assert capsys.readouterr().err == "  6 of 6 runs on disk\n"

    summary = summarise_arms(arms, seeds, out, measures=("macro_f1", "f1:M"))
    assert summary["reference"] == "shuffle" and "vs_shuffle" not in summary["arms"]["shuffle"]
    ours, theirs = arm_metrics(out, "balanced", seeds), arm_metrics(out, "shuffle", seeds)
    diff = np.array([ours[s]["per_class"]["M"]["f1"] - theirs[s]["per_class"]["M"]["f1"] for s in seeds])
    paired = summary["arms"]["balanced"]["vs_shuffle"]["f1:M"]
    assert paired["mean"] == pytest.approx(diff.mean()) and paired["seeds"] == seeds
    if np.any(diff != 0):
        assert paired["p_wilcoxon"] == pytest.approx(wilcoxon(diff).pvalue)
    assert summary["arms"]["balanced"]["macro_f1"]["mean"] == pytest.approx(np.mean([ours[s]["macro_f1"] for s in seeds]))
    table = markdown(summary)
    assert table.count("\n") == 4 and "| balanced | 3 |" in table and "f1:M − shuffle" in table


def test_an_arm_may_not_set_what_the_runner_sets_and_names_are_unique(tmp_path):
    with pytest.raises(ValueError, match="set by the runner"):
        ClassifierArm("a", ("--data", "x.npz", "--seed", "3"))
    with pytest.raises(ValueError, match="set by the runner"):
        ClassifierArm("a", ("--data", "x.npz", "--out=elsewhere"))
    with pytest.raises(ValueError, match="share a name"):
        next(run_arms([ClassifierArm("a", ()), ClassifierArm("a", ())], [0], tmp_path))
