"""cellsynth study along the user's path: run as a command on a real Jurkat slice, killed and resumed, its report's
numbers read back from the runs' files, its filters and statistics checked on real cells and known numbers."""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CELLSYNTH
from napari_cellsynth.core.knn_realism import KnnRealism, precision_recall
from napari_cellsynth.training.study.comparisons import paired_test

FAST = ["--label-map", "jurkat4", "--rare", "M", "--count", "16", "--steps", "20", "--width", "8", "--seeds", "0", "1",
        "--quiet"]


def study(*args, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([CELLSYNTH, "study", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


@pytest.fixture(scope="module")
def half_m_generator(jurkat_slice, tmp_path_factory) -> Path:
    """A tiny DDPM that learnt from the slice's training part with M thinned to half (``--keep-fraction M=0.5``)."""
    from conftest import TINY_DDPM
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = tmp_path_factory.mktemp("ddpm") / "half-m"
    train_ddpm.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--keep-fraction", "M=0.5", "--steps",
                     "20", "--timesteps", "100", "--prediction", "epsilon", "--out", str(run), *TINY_DDPM])
    return export_ddpm(run, tmp_path_factory.mktemp("ddpm-bundles") / "half-m")


@pytest.fixture(scope="module")
def finished_study(jurkat_slice, half_m_generator, tmp_path_factory) -> Path:
    """Two seeds of every arm of one tiny generator with the confidence and k-NN filters, M thinned to the half the
    generator learnt from, run as a user types it."""
    out = tmp_path_factory.mktemp("study") / "m"
    done = study("--data", jurkat_slice, *FAST, "--keep", "M=0.5", "--generator", f"tiny={half_m_generator}",
                 "--filters", "confidence", "knn", "--sample-steps", "5", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout
    return out


@pytest.mark.slow
def test_the_report_holds_the_runs_numbers(finished_study):
    summary = json.loads((finished_study / "summary.json").read_text())
    arms = ["real", "balanced", "copies", "mixup", "unthinned", "generated-tiny", "generated-tiny-confidence",
            "generated-tiny-knn", "generated-tiny-mixup"]
    assert list(summary["arms"]) == arms
    page = (finished_study / "report.html").read_text()
    for arm, row in summary["arms"].items():
        assert row["seeds"] == [0, 1]
        f1 = [json.loads((finished_study / "arms" / arm / f"seed{s}" / "metrics_test.json").read_text())
              ["per_class"]["M"]["f1"] for s in (0, 1)]
        assert [row["per_seed"]["rare_f1"][str(s)] for s in (0, 1)] == pytest.approx(f1)
        assert row["rare_f1"]["mean"] == pytest.approx(np.mean(f1))
        assert f"{row['rare_f1']['mean']:.3f} ± {row['rare_f1']['std']:.3f}" in page
        if arm != "real":
            against = row["vs_real"]["rare_f1"]
            real = summary["arms"]["real"]["per_seed"]["rare_f1"]
            assert against["differences"] == pytest.approx([f1[s] - real[str(s)] for s in (0, 1)], abs=1e-6)
        # PR-AUC, the threshold-free measure, from the same files (the trainer ranks the test cells by probability)
        ranked = [json.loads((finished_study / "arms" / arm / f"seed{s}" / "metrics_test.json").read_text())
                  ["ranking"]["M"]["pr_auc"] for s in (0, 1)]
        assert [row["per_seed"]["rare_pr_auc"][str(s)] for s in (0, 1)] == pytest.approx(ranked)
        assert f"{row['rare_pr_auc']['mean']:.3f} ± {row['rare_pr_auc']['std']:.3f}" in page
        # as classify calls the cells: at the thresholds the trainer kept (its with_thresholds), else at argmax
        runs = [json.loads((finished_study / "arms" / arm / f"seed{s}" / "metrics_test.json").read_text())
                for s in (0, 1)]
        called = [(m.get("with_thresholds") or m)["per_class"]["M"]["f1"] for m in runs]
        assert [row["per_seed"]["rare_f1_classify"][str(s)] for s in (0, 1)] == pytest.approx(called)
        assert row["thresholds_kept"] == sum("with_thresholds" in m and bool(m["with_thresholds"]) for m in runs)
        assert (f"{row['rare_f1_classify']['mean']:.3f} ± {row['rare_f1_classify']['std']:.3f} "
                f"({row['thresholds_kept']} of 2)") in page
    assert html.escape(summary["verdict"]) in page
    assert "M PR-AUC" in summary["verdict_pr_auc"] and html.escape(summary["verdict_pr_auc"]) in page
    assert (finished_study / "per_seed.png").stat().st_size > 0
    assert (finished_study / "samples.png").stat().st_size > 0


def test_a_run_without_pr_auc_is_named_and_scored_again_from_its_checkpoint(finished_study, jurkat_slice,
                                                                          half_m_generator, tmp_path):
    """A run scored before the trainer recorded PR-AUC (here: its ``ranking`` taken out) leaves PR-AUC out of the
    report with one line naming the run; deleting its metrics and running the same command scores it again from its
    checkpoint, without training again, and PR-AUC is back."""
    import shutil

    out = tmp_path / "study"
    shutil.copytree(finished_study, out)
    run = out / "arms" / "real" / "seed0"
    metrics = json.loads((run / "metrics_test.json").read_text())
    ranking = metrics.pop("ranking")
    (run / "metrics_test.json").write_text(json.dumps(metrics))
    command = ["--data", jurkat_slice, *FAST, "--keep", "M=0.5", "--generator", f"tiny={half_m_generator}",
               "--filters", "confidence", "knn", "--sample-steps", "5", "--out", out]
    done = study(*command, "--report-only")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["ranked"] and summary["verdict_pr_auc"] is None
    assert all("rare_pr_auc" not in row for row in summary["arms"].values())
    assert "1 run(s) (real seed 0) were scored by a trainer that did not record it" in summary["unranked_note"]
    assert html.escape(summary["unranked_note"]) in (out / "report.html").read_text()

    history, best = (run / "history.json").read_bytes(), (run / "best.pt").read_bytes()
    (run / "metrics_test.json").unlink()
    done = study(*command)
    assert done.returncode == 0, done.stderr
    again = json.loads((run / "metrics_test.json").read_text())["ranking"]
    assert {c: again[c]["pr_auc"] for c in ranking} == pytest.approx({c: ranking[c]["pr_auc"] for c in ranking})
    assert (run / "history.json").read_bytes() == history and (run / "best.pt").read_bytes() == best
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranked"] and summary["unranked_note"] is None and "M PR-AUC" in summary["verdict_pr_auc"]


def test_every_arm_adds_what_it_names(finished_study):
    """Copies and generated arms add the same number of M cells; a filtered arm adds only cells its filter kept, and
    the classifier's config records what each run trained on."""
    config = {arm: json.loads((finished_study / "arms" / arm / "seed0" / "config.json").read_text())
              for arm in ("real", "copies", "generated-tiny", "generated-tiny-confidence", "balanced", "mixup")}
    assert config["real"]["counts"]["train"] == config["copies"]["counts"]["train"]
    assert config["copies"]["extra_train"][0]["counts"] == {"G1": 0, "S": 0, "G2": 0, "M": 16}
    assert config["generated-tiny"]["extra_train"][0]["counts"]["M"] == 16
    kept = json.loads((finished_study / "synthetic" / "tiny" / "seed0" / "kept-confidence.json").read_text())["M"]
    assert kept["generated"] == 32  # the pool: --pool-factor 2 × --count
    assert config["generated-tiny-confidence"]["extra_train"][0]["counts"]["M"] == min(16, kept["kept"])
    assert config["balanced"]["args"]["sampling"] == "balanced"
    assert config["mixup"]["args"]["focused"] == ["M=2"] and "generated" not in config["mixup"]["args"]["focused_parts"]
    with np.load(finished_study / "synthetic" / "copies" / "seed0.npz") as copies, \
            np.load(finished_study / "synthetic" / "tiny" / "seed0" / "all.npz") as generated:
        assert copies["images"].shape == generated["images"].shape == (16, 3, 40, 40)
    fidelity = json.loads((finished_study / "summary.json").read_text())["fidelity"]["tiny"]
    assert fidelity["independent"] and 0 <= fidelity["M"]["class_fidelity"]["mean"] <= 1
    # the fidelity scorer learnt from every M training cell, the arms from half of them: it is the unthinned arm's
    # first seed (the same training), not a run of its own; it is tested on the arms' test cells
    scorer = json.loads((finished_study / "arms" / "unthinned" / "seed0" / "config.json").read_text())["counts"]
    assert scorer["train"]["M"] == 2 * config["real"]["counts"]["train"]["M"] or abs(
        scorer["train"]["M"] - 2 * config["real"]["counts"]["train"]["M"]) <= 1
    assert scorer["test"] == config["real"]["counts"]["test"] and not (finished_study / "arms" / "scorer").exists()
    assert list((finished_study / "fidelity").glob("tiny-seed0-by-unthinned0.json"))
    # the verdict says how far the best arm stayed below the unthinned real cells
    assert "Before --keep thinned them, the real cells reach M F1" in json.loads(
        (finished_study / "summary.json").read_text())["verdict"]
    finer = fidelity["M"]["finer"]  # jurkat4's M holds the four mitotic phases: each is scored on its own
    assert {"Prophase", "Metaphase"} <= set(finer) and finer["Prophase"]["test_cells"] > finer["Metaphase"]["test_cells"]
    assert all(0 <= f[key]["mean"] <= 1 for f in finer.values() for key in ("recall_generated", "recall_real"))
    # a 20-step tiny DDPM makes blurs: far from every training cell, never a copy of one
    assert -1 <= fidelity["M"]["ssim_max"]["mean"] < 0.9 and fidelity["M"]["ssim_max_above_real"]["mean"] < 0.5


def test_ssim_max_finds_copies_of_training_cells(jurkat_slice):
    """Memorisation check: a training cell's own copy has SSIM-max 1, a real test cell less, noise near 0."""
    from napari_cellsynth.training.study.fidelity import nearest_ssim

    with np.load(jurkat_slice) as data:
        cells = data["images"][:40].astype(np.float64)
    train, test = cells[:30], cells[30:]
    span = float(train.max() - train.min())
    assert np.allclose(nearest_ssim(train[:5], train, span), 1.0)
    real = nearest_ssim(test, train, span)
    noise = nearest_ssim(np.random.default_rng(0).uniform(train.min(), train.max(), test.shape), train, span)
    assert np.all(real < 0.999) and real.mean() > noise.mean() + 0.2 and abs(noise.mean()) < 0.1


def _per_run_scores(out: Path) -> dict:
    """Every arm's and seed's test scores, as its run wrote them (``metrics_test.json``)."""
    return {str(path.relative_to(out)): json.loads(path.read_text())["per_class"]
            for path in sorted((out / "arms").glob("*/seed*/metrics_test.json"))}


def test_a_study_killed_at_random_moments_ends_identical_to_an_uninterrupted_one(jurkat_slice, tmp_path):
    """SIGKILL at seeded random moments, three times, then resumed with two workers on local processes: the runs that
    had finished are not trained again, and every run's test scores and the summary equal an uninterrupted study's
    (issue 36)."""
    command = [CELLSYNTH, "study", "--data", str(jurkat_slice), *FAST, "--seeds", "0", "--arms", "copies"]
    # one thread per training, as under pytest -n: alone, the reference's one worker would train on every core and
    # the resumed runs' two workers on one each, and their probabilities (PR-AUC) would differ in the last digits
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    reference = subprocess.run([*command, "--out", str(tmp_path / "reference")], capture_output=True, text=True,
                               timeout=900, env=env)
    assert reference.returncode == 0, reference.stderr
    took = time.monotonic() - started  # the moments are shares of it: mid-way on a fast CPU or a slow one
    out = tmp_path / "killed"
    kills, finished = [], {}
    for delay in took * np.random.default_rng(36).uniform(0.2, 0.8, size=3):
        process = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        try:
            process.wait(timeout=delay)  # it may finish first: then the later starts resume a finished study
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills.append(len(list(out.glob("arms/*/seed*/metrics_test.json"))))
        finished |= {p: p.stat().st_mtime_ns for p in out.glob("arms/*/seed*/metrics_test.json") if p not in finished}
    assert len(kills) >= 2 and min(kills) < 2, kills  # killed mid-way more than once, before its 2 runs were done
    done = subprocess.run([*command, "--out", str(out), "--workers", "2"], capture_output=True, text=True,
                          timeout=900, env=env)
    assert done.returncode == 0, done.stderr
    assert "Register worker" not in done.stderr and "Scheduler at" not in done.stderr  # dask's start-up lines: not -v
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in finished.items())  # not trained again
    assert _per_run_scores(out) == _per_run_scores(tmp_path / "reference") and len(_per_run_scores(out)) == 2
    summary, expected = (json.loads((o / "summary.json").read_text()) for o in (out, tmp_path / "reference"))
    assert summary["arms"] == expected["arms"]
    assert {arm: row["seeds"] for arm, row in summary["arms"].items()} == {"real": [0], "copies": [0]}


def four_anaphases(data: Path, folder: Path) -> Path:
    """The slice with only 4 of its Anaphase cells (labels as in the data, before any label map): the 226 sample
    cells of a clone without the data hold exactly 4."""
    with np.load(data, allow_pickle=False) as saved:
        arrays = dict(saved)
    anaphase = np.flatnonzero(arrays["labels"] == "Anaphase")
    assert len(anaphase) >= 4
    keep = np.setdiff1d(np.arange(len(arrays["labels"])), anaphase[4:])
    path = folder / "four-anaphases.npz"
    n = len(arrays["labels"])  # per-crop arrays lose the same crops; the rest (channels) stay
    np.savez(path, **{k: v[keep] if v.ndim and len(v) == n else v for k, v in arrays.items()})
    return path


def test_a_study_refuses_other_settings_and_bad_input_in_one_line(jurkat_slice, ddpm_bundle, tmp_path, capsys):
    """The first refusal as a command; the others through the command's own entry point in this process (the same
    parsing and checks, without starting Python and torch five more times)."""
    from napari_cellsynth import cli

    out = tmp_path / "s"
    (out).mkdir()
    (out / "settings.json").write_text(json.dumps({"data": str(Path(jurkat_slice).resolve()), "rare": ["M"],
                                                   "label_map": "jurkat4", "steps": 999}))
    cases = [
        (["--data", jurkat_slice, *FAST, "--out", out], "holds a study with other"),
        (["--data", jurkat_slice, *FAST, "--rare", "Mitosis", "--out", tmp_path / "a"], "not a class of"),
        (["--data", jurkat_slice, *FAST, "--keep", "M=100000", "--out", tmp_path / "b"], "keep at most"),
        (["--data", jurkat_slice, *FAST, "--generator", tmp_path / "nowhere", "--out", tmp_path / "c"],
         "is not a bundle folder"),
        (["--data", jurkat_slice, *FAST, "--scheduler", "threads", "--out", tmp_path / "e"], "trainings run in processes"),
        (["--data", jurkat_slice, *FAST, "--arms", "unthinned", "--out", tmp_path / "g"], "thin the rare classes with --keep"),
        (["--data", jurkat_slice, *FAST, "--keep-validation", "--out", tmp_path / "h"], "thin the rare classes with --keep"),
        # a rare class of 4 crops: all of them train, none is tested, so no arm could be scored on it
        (["--data", four_anaphases(jurkat_slice, tmp_path), *FAST[2:], "--label-map", "jurkat7", "--rare", "Anaphase",
          "--out", tmp_path / "f"], "cannot score Anaphase"),
        # the tiny DDPM learnt from all of the slice's M cells: a study that keeps 30 must refuse it (test leakage)
        (["--data", jurkat_slice, *FAST, "--keep", "M=30", "--generator", ddpm_bundle, "--out", tmp_path / "d"],
         "learnt from"),
    ]
    done = study(*cases[0][0])
    assert done.returncode == 2 and cases[0][1] in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for args, message in cases[1:]:
        capsys.readouterr()
        assert cli.main(["study", *map(str, args)]) == 2
        stderr = capsys.readouterr().err
        assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_a_7_class_study_stratified_by_4_classes_takes_a_generator_fine_tuned_on_that_split(ddpm_run, jurkat_slice,
                                                                                            tmp_path):
    """`cellsynth study --stratify-by jurkat4`: a study of Jurkat's 7 classes on the split that 4-class models learnt
    from accepts a generator fine-tuned from one of them onto the mitotic phases (`train ddpm --stratify-by jurkat4`),
    whose start learnt that split's training part; without the option its split is another one (stratified by the 7
    classes, some of the start's training cells in its test part), and the generator is refused in one line."""
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.study.plan import StudyPlan
    from napari_cellsynth.training.study.settings import StudySettings
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = tmp_path / "phases"
    train_ddpm.main(["--data", str(jurkat_slice), "--label-map", "jurkat7", "--stratify-by", "jurkat4", "--init-from",
                     str(ddpm_run), "--only-classes", "Prophase", "Metaphase", "Anaphase", "Telophase", "--steps", "1",
                     "--batch-size", "4", "--sample-every", "0", "--quiet", "--out", str(run)])
    phases = OnnxModel(export_ddpm(run, tmp_path / "bundle"), kind="ddpm")
    for stratify_by in ("jurkat4", None):
        plan = StudyPlan(StudySettings(str(jurkat_slice), ("Metaphase",), "jurkat7", stratify_by=stratify_by),
                         tmp_path / f"study-{stratify_by}")
        if stratify_by:
            plan.check_generator(phases, "Metaphase")
            assert plan.stratify[1] == ["G1", "S", "G2", "M"]
        else:
            # the training counts differ (the full data), or the recorded stratification does (the sample cells)
            with pytest.raises(ValueError, match="may have seen test crops"):
                plan.check_generator(phases, "Metaphase")


@pytest.mark.full_data
def test_the_realism_filters_keep_real_cells_and_drop_noise(finished_study, classifier_bundle, jurkat_slice):
    """On real cells through real classifiers: about half of real M cells (the realism score keeps the half of the real
    balls with the smallest radii) fall inside the real M cells' k-NN balls in the study's real classifier's features,
    images of noise do not; the confidence filter keeps what a classifier calls M (the fixture's, with M recall 0.9)."""
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.training.data.labelled_crops import load_labelled
    from napari_cellsynth.training.study.realism_filters import FILTERS, FilterInputs

    data = load_labelled(str(jurkat_slice), "jurkat4")
    k = data.classes.index("M")
    m = data.crops.images[data.y == k]
    noise = np.random.default_rng(0).uniform(0, m.max(), size=(40, *m.shape[1:])).astype(m.dtype)
    reference, held_out, others = m[:300], m[300:340], data.crops.images[data.y != k][:300]
    names = np.array(["M"] * len(reference) + list(np.array(data.classes)[data.y[data.y != k][:300]]))

    def inputs(bundle) -> FilterInputs:
        model = OnnxModel(bundle, kind="classifier")
        real = run_to_end(classify_crops(model, np.concatenate([reference, others])))
        made = run_to_end(classify_crops(model, np.concatenate([held_out, noise])))
        return FilterInputs(real.features.astype(float), names, made.features.astype(float), made.probabilities,
                            data.classes, "M")

    knn = FILTERS["knn"](inputs(finished_study / "classifiers" / "real-seed0"))
    assert knn[:40].mean() >= 0.3 and knn[40:].mean() <= 0.05
    judged = inputs(classifier_bundle)
    confidence = FILTERS["confidence"](judged)
    assert (confidence == (judged.probabilities.argmax(1) == k)).all()
    assert confidence[:40].mean() >= 0.7
    # confidence is no realism test: this classifier calls bright uniform noise M as well (what the k-NN filter drops)
    assert knn[40:].mean() < confidence[40:].mean()


def test_knn_realism_and_precision_recall_on_known_points():
    real = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]])
    radius_check = KnnRealism(k=1, radius_quantile=None).fit(real)
    assert (radius_check.predict(np.array([[0.5, 0], [5, 5]])) == [1, -1]).all()
    # each corner lies in its own ball and its two neighbours' (radius 1): density 3 × 4 / (k × 4)
    assert precision_recall(real, real, k=1) == {"precision": 1.0, "recall": 1.0, "density": 3.0, "coverage": 1.0}
    far = precision_recall(real, real + 10, k=1)
    assert far["precision"] == far["recall"] == far["coverage"] == 0.0


