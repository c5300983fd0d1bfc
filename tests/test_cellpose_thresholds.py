"""Issue 35 item 7: Cellpose's flow and cell-probability thresholds chosen on a model's training metaphases, written
into its bundle's card, and used by segmentation (CLI, batch, widget) unless the user sets them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CELLSYNTH, SHARED_DATA, require
from napari_cellsynth.core.bundle import CELLPOSE_THRESHOLDS, read_card
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings, load_model, model_thresholds, segment

EXPERIMENT = "napari_cellsynth.training.experiments.cellpose_thresholds"


@pytest.fixture(scope="module")
def rethresholded(chromosome_cellpose_model, tmp_path_factory) -> Path:
    """The experiment run as a command on the zoo model, with 2 training and 2 held-out metaphases."""
    out = tmp_path_factory.mktemp("thresholds") / "cellpose-rethresholded"
    done = subprocess.run([sys.executable, "-m", EXPERIMENT, str(chromosome_cellpose_model), "--root",
                           str(require(SHARED_DATA / "mfish")), "--limit", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "thresholds chosen on the 2 training metaphases" in done.stdout
    return out


def test_the_chosen_point_is_the_grids_best_and_equals_what_segmentation_scores(chromosome_cellpose_model):
    """On a real training metaphase: the choice is the grid's best (no worse than Cellpose's defaults), and the
    masks the grid scores from the network's outputs are those ``segment`` gives at the same thresholds (exactly: the
    grid follows the flows for as many iterations as Cellpose's eval at the model's diameter)."""
    from napari_cellsynth.training.data.chromosome_masks import (average_precision, chromosome_instances, load_split,
                                                                 scores_of)
    from napari_cellsynth.training.reports.mask_thresholds import choose_thresholds, masks_at, network_outputs

    model = load_model(str(chromosome_cellpose_model))
    train, _, _ = load_split(str(require(SHARED_DATA / "mfish")), list(read_card(chromosome_cellpose_model)
                                                                        .trained.held_out_slides), 1)
    chosen = choose_thresholds(model, [m.dapi for m in train], [chromosome_instances(m.karyotype) for m in train],
                               "a training metaphase", flows=(0.4, 0.6), cellprobs=(-2.0, 0.0))
    assert len(chosen["grid"]) == 4 and {(p["flow"], p["cellprob"]) for p in chosen["grid"]} >= {CELLPOSE_THRESHOLDS}
    assert chosen["ap50"] == max(p["ap50_mean"] for p in chosen["grid"]) >= chosen["ap50_at_defaults"]
    outputs = network_outputs(model, [m.dapi for m in train])
    truths = [chromosome_instances(m.karyotype) for m in train]
    for thresholds in ((chosen["flow"], chosen["cellprob"]), CELLPOSE_THRESHOLDS):
        via_segment = average_precision(model, train, thresholds=thresholds)
        in_grid = next(p["ap50_mean"] for p in chosen["grid"] if (p["flow"], p["cellprob"]) == thresholds)
        assert via_segment["ap50_mean"] == in_grid  # the same masks: the grid follows the flows as long as eval does
        # what the trainer records for its held-out slides, from one network pass for both pairs of thresholds
        assert scores_of(train, masks_at(outputs, *thresholds), truths) == via_segment


def test_the_new_bundle_keeps_the_weights_and_records_the_thresholds(rethresholded, chromosome_cellpose_model):
    old, new = read_card(chromosome_cellpose_model), read_card(rethresholded)
    assert new.files["arrays.npz"] == old.files["arrays.npz"]  # the same weights, byte for byte
    chosen = new.cellpose.thresholds
    assert new.cellpose.mask_thresholds == (chosen["flow"], chosen["cellprob"])
    assert chosen["chosen_on"] == "the 2 training metaphases" and chosen["images"] == 2
    summary = json.loads(rethresholded.with_name(rethresholded.name + "-summary.json").read_text())
    held = summary["held_out"]
    assert new.training["test_ap50"][0] == pytest.approx(held["chosen"]["ap50_mean"])
    assert new.training["test_ap50_at_cellpose_thresholds"][0] == pytest.approx(held["cellpose"]["ap50_mean"])
    assert held["chosen_minus_cellpose"]["mean"] == pytest.approx(held["chosen"]["ap50_mean"]
                                                                  - held["cellpose"]["ap50_mean"])
    assert len(held["metaphases"]) == 2 and set(held["per_slide"]) <= set(summary["held_out_slides"])


def test_segmentation_uses_the_cards_thresholds_unless_told_otherwise(rethresholded, held_out_plane, tmp_path):
    """``cellsynth segment`` with the new bundle gives the labels of its model at the card's thresholds; explicit
    ones override the card (Cellpose's 0.4 / 0.0 give those of the old bundle)."""
    import tifffile

    flow, cellprob = read_card(rethresholded).cellpose.mask_thresholds
    assert model_thresholds(str(rethresholded)) == (flow, cellprob)
    image = tmp_path / "dapi.tif"
    tifffile.imwrite(image, held_out_plane)

    def run(*options) -> np.ndarray:
        out = tmp_path / f"labels{len(list(tmp_path.glob('labels*')))}.tif"
        done = subprocess.run([CELLSYNTH, "segment", str(image), "--model", str(rethresholded), "--out", str(out),
                               "--quiet", *options], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return tifffile.imread(out)

    own = run()
    model = load_model(str(rethresholded))
    explicit = run_to_end(segment(held_out_plane, SegmentSettings("given", None, (0, 0), flow, cellprob), model=model))
    assert np.array_equal(own, explicit)
    defaults = run("--flow-threshold", "0.4", "--cellprob-threshold", "0.0")
    at_defaults = run_to_end(segment(held_out_plane, SegmentSettings("given", None, (0, 0), *CELLPOSE_THRESHOLDS),
                                     model=model))
    assert np.array_equal(defaults, at_defaults)
    if (flow, cellprob) != CELLPOSE_THRESHOLDS:
        assert not np.array_equal(own, defaults)


def test_the_input_bundle_is_never_overwritten(chromosome_cellpose_model):
    done = subprocess.run([sys.executable, "-m", EXPERIMENT, str(chromosome_cellpose_model), "--out",
                           str(chromosome_cellpose_model)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "is the input bundle" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def held_out_plane() -> np.ndarray:
    """A quarter of the plugin's sample metaphase (V26, held out by the zoo model): DAPI."""
    import tifffile

    from napari_cellsynth._sample_data import MFISH_SAMPLE

    return tifffile.imread(MFISH_SAMPLE)[0][:320, :320]


@pytest.mark.napari
def test_the_segment_widget_shows_the_models_own_thresholds(make_napari_viewer, rethresholded):
    """Opened from the Plugins menu: ticked, the fields show the card's thresholds and are locked, and the job gets
    none of its own (the model's); unticked, the user's values go to the job."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Segment")
    widget.model_name.value = "custom model file…"
    widget.model_file.value = str(rethresholded)
    flow, cellprob = read_card(rethresholded).cellpose.mask_thresholds
    assert widget.own_thresholds.value and not widget.flow_threshold.enabled
    assert (widget.flow_threshold.value, widget.cellprob_threshold.value) == pytest.approx((flow, cellprob))
    settings = widget.settings()
    assert (settings.flow_threshold, settings.cellprob_threshold) == (None, None)
    widget.own_thresholds.value = False
    widget.flow_threshold.value, widget.cellprob_threshold.value = 0.9, -1.25
    assert widget.flow_threshold.enabled
    settings = widget.settings()
    assert (settings.flow_threshold, settings.cellprob_threshold) == (0.9, -1.25)
