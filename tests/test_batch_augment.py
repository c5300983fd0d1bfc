"""cellsynth batch's optional generate and filter steps on real data, along the user's paths.

- Chromosomes (paper 004's pipeline over a stack): two unannotated real ``EX`` metaphases as one T×C×Y×X stack (DAPI
  and the five fluorophore planes), segmented with the zoo's Cellpose model, classified by the zoo's translocation
  classifier, a synthetic chromosome made of every segmented one by a five-plane BBDM (trained here for a few steps:
  the pipeline, not the BBDM's quality, is under test), and the UMAP filter fitted on the run's real chromosomes.
  Run as the command a user types, then again to show that nothing is redone.
- Cells: the Batch widget from the Plugins menu over the nuclei stack of ``test_batch``, with the zoo's Jurkat DDPM
  generating one class and the filter keeping what lies near that class's real objects.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import CELLSYNTH, NUCLEI, SHARED_DATA, require

METAPHASES = ("A3101EX", "A3102EX")  # slide A31: no model trained on it


@pytest.fixture(scope="module")
def metaphase_stack(tmp_path_factory) -> Path:
    from napari_cellsynth.training.data.mfish import FLUOROPHORES

    root = require(SHARED_DATA / "mfish" / "A31__EX")
    frames = [np.stack([tifffile.imread(root / f"{name}{c}.tif") for c in ["D", *FLUOROPHORES[name[0]]]])
              for name in METAPHASES]
    path = tmp_path_factory.mktemp("stack") / "a31.tif"
    tifffile.imwrite(path, np.stack(frames), photometric="minisblack", metadata={"axes": "TCYX"})
    return path


@pytest.fixture(scope="module")
def bbdm_five_planes(mfish_pairs, tmp_path_factory) -> Path:
    """DAPI → the five fluorophore planes (the translocation classifier reads DAPI and them), 3 training steps."""
    from napari_cellsynth.export.export_bbdm import export_bbdm
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    run = tmp_path_factory.mktemp("runs") / "bbdm5"
    train_bbdm.main(["--data", str(mfish_pairs), "--target", "fluorophores", "--base", "16", "--steps", "3",
                     "--sample-every", "3", "--sample-steps", "4", "--ckpt-every", "3", "--out", str(run), "--quiet"])
    return export_bbdm(run, tmp_path_factory.mktemp("bundles") / "bbdm5")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CELLSYNTH, "batch", *args], capture_output=True, text=True, timeout=900)


def mtimes(paths) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in paths}


@pytest.mark.slow
def test_a_stack_of_metaphases_is_segmented_classified_translated_and_filtered(metaphase_stack, bbdm_five_planes,
                                                                               tmp_path):
    out = tmp_path / "run"
    args = [str(metaphase_stack), "--segment-model", "zoo:cellpose-chromosomes", "--classifier",
            "zoo:classifier-translocations", "--generate", str(bbdm_five_planes), "--generate-steps", "4",
            "--filter-minority", "translocation", "--workers", "1", "--out", str(out), "--quiet"]
    done = batch(*args)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out / "objects.csv")
    flagged = sum(r["class"] == "translocation" for r in rows)
    assert len(rows) > 60 and flagged >= 6  # about 40 chromosomes a metaphase, a few flagged
    # one synthetic chromosome per segmented one, named after it, five planes, zero outside its own pixels
    with np.load(out / "synthetic.npz", allow_pickle=False) as data:
        synthetic, source = data["images"], list(data["source"])
    assert source == [f"a31/t{r['t']}-z{r['z']}/label{r['label']}" for r in rows]
    assert synthetic.shape == (len(rows), 5, 64, 64) and synthetic.dtype == np.uint8
    painted = (synthetic > 0).any(axis=1).sum(axis=(1, 2))
    assert (painted > 0).mean() > 0.9 and (painted < 0.9 * 64 * 64).all()
    # the filter: fitted on the run's real chromosomes as the classifier named them, one decision per synthetic one
    summary = json.loads((out / "filter" / "summary.json").read_text())
    assert summary["minority"] == "translocation" and summary["synthetic"] == len(rows)
    assert summary["real"].startswith(f"{len(rows)} segmented objects")
    decisions = read_rows(out / "filter" / "decisions.csv")
    keep = np.array([d["keep"] == "True" for d in decisions])
    assert [d["source"] for d in decisions] == source and keep.sum() == summary["kept"]
    with np.load(out / "filter" / "kept.npz", allow_pickle=False) as kept:
        assert np.array_equal(kept["images"], synthetic[keep])
    record = json.loads((out / "run.json").read_text())
    assert record["augment"]["status"] == "done" and record["models"]["generator"]["kind"] == "bbdm"
    assert record["models"]["cellpose"]["kind"] == "cellpose"  # the zoo's bundle, by its sha256s

    # again: nothing is redone, neither the frames nor the filter
    markers = list(out.glob("markers/*/done/*.json")) + list(out.glob("markers/*/arrays/*.npz"))
    frames = mtimes(markers)
    before = mtimes([*markers, out / "filter" / "summary.json"])
    again = batch(*args)
    assert again.returncode == 0, again.stderr
    assert mtimes([*markers, out / "filter" / "summary.json"]) == before

    # another minority refits only the filter: the frames' outputs do not depend on it
    other = batch(*[a if a != "translocation" else "normal" for a in args])
    assert other.returncode == 0, other.stderr
    assert len(list(out.glob("markers/*"))) == 1 and mtimes(markers) == frames
    assert json.loads((out / "filter" / "summary.json").read_text())["minority"] == "normal"


def test_generate_and_filter_settings_that_cannot_work_are_one_line_errors(metaphase_stack, bbdm_five_planes,
                                                                           tmp_path, capsys):
    from napari_cellsynth.cli import main

    base = [str(metaphase_stack), "--segment-model", "zoo:cellpose-chromosomes", "--out", str(tmp_path / "run")]
    classifier = ["--classifier", "zoo:classifier-translocations"]
    assert main(["batch", *base, *classifier, "--filter-minority", "translocation"]) == 2
    assert main(["batch", *base, "--generate", str(bbdm_five_planes), "--filter-minority", "translocation"]) == 2
    assert main(["batch", *base, *classifier, "--generate", "zoo:ddpm-jurkat4-cut10-v"]) == 2
    assert main(["batch", *base, *classifier, "--generate", "zoo:classifier-jurkat4"]) == 2
    assert main(["batch", *base, *classifier, "--generate", str(bbdm_five_planes), "--filter-minority", "M"]) == 2
    assert main(["batch", *base, "--classifier", "zoo:classifier-jurkat4", "--classify-channels", "0,0,0",
                 "--generate", str(bbdm_five_planes), "--filter-minority", "M"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cellsynth batch: error")]
    assert len(errors) == 6
    for error, said in zip(errors, ["needs --generate", "needs --classifier", "--generate-count",
                                    "'classifier' bundle", "not a class of the classifier", "channel"]):
        assert said in error, error
    assert not (tmp_path / "run" / "objects.csv").exists()


@pytest.mark.napari
def test_the_batch_widget_generates_a_class_with_a_ddpm_and_filters_it(make_napari_viewer, qtbot,
                                                                       chromosome_cellpose_model, classifier_bundle,
                                                                       tmp_path):
    """The nuclei image cut into a stack (as in test_batch), the Jurkat test classifier fed its one channel three
    times, and the zoo's Jurkat DDPM generating the class the classifier finds most often."""
    from test_batch import FRAMES, frames_of, write_stack

    from napari_cellsynth.core.batch import BatchSettings, run_batch
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.outputs import read_provenance
    from napari_cellsynth.core.segment import SegmentSettings
    from napari_cellsynth.core.zoo import resolve

    stack = write_stack(tmp_path / "nuclei.tif", frames_of(tifffile.imread(require(NUCLEI / "img2d.tif")), FRAMES))
    plain = BatchSettings(SegmentSettings(str(chromosome_cellpose_model)), str(classifier_bundle),
                          classify_channels=(0, 0, 0))
    first = run_to_end(run_batch(stack, tmp_path / "plain", plain, workers=1))
    classes = [r["class"] for r in read_rows(first.table)]
    minority = max(set(classes), key=classes.count)

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Batch")
    widget.input.value = str(stack)
    widget.segment_model.value = str(chromosome_cellpose_model)
    widget.classifier.value = str(classifier_bundle)
    widget.classify_channels.value = "0,0,0"
    widget.generator.value = str(resolve("zoo:ddpm-jurkat4-cut10-v"))
    widget.generate_count.value = 12
    widget.generate_steps.value = 5
    widget.minority.value = minority
    widget.workers.value = 1
    widget.out.value = str(tmp_path / "run")
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=300_000)
    assert widget.last_error is None, widget.last_error
    assert "the filter kept" in widget.status.value and "of 12 synthetic objects" in widget.status.value

    out = tmp_path / "run"
    generated = sorted((out / "generated").glob("*.tif"))
    assert len(generated) == 12
    provenance = read_provenance(generated[0])
    assert provenance["class"] == minority and provenance["sampler"] == "dpm_solver_pp_2m" and provenance["steps"] == 5
    summary = json.loads((out / "filter" / "summary.json").read_text())
    assert summary["synthetic"] == 12 and summary["minority"] == minority
    assert summary["real"].startswith(f"{len(classes)} segmented objects")  # the same objects as without generating

    # the same run from the core resumes: no frame, image or filter is made again
    before = mtimes([*generated, out / "filter" / "summary.json", *out.glob("markers/*/done/*.json")])
    settings = widget.settings()
    result = run_to_end(run_batch(stack, out, settings, workers=1))
    assert result.augment["status"] == "done" and result.augment["filter"]["synthetic"] == 12
    assert mtimes([*generated, out / "filter" / "summary.json", *out.glob("markers/*/done/*.json")]) == before