def test_paired_differences_match_scipy():
    from scipy.stats import wilcoxon

    diff = np.array([0.05, 0.02, 0.04, -0.01, 0.03])
    result = paired_test([0, 1, 2, 3, 4], diff)
    assert result["mean"] == pytest.approx(0.026)
    assert result["p_wilcoxon"] == pytest.approx(wilcoxon(diff).pvalue)
    assert result["ci95"][0] < 0.026 < result["ci95"][1] and result["higher_in"] == 4
    assert paired_test([0], np.array([0.1]))["p_wilcoxon"] is None


@pytest.mark.slow
def test_a_study_gains_a_guided_generator_without_redoing_its_runs(finished_study, half_m_generator, tmp_path,
                                                                  capsys):
    """A generator with sampling options (interval guidance, autoguidance by a guide bundle) added to a finished
    study: only its arm runs; the pool records the options; the report names them.  Changing a generator that is
    there, or an unknown option, is refused in one line."""
    import shutil

    from napari_cellsynth import cli

    out = tmp_path / "grown"
    shutil.copytree(finished_study, out)
    real = out / "arms" / "real" / "seed0" / "metrics_test.json"
    written = real.stat().st_mtime_ns
    guided = f"guided={half_m_generator},guidance=2,interval=0.1:inf,guide={half_m_generator}"
    settings = json.loads((out / "settings.json").read_text())
    base = ["--data", settings["data"], *FAST, "--keep", "M=0.5", "--filters", "confidence", "knn", "--sample-steps",
            "5", "--out", out]
    done = study(*base, "--generator", f"tiny={half_m_generator}", guided, "--arms", "real", "generated-guided")
    assert done.returncode == 0, done.stderr
    assert real.stat().st_mtime_ns == written
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["arms"]) == {"real", "generated-guided"} and "guided" in summary["fidelity"]
    assert summary["settings"]["sampling"]["guided"]["guidance_interval"] == [0.1, float("inf")]
    provenance = json.loads((out / "synthetic" / "guided" / "seed0" / "provenance.json").read_text())["M"]
    assert provenance["guidance"] == 2 and provenance["guidance_interval"] == [0.1, float("inf")]
    assert provenance["guide"]["bundle"] == "half-m"
    assert "guidance 2 at 0.1 &lt; σ ≤ inf, autoguidance" in (out / "report.html").read_text()
    # no filtered arm of it ran, so its pool holds only the cells an arm adds; a filtered arm later grows the pool
    # and leaves the unfiltered arm's cells as they were
    pool, added = out / "synthetic" / "guided" / "seed0" / "pool.npz", out / "synthetic" / "guided" / "seed0" / "all.npz"
    assert len(np.load(pool)["labels"]) == 16
    done = study(*base, "--generator", f"tiny={half_m_generator}", guided, "--arms", "generated-guided-knn")
    assert done.returncode == 0, done.stderr
    with np.load(pool) as grown, np.load(added) as first:
        assert len(grown["labels"]) == 32 and np.array_equal(grown["images"][:16], first["images"])
    # each generator's bundle copied with its measured fidelity in the card, which cellsynth info prints
    source_card = (half_m_generator / "card.json").read_bytes()
    done = study(*base, "--generator", f"tiny={half_m_generator}", guided, "--report-only", "--bundles-out",
                 tmp_path / "measured")
    assert done.returncode == 0, done.stderr
    assert (half_m_generator / "card.json").read_bytes() == source_card  # the input bundle is left as it was
    summary = json.loads((out / "summary.json").read_text())
    for name, sampling in (("tiny", "plain conditioning"), ("guided", "guidance 2 at 0.1 < σ ≤ inf")):
        card = json.loads((tmp_path / "measured" / name / "card.json").read_text())
        assert sampling in card["fidelity"]["sampling"] and card["fidelity"]["seeds"] == [0, 1]
        assert card["fidelity"]["classes"]["M"]["class_fidelity"] == summary["fidelity"][name]["M"]["class_fidelity"]
        info = subprocess.run([CELLSYNTH, "info", str(tmp_path / "measured" / name)], capture_output=True, text=True)
        assert info.returncode == 0 and json.loads(info.stdout)["fidelity"] == card["fidelity"]
        mean = summary["fidelity"][name]["M"]["class_fidelity"]["mean"]
        assert f"fidelity: M: {mean:.3f} of generated cells called M" in info.stderr
    info = subprocess.run([CELLSYNTH, "info", str(half_m_generator)], capture_output=True, text=True)
    assert "fidelity: not measured" in info.stderr
    for generators, message in (([f"tiny={half_m_generator},guidance=3"], "other generator tiny"),
                                ([f"tiny={half_m_generator}", f"x={half_m_generator},guidanse=2"], "unknown option"),
                                ([f"tiny={half_m_generator}", f"x={half_m_generator},interval=1:2"],
                                 "needs guidance other than 1")):
        capsys.readouterr()  # through the command's entry point in this process (its runs above ran as commands)
        assert cli.main(["study", *map(str, base), "--generator", *generators]) == 2
        stderr = capsys.readouterr().err
        assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_the_verdict_never_calls_the_real_cells_a_cheap_alternative():
    """A study run without balanced, copies or mixup cannot say whether a generator is worth it; one with copies
    compares the generator with them."""
    from napari_cellsynth.training.study.comparisons import verdict

    def row(values):
        values = {str(s): v for s, v in enumerate(values)}
        return {"rare_f1": {"mean": float(np.mean(list(values.values()))), "std": 0.01},
                "per_seed": {"rare_f1": values}, "seeds": list(values)}

    real, generated = row([0.4 + 0.01 * s for s in range(10)]), row([0.7 + 0.01 * s for s in range(10)])
    said = verdict({"real": real, "generated-g": generated}, ["M"])
    assert said.startswith("No cheap alternative (balanced, copies, mixup) ran") and "+0.300" in said
    said = verdict({"real": real, "copies": row([0.71 + 0.01 * s for s in range(10)]), "generated-g": generated},
                   ["M"])
    assert said.startswith("Generated cells did not beat the cheap alternatives") and "copies" in said
    # the real cells before --keep are the mark, never the cheap alternative, even when they score highest
    unthinned = row([0.75 + 0.01 * s for s in range(10)])
    said = verdict({"real": real, "copies": row([0.71 + 0.01 * s for s in range(10)]), "generated-g": generated,
                    "unthinned": unthinned}, ["M"])
    assert said.startswith("Generated cells did not beat the cheap alternatives") and "than copies (M F1" in said
    assert said.endswith("the best arm here, copies, is -0.040 from that (95 % CI -0.040 to -0.040, Wilcoxon p "
                         "0.00195, 10 paired seeds): the room that any way of adding cells had.")
    # an arm that ranks better than the real cells before the cut (balanced sampling's PR-AUC, §13k) is not "room"
    above = row([0.79 + 0.01 * s for s in range(10)])
    said = verdict({"real": real, "copies": above, "unthinned": unthinned}, ["M"])
    assert said.endswith("the best arm here, copies, is +0.040 from that (95 % CI +0.040 to +0.040, Wilcoxon p "
                         "0.00195, 10 paired seeds): on this measure it did no worse than the real cells it stood in "
                         "for, so adding cells had no room left to fill here.")


