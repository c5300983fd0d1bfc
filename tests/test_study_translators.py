"""cellsynth study with a translator (paper 004, per object): a BBDM paints translocations onto the DAPI of training
normals of real M-FISH metaphases, with whole slides held out for the test, run as a user types it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import CELLSYNTH, require
from test_study import study

TEST_SLIDES = ["V14", "V26"]  # a normal slide and one with translocations; the BBDM trains on V28 (V16 left out too)


@pytest.fixture(scope="module")
def planes_bbdm(mfish_five_metaphases, tmp_path_factory) -> Path:
    """A five-plane BBDM of translocations (3 training steps: the pipeline, not its quality, is under test) that left
    out the study's test slides and V16."""
    from napari_cellsynth.export.export_bbdm import export_bbdm
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    run = tmp_path_factory.mktemp("bbdm") / "planes"
    train_bbdm.main(["--data", str(mfish_five_metaphases), "--target", "fluorophores", "--exclude-slides",
                     *TEST_SLIDES, "V16", "--only-translocations", "--base", "16", "--steps", "3", "--sample-every",
                     "3", "--sample-steps", "2", "--ckpt-every", "3", "--out", str(run), "--quiet"])
    return export_bbdm(run, tmp_path_factory.mktemp("bundles") / "bbdm-planes")


@pytest.fixture(scope="module")
def planes_cyclegan(mfish_five_metaphases, tmp_path_factory) -> Path:
    """A five-plane CycleGAN of translocations (2 training steps) that left out the same slides."""
    from napari_cellsynth.export.export_cyclegan import export_cyclegan
    from napari_cellsynth.training.trainers import cyclegan as train_cyclegan

    run = tmp_path_factory.mktemp("cyclegan") / "planes"
    train_cyclegan.main(["--data", str(mfish_five_metaphases), "--planes", "fluorophores", "--target", "translocations",
                         "--exclude-slides", *TEST_SLIDES, "V16", "--base", "8", "--blocks", "2", "--steps", "2",
                         "--sample-every", "2", "--ckpt-every", "2", "--out", str(run), "--quiet"])
    return export_cyclegan(run, tmp_path_factory.mktemp("bundles") / "cyclegan-planes")


def planes_data(mfish_five_metaphases: Path) -> Path:
    """What the M-FISH builder writes beside chromosomes.npz: the labelled chromosomes, DAPI and five planes."""
    return require(mfish_five_metaphases.with_name("translocation_planes.npz"))