def test_the_rare_f1_as_classify_calls_it_reads_the_kept_thresholds_else_argmax(tmp_path):
    """A run whose trainer kept validation thresholds (``with_thresholds`` in its test metrics, as the card carries
    them to classify) is scored at them; a run without is scored at argmax; the row counts the runs with thresholds,
    and the paired test against real reads the same values."""
    from napari_cellsynth.training.study.arms import Arm
    from napari_cellsynth.training.study.comparisons import collect

    def metrics(f1: float, at_thresholds: float | None) -> dict:
        record = {"classes": ["M"], "per_class": {"M": {"ppv": 0.5, "recall": 0.5, "f1": f1}}, "macro_f1": 0.5,
                  "accuracy": 0.5, "ranking": {"M": {"pr_auc": 0.5}}}
        if at_thresholds is not None:
            record["with_thresholds"] = {"per_class": {"M": {"f1": at_thresholds}}, "macro_f1": 0.6,
                                         "thresholds": {"M": 0.2}}
        return record

    files = {("real", 0): metrics(0.2, 0.7), ("real", 1): metrics(0.3, None),
             ("copies", 0): metrics(0.75, None), ("copies", 1): metrics(0.8, 0.78)}
    for (arm, seed), record in files.items():
        folder = tmp_path / "arms" / arm / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "metrics_test.json").write_text(json.dumps(record))
    rows, _ = collect(tmp_path, [Arm("real"), Arm("copies", extra="copies")], [0, 1], ["M"])
    assert rows["real"]["per_seed"]["rare_f1"] == {"0": 0.2, "1": 0.3}
    assert rows["real"]["per_seed"]["rare_f1_classify"] == {"0": 0.7, "1": 0.3}
    assert rows["copies"]["per_seed"]["rare_f1_classify"] == {"0": 0.75, "1": 0.78}
    assert (rows["real"]["thresholds_kept"], rows["copies"]["thresholds_kept"]) == (1, 1)
    assert rows["copies"]["vs_real"]["rare_f1_classify"]["differences"] == pytest.approx([0.05, 0.48])