def test_a_translator_study_holds_slides_out_and_paints_training_normals(mfish_five_metaphases, planes_bbdm,
                                                                         planes_cyclegan, tmp_path):
    data, out = planes_data(mfish_five_metaphases), tmp_path / "study"
    done = study("--data", data, "--rare", "translocation", "--group-by", "slide", "--test-groups", *TEST_SLIDES,
                 "--generator", f"bbdm={planes_bbdm}", f"cyclegan={planes_cyclegan}", "--filters", "umap", "--arms",
                 "copies", "generated-bbdm", "generated-bbdm-umap", "generated-cyclegan", "--count", "20",
                 "--sample-steps", "3", "--steps", "12", "--width", "8", "--seeds", "0", "--quiet", "--out", out)
    assert done.returncode == 0, done.stderr
    with np.load(data) as crops, np.load(out / "split.npz") as split:
        slides, labels, images = crops["slide"], crops["labels"], crops["images"]
        test, train = split["test"], split["train"]
    assert set(slides[test]) == set(TEST_SLIDES) and np.isin(slides, TEST_SLIDES).sum() == len(test)
    assert not np.isin(slides[train], TEST_SLIDES).any()
    root = out / "synthetic" / "bbdm" / "seed0"
    with np.load(root / "pool.npz") as pool:
        made, made_labels = pool["images"], pool["labels"]
    assert made.shape == (40, 6, 64, 64) and set(made_labels) == {"translocation"}  # 2 × 20: the filter chooses
    donors = np.array(json.loads((root / "provenance.json").read_text())["translocation"]["donors"])
    assert set(donors) <= set(train) and (labels[donors] == "normal").all()
    assert set(slides[donors]) == {"V28"}  # the slides the BBDM learnt from
    assert len(set(donors.tolist())) == len(donors)  # each donor once while there are enough
    assert np.array_equal(made[:, 0], images[donors, 0])  # each painted cell keeps its donor's own DAPI
    assert (made[:, 1:][images[donors, :1].repeat(5, 1) == 0] == 0).all()  # painted on the chromosome's pixels only
    with np.load(out / "synthetic" / "cyclegan" / "seed0" / "pool.npz") as pool:  # one pass, no filter: 20 cells
        assert pool["images"].shape == (20, 6, 64, 64)
        painted = json.loads((out / "synthetic" / "cyclegan" / "seed0" / "provenance.json").read_text())
        assert set(slides[painted["translocation"]["donors"]]) == {"V28"}
        assert np.array_equal(pool["images"][:, 0], images[painted["translocation"]["donors"], 0])
    kept = json.loads((root / "kept-umap.json").read_text())["translocation"]
    assert kept["generated"] == 40 and 0 <= kept["kept"] <= 40
    summary = json.loads((out / "summary.json").read_text())
    assert {"real", "copies", "generated-bbdm", "generated-bbdm-umap", "generated-cyclegan"} <= set(summary["arms"])
    added = json.loads((out / "arms" / "generated-bbdm" / "seed0" / "config.json").read_text())["extra_train"]
    assert [e["counts"]["translocation"] for e in added] == [20]
    assert (out / "report.html").is_file()
    # each translator copied with the measured fidelity of its painted cells in its card, which cellsynth info prints
    assert {"bbdm", "cyclegan"} <= set(summary["fidelity"])
    done = study("--data", data, "--rare", "translocation", "--group-by", "slide", "--test-groups", *TEST_SLIDES,
                 "--generator", f"bbdm={planes_bbdm}", f"cyclegan={planes_cyclegan}", "--filters", "umap",
                 "--count", "20", "--sample-steps", "3", "--steps", "12", "--width", "8", "--seeds", "0", "--quiet",
                 "--report-only", "--bundles-out", tmp_path / "measured", "--out", out)
    assert done.returncode == 0, done.stderr
    for name in ("bbdm", "cyclegan"):
        card = json.loads((tmp_path / "measured" / name / "card.json").read_text())
        assert card["fidelity"]["classes"]["translocation"]["class_fidelity"] == \
            summary["fidelity"][name]["translocation"]["class_fidelity"]
        shown = subprocess.run([CELLSYNTH, "info", str(tmp_path / "measured" / name)], capture_output=True, text=True)
        assert shown.returncode == 0 and "fidelity: translocation:" in shown.stderr, shown.stderr


def test_a_translator_is_refused_where_it_could_have_seen_test_cells(mfish_five_metaphases, planes_bbdm, bbdm_bundle,
                                                                     tmp_path, capsys):
    from napari_cellsynth import cli

    data = planes_data(mfish_five_metaphases)
    common = ["--data", data, "--rare", "translocation", "--steps", "12", "--quiet"]
    bbdm, held_out = ["--generator", f"bbdm={planes_bbdm}"], ["--group-by", "slide", "--test-groups", *TEST_SLIDES]
    cases = [
        ([*common, *bbdm, "--out", tmp_path / "a"], "records the slides it left out"),  # no slide held out
        ([*common, *bbdm, "--group-by", "slide", "--test-groups", "V14", "V28", "--out", tmp_path / "b"],
         "learnt from the test groups ['V28']"),
        ([*common, *bbdm, "--group-by", "slide", "--out", tmp_path / "c"], "go together"),
        ([*common, *bbdm, "--group-by", "slide", "--test-groups", "V99", "--out", tmp_path / "d"],
         "not groups of the data"),
        ([*common, *held_out, "--generator", f"bbdm={planes_bbdm},guidance=1.5", "--out", tmp_path / "e"],
         "apply to DDPM bundles"),
        ([*common, *held_out, "--generator", "zoo:ddpm-jurkat4-cut10-v", "--out", tmp_path / "f"],
         "learnt from a stratified split"),
        # a BBDM of any chromosome (trained without --only-translocations) paints normal-looking ones
        ([*common, *held_out, "--generator", f"bbdm={bbdm_bundle}", "--out", tmp_path / "g"], "makes 'any' cells"),
        ([*common, *held_out, *bbdm, "--sample-steps", "1", "--out", tmp_path / "h"], "steps must be between 2"),
        ([*common, *bbdm, "--group-by", "slide", "--test-groups", "V14", "--out", tmp_path / "i"],
         "choose --test-groups that hold some"),  # V14 has no translocation
        ([*common, "--group-by", "slide", "--test-groups", "V26", "V28", "--out", tmp_path / "j"],
         "hold every crop of ['translocation']"),  # every translocation of the five metaphases is on V26 or V28
    ]
    for args, message in cases:
        capsys.readouterr()
        assert cli.main(["study", *map(str, args)]) == 2
        stderr = capsys.readouterr().err
        assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert not (Path(args[-1]) / "settings.json").exists()  # a refused study leaves nothing to resume


def test_the_builder_writes_the_planes_task_the_translocation_experiment_reads(mfish_five_metaphases, tmp_path):
    """The six-channel task of the builder equals the one the translocation experiment derives from chromosomes.npz."""
    from napari_cellsynth.training.data.translocations import load_chromosomes
    from napari_cellsynth.training.experiments.translocation_classifier import build_parser, prepare

    args = build_parser().parse_args(["--data", str(mfish_five_metaphases), "--test-slides", *TEST_SLIDES,
                                      "--out", str(tmp_path)])
    prepare(args, tmp_path)
    chromosomes = load_chromosomes(str(mfish_five_metaphases))
    with np.load(planes_data(mfish_five_metaphases)) as built, np.load(tmp_path / "six.npz") as six:
        assert set(built.files) == set(six.files)
        for key in built.files:
            assert np.array_equal(built[key], six[key]), key
        assert len(built["labels"]) == int((chromosomes["translocation"] >= 0).sum())


def test_a_translators_pool_grows_and_resumes_without_changing_its_cells(mfish_five_metaphases, planes_bbdm,
                                                                          tmp_path, monkeypatch):
    """A filtered arm added later doubles the pool: the cells the unfiltered arm trained on stay its first ones.  The
    pool is saved in parts as it is made: a killed run resumes from the parts on disk, and cutting it into parts
    changes no cell (each batch keeps its noise)."""
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.training.study import cell_sources
    from napari_cellsynth.training.study.plan import StudyPlan
    from napari_cellsynth.training.study.settings import StudySettings

    settings = StudySettings(str(planes_data(mfish_five_metaphases)), ("translocation",), group_by="slide",
                             test_groups=tuple(TEST_SLIDES), sample_steps=3)
    plan, model = StudyPlan(settings, tmp_path), OnnxModel(planes_bbdm, kind="bbdm")
    source = cell_sources.SOURCES[model.card.kind]

    def make(count: int, seed: int, root: str):
        return source.make(plan, "bbdm", model, "translocation", count, seed, tmp_path / root)

    first, first_record = make(20, 0, "a")
    grown, grown_record = make(40, 0, "a")
    assert first.shape == (20, 6, 64, 64) and grown.shape == (40, 6, 64, 64)
    assert grown_record["donors"][:20] == first_record["donors"]
    assert np.array_equal(grown[:20], first)
    assert not np.array_equal(make(20, 1, "a")[0], first)  # another seed: other cells

    monkeypatch.setattr(cell_sources, "PART", 32)  # parts of one batch: 64 cells are two parts
    in_parts, _ = make(40, 0, "b")
    assert np.array_equal(in_parts, grown)
    parts = sorted((tmp_path / "b" / "translated").glob("*.npz"))
    assert [p.name for p in parts] == ["translocation-seed0-000000-32.npz", "translocation-seed0-000032-32.npz"]
    kept_time = parts[0].stat().st_mtime_ns
    parts[1].unlink()  # killed while making the second part
    resumed, _ = make(40, 0, "b")
    assert np.array_equal(resumed, grown) and parts[0].stat().st_mtime_ns == kept_time and parts[1].is_file()