def test_the_verdict_on_pr_auc_reads_the_pr_auc_rows():
    """A rare binary class that argmax never finds (F1 0 in every arm) can still be ranked better: the F1 verdict says
    F1 cannot rank the arms, and the PR-AUC verdict reads its own rows and names the measure."""
    from napari_cellsynth.training.study.comparisons import verdict

    def row(f1, pr_auc):
        values = {name: {str(s): v for s, v in enumerate(x)} for name, x in (("rare_f1", f1), ("rare_pr_auc", pr_auc))}
        return {**{name: {"mean": float(np.mean(list(v.values()))), "std": 0.01} for name, v in values.items()},
                "per_seed": values, "seeds": list(values["rare_f1"])}

    zero = [0.0] * 8
    rows = {"real": row(zero, [0.10 + 0.01 * s for s in range(8)]),
            "copies": row(zero, [0.12 + 0.01 * s for s in range(8)]),
            "generated-g": row(zero, [0.20 + 0.01 * s + 0.001 * s * s for s in range(8)])}
    on_f1, on_rank = verdict(rows, ["translocation"]), verdict(rows, ["translocation"], on="rare_pr_auc")
    assert on_f1.startswith("No arm's classifier found a single translocation test cell") and "PR-AUC" in on_f1
    assert on_rank.startswith("Use generated-g (translocation PR-AUC 0.") and "copies (translocation PR-AUC" in on_rank


@pytest.mark.full_data
@pytest.mark.parametrize("name", ["paper000", "paper000-m34", "paper001", "paper004"])
def test_each_papers_configuration_passes_the_studys_checks_on_the_real_data(name, tmp_path):
    """Papers 000, 001 and 004 as configurations of the one study (issue 33): each shipped configuration, given the
    real data (Jurkat; for 004 the M-FISH builder's chromosomes of every slide), passes every check a study makes
    before it trains (the classes, --keep, the counts, the held-out slides, the zoo generators' training split) and
    plans its arms; nothing is trained."""
    from conftest import JURKAT, SHARED_DATA
    from napari_cellsynth.training.study.command import build_parser, settings_from
    from napari_cellsynth.training.study.configuration import parse_with_config, read_config
    from napari_cellsynth.training.study.runner import run_study, study_arms

    options = read_config(name)
    data = JURKAT
    if name == "paper004":  # the documented way to its data: the builder over the whole M-FISH folder (17 s)
        from napari_cellsynth.training.data import mfish_dataset

        mfish_dataset.main(["--root", str(SHARED_DATA / "mfish"), "--codes-from", str(SHARED_DATA / "mfish"),
                            "--size", "64", "--out", str(tmp_path / "mfish")])
        data = tmp_path / "mfish" / "translocation_planes.npz"
    settings = settings_from(parse_with_config(build_parser(), ["--config", name, "--data", str(data),
                                                                "--out", str(tmp_path / "study")]))
    tmp_path = tmp_path / "study"
    assert list(settings.rare) == options["rare"] and settings.label_map == options.get("label-map", "identity")
    assert list(settings.seeds) == options["seeds"]
    done, total, message = next(run_study(settings, tmp_path))
    assert done == 0 and total > 0 and message == f"0 of {total} tasks on disk"
    names = [arm.name for arm in study_arms(settings)]
    assert names[:4] == ["real", "balanced", "copies", "mixup"]
    assert ("unthinned" in names) == bool(options.get("keep"))  # the room left, where the configuration thins
    assert all(f"generated-{Path(g.removeprefix('zoo:')).name}" in names for g in options.get("generator", []))
    if name == "paper004":
        with np.load(data) as crops, np.load(tmp_path / "split.npz") as split:
            assert set(crops["slide"][split["test"]]) == set(options["test-groups"])
            assert (crops["labels"][split["test"]] == "translocation").sum() > 0
    if name == "paper001":
        from napari_cellsynth.training.study.plan import StudyPlan
        from napari_cellsynth.training.study.runner import trainer_line

        mixup = next(arm for arm in study_arms(settings) if arm.name == "mixup")
        line = trainer_line(StudyPlan(settings, tmp_path), mixup, 0, 1)
        focused = line[line.index("--focused") + 1:line.index("--focused-parts")]
        assert focused == ["Prophase=1", "Metaphase=2", "Anaphase=2", "Telophase=1"]


def test_options_on_the_command_line_override_a_configuration_and_bad_ones_are_refused(jurkat_slice, tmp_path, capsys):
    from napari_cellsynth import cli
    from napari_cellsynth.training.study.command import build_parser, settings_from
    from napari_cellsynth.training.study.configuration import parse_with_config

    args = parse_with_config(build_parser(), ["--config", "paper000-m34", "--data", str(jurkat_slice), "--seeds", "3",
                                              "--filters", "knn", "--generator", "g=zoo:ddpm-jurkat4-full-v",
                                              "--out", str(tmp_path)])
    settings = settings_from(args)
    assert settings.seeds == (3,) and settings.filters == ("knn",) and settings.keep == ("M=34",)
    assert list(settings.generators) == ["ddpm-jurkat4-cut10-v", "g"]  # --generator adds to the configuration's
    (tmp_path / "mine.json").write_text(json.dumps({"options": {"rare": ["M"], "label_map": "jurkat4"}}))
    (tmp_path / "broken.json").write_text("{\"options\": ")
    cases = [(["--config", "paper999"], "neither a shipped configuration"),
             (["--config", tmp_path / "mine.json"], "'label_map' is not an option a configuration may set"),
             (["--config", tmp_path / "broken.json"], "not a JSON file"),
             (["--label-map", "jurkat4"], "give the rare class(es) with --rare"),
             (["--rare", "M", "--focused-n", "M=2", "G1=1"], "for each rare class (M)"),
             (["--config", "paper001", "--focused-n", "Prophase=1"], "no slots given for Metaphase, Anaphase, Telophase")]
    for extra, message in cases:
        capsys.readouterr()
        assert cli.main(["study", "--data", str(jurkat_slice), *map(str, extra), "--out", str(tmp_path / "x")]) == 2
        stderr = capsys.readouterr().err
        assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.full_data
def test_a_fine_tune_of_the_zoos_cut_generator_on_the_same_cut_is_accepted(tmp_path):
    """`train ddpm --init-from zoo:ddpm-jurkat4-cut10-v --keep-fraction M=0.1` (results §13d): the start learnt from
    the same 34 M cells the study keeps, so the chain is this split's; a study that keeps every M cell refuses it."""
    from conftest import JURKAT
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.study.plan import StudyPlan
    from napari_cellsynth.training.study.settings import StudySettings
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = tmp_path / "tuned"
    train_ddpm.main(["--data", str(JURKAT), "--label-map", "jurkat4", "--init-from", "zoo:ddpm-jurkat4-cut10-v",
                     "--keep-fraction", "M=0.1", "--class-lr", "1e-2", "--sampling", "balanced", "--steps", "1",
                     "--batch-size", "4", "--sample-every", "0", "--quiet", "--out", str(run)])
    tuned = OnnxModel(export_ddpm(run, tmp_path / "bundle"), kind="ddpm")
    StudyPlan(StudySettings(str(JURKAT), ("M",), "jurkat4", keep=("M=34",)), tmp_path / "cut").check_generator(tuned, "M")
    with pytest.raises(ValueError, match="learnt from 34 crops of M, but this study's training part holds 344"):
        StudyPlan(StudySettings(str(JURKAT), ("M",), "jurkat4"), tmp_path / "all").check_generator(tuned, "M")


def test_keep_validation_thins_the_validation_part_by_the_share_keep_left_and_never_the_test(jurkat_slice, tmp_path):
    """`--keep M=0.5 --keep-validation`: validation keeps half of its M cells too (so thresholds and checkpoints are
    chosen on as few as a user with that few would have), every other class and the whole test part are untouched,
    and the report's counts say so; without it validation keeps every M cell."""
    from napari_cellsynth.training.study.plan import StudyPlan
    from napari_cellsynth.training.study.settings import StudySettings

    def parts(keep_validation: bool) -> dict[str, dict[str, int]]:
        settings = StudySettings(str(jurkat_slice), ("M",), "jurkat4", keep=("M=0.5",), keep_validation=keep_validation)
        data = StudyPlan(settings, tmp_path / str(keep_validation)).describe()
        return {part: data[f"{part}_counts"] for part in ("train", "validation", "test")}

    whole, thinned = parts(False), parts(True)
    assert thinned["train"] == whole["train"] and thinned["test"] == whole["test"]
    assert whole["validation"]["M"] >= 4
    half = thinned["validation"]["M"]
    assert abs(half - whole["validation"]["M"] / 2) <= 1 and half < whole["validation"]["M"]
    assert thinned["validation"] == whole["validation"] | {"M": half}
    on_disk = np.load(tmp_path / "True" / "split.npz")
    assert len(on_disk["val"]) == sum(thinned["validation"].values())


def test_a_resumed_study_reads_its_test_groups_as_a_set(tmp_path):
    """The held-out groups are a set: naming them in another order resumes the same study (the split holds the same
    crops), while another group is refused in one line."""
    from napari_cellsynth.training.study.settings import StudySettings

    first = StudySettings(data="d.npz", rare=("translocation",), group_by="slide", test_groups=("V26", "A20"))
    first.record(tmp_path)
    StudySettings(data="d.npz", rare=("translocation",), group_by="slide", test_groups=("A20", "V26")).record(tmp_path)
    with pytest.raises(ValueError, match="other test_groups; choose another --out"):
        StudySettings(data="d.npz", rare=("translocation",), group_by="slide",
                      test_groups=("A20", "V14")).check_resumes(tmp_path)


def test_the_studys_checkpoint_rule_reaches_every_classifier_and_is_fixed_for_a_resume(tmp_path):
    """``--select-on pr-auc`` goes to every arm's trainer; a study resumed under another rule is refused, since its
    runs would have kept other checkpoints."""
    from napari_cellsynth.training.study.arms import all_arms
    from napari_cellsynth.training.study.plan import StudyPlan
    from napari_cellsynth.training.study.runner import trainer_line
    from napari_cellsynth.training.study.settings import StudySettings

    from napari_cellsynth.training.study.command import build_parser, settings_from
    from napari_cellsynth.training.study.configuration import parse_with_config

    (tmp_path / "d.npz").write_bytes(b"")  # the command checks only that --data exists before the study reads it
    settings = settings_from(parse_with_config(build_parser(), ["--data", str(tmp_path / "d.npz"), "--rare", "M",
                                                                "--select-on", "pr-auc", "--out", str(tmp_path)]))
    assert settings.select_on == "pr-auc"
    settings = StudySettings(data="d.npz", rare=("M",), select_on="pr-auc")
    line = trainer_line(StudyPlan(settings, tmp_path), all_arms([], [])["real"], 0, 1)
    assert line[line.index("--select-on") + 1] == "pr-auc"
    settings.record(tmp_path)
    with pytest.raises(ValueError, match="other select_on; choose another --out"):
        StudySettings(data="d.npz", rare=("M",)).check_resumes(tmp_path)


def test_the_fidelity_scorer_is_the_unthinned_arms_first_seed_where_the_study_runs_that_arm():
    """With --keep and a generator, the fidelity scorer is a real-only classifier on the unthinned training part: its
    own run when the study leaves the ``unthinned`` arm out, and that arm's first seed (the same training) when it runs
    it, so no training is done twice and every task is planned once."""
    from napari_cellsynth.training.study.runner import waves
    from napari_cellsynth.training.study.settings import StudySettings

    def planned(arms: tuple[str, ...]) -> list[list[tuple]]:
        return waves(StudySettings(data="d.npz", rare=("M",), keep=("M=10",), generators={"g": ("b",)}, seeds=(1, 2),
                                   arms=arms))

    first, second, third = planned(("copies", "generated-g"))
    assert ("train", "scorer", 1) in first and ("export", "scorer", 1) in second
    first, second, third = planned(("copies", "unthinned", "generated-g"))
    every = first + second + third
    assert ("train", "unthinned", 1) in first and ("export", "unthinned", 1) in second
    assert ("train", "unthinned", 2) in third and not any(task[1] == "scorer" for task in every)
    assert len(every) == len(set(every))
