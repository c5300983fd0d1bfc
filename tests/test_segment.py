"""Cellpose segmentation of real M-FISH DAPI planes with the zoo's chromosome model, and a Cellpose run trained
for seconds here (its records and its export; its accuracy is results §5's and §10's)."""

import json
import subprocess

import numpy as np
import pytest
import tifffile
from conftest import CELLSYNTH, SHARED_DATA, require, screenshot

from napari_cellsynth.core.images import ImageInputError
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings, estimate_diameter, load_model, segment
from napari_cellsynth.training.data.mfish import Metaphase


@pytest.fixture(scope="module")
def held_out():
    """The metaphase shipped as the plugin's sample data (V260554, slide V26, which the zoo model never saw), so that
    a clone without ../shared/data tests segmentation too."""
    import tifffile

    from napari_cellsynth._sample_data import MFISH_SAMPLE

    planes = tifffile.imread(MFISH_SAMPLE)
    karyotype = tifffile.imread(MFISH_SAMPLE.with_name(MFISH_SAMPLE.stem + "_K.tif"))
    return Metaphase("V260554", "V26__54", "V", "54", planes[0], planes[1:], karyotype)


def test_a_cellpose_run_is_scored_on_held_out_slides(cellpose_training_run):
    report = json.loads((cellpose_training_run / "report.json").read_text())
    assert set(report["held_out_slides"]) == {"V26", "A20"} and report["test_metaphases"] == 1
    assert 0.0 <= report["test"]["ap50_mean"] <= 1.0  # 2 epochs: a number, not a quality (that is §5's)
    # the thresholds are chosen on the training metaphase, and the held-out AP is reported at them and at Cellpose's
    chosen = report["thresholds"]
    assert chosen["chosen_on"] == "the 1 training metaphases" and {"flow": 0.4, "cellprob": 0.0} in [
        {k: p[k] for k in ("flow", "cellprob")} for p in chosen["grid"]]
    assert chosen["ap50"] >= chosen["ap50_at_defaults"] and 0.0 <= report["test_at_defaults"]["ap50_mean"] <= 1.0
    assert (cellpose_training_run / "models" / "chromosomes").is_file()


def test_the_zoo_model_was_scored_on_held_out_slides(chromosome_cellpose_model):
    card = json.loads((chromosome_cellpose_model / "card.json").read_text())
    assert {"V26", "A20"} <= set(card["training"]["held_out_slides"])


def test_segments_chromosomes_of_an_unseen_metaphase(chromosome_cellpose_model, held_out):
    from napari_cellsynth.training.data.chromosome_masks import chromosome_instances

    settings = SegmentSettings(str(chromosome_cellpose_model))
    labels = run_to_end(segment(held_out.dapi, settings))
    truth = chromosome_instances(held_out.karyotype)
    assert labels.shape == held_out.dapi.shape and labels.dtype == np.int32
    assert 0.3 * truth.max() <= labels.max() <= 2 * truth.max()  # a small test model finds a good part of ~50
    foreground = labels > 0
    # objects lie on chromosomes (which cover a few % of the image); masks are wider than the karyotype's
    assert (truth > 0).mean() < 0.1 and (foreground & (truth > 0)).sum() / foreground.sum() > 0.5


def test_stack_is_segmented_frame_by_frame_with_progress(chromosome_cellpose_model, held_out):
    stack = np.stack([held_out.dapi, np.fliplr(held_out.dapi)])
    job = segment(stack, SegmentSettings(str(chromosome_cellpose_model)))
    progress = []
    while True:
        try:
            progress.append(next(job))
        except StopIteration as stop:
            labels = stop.value
            break
    assert progress == [(0, 2), (1, 2), (2, 2)] and labels.shape == stack.shape
    assert labels[1].max() > 0


def test_diameter_estimate_is_plausible(chromosome_cellpose_model, held_out):
    diameter = estimate_diameter(held_out.dapi, SegmentSettings(str(chromosome_cellpose_model)))
    assert 5 < diameter < 60


def test_bad_models_and_images_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a built-in name .* nor an existing model file"):
        load_model(str(tmp_path / "missing_model"))
    with pytest.raises(ImageInputError, match="not a 2-D image or a stack"):
        run_to_end(segment(np.zeros((2, 2, 8, 8)), SegmentSettings("unused")))
    with pytest.raises(ImageInputError, match="NaN"):
        run_to_end(segment(np.full((8, 8), np.nan), SegmentSettings("unused")))


def test_cli_segment_writes_labels(chromosome_cellpose_model, held_out, tmp_path):
    from napari_cellsynth.cli import main

    tifffile.imwrite(tmp_path / "dapi.tif", held_out.dapi)
    assert main(["segment", str(tmp_path / "dapi.tif"), "--model", str(chromosome_cellpose_model),
                 "--estimate-diameter", "--out", str(tmp_path / "labels.tif"), "--quiet"]) == 0
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == held_out.dapi.shape and labels.max() > 10
    assert main(["segment", str(tmp_path / "dapi.tif"), "--model", "no_such_model", "--out",
                 str(tmp_path / "x.tif")]) == 2
    # the same plane as a PNG, and as an RGB JPEG (grey in three channels): read as one plane, segmented alike
    from skimage.io import imsave

    plane = np.clip(held_out.dapi, 0, 255).astype(np.uint8)
    imsave(tmp_path / "dapi.png", plane, check_contrast=False)
    imsave(tmp_path / "dapi.jpg", np.repeat(plane[..., None], 3, axis=-1), quality=95, check_contrast=False)
    for name in ("dapi.png", "dapi.jpg"):
        assert main(["segment", str(tmp_path / name), "--model", str(chromosome_cellpose_model), "--diameter", "30",
                     "--out", str(tmp_path / f"{name}.labels.tif"), "--quiet"]) == 0
        found = tifffile.imread(tmp_path / f"{name}.labels.tif")
        assert found.shape == held_out.dapi.shape and found.max() > 10
    done = subprocess.run([CELLSYNTH, "batch", str(tmp_path / "dapi.png"), "--segment-model",
                           str(chromosome_cellpose_model), "--out", str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "batch reads TIFF stacks and OME-Zarr" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.napari
def test_segment_widget_adds_labels(make_napari_viewer, qtbot, chromosome_cellpose_model, held_out):
    from napari_cellsynth._widgets.segment import CUSTOM

    viewer = make_napari_viewer()
    layer = viewer.add_image(held_out.dapi, name="DAPI")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Segment")
    widget.reset_choices()
    widget.image_layer.value = layer
    widget.model_name.value = CUSTOM
    widget.model_file.value = str(chromosome_cellpose_model)
    widget.start(widget.make_estimate_job, widget.show_estimate)
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    assert 5 < widget.diameter.value < 60
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    labels = viewer.layers["DAPI objects"]
    assert labels.data.shape == held_out.dapi.shape and labels.data.max() > 10


def counting(model):
    """The real model's network, counted: one call per batch of tiles."""
    calls = []
    model.net.register_forward_hook(lambda *args: calls.append(1))
    return calls


def large_frame(held_out):
    """A real DAPI plane tiled 3 × 3 (about 1,550 × 1,940 px): many batches of Cellpose tiles."""
    return np.tile(held_out.dapi, (3, 3))


def test_cancel_stops_cellpose_between_batches_of_tiles(chromosome_cellpose_model, held_out):
    import threading
    import time

    from napari_cellsynth.core.jobs import Cancelled, CancelToken

    model, token = load_model(str(chromosome_cellpose_model)), CancelToken()
    calls = counting(model)
    job = segment(large_frame(held_out), SegmentSettings(str(chromosome_cellpose_model)), model=model, cancel=token)
    assert next(job) == (0, 1)
    progress = []
    while len(calls) < 2:
        progress.append(next(job))
    assert any("tiles through the network" in value[2] for value in progress if len(value) == 3)
    started, done_before = time.perf_counter(), len(calls)
    token.cancel()
    with pytest.raises(Cancelled):
        while True:
            next(job)
    assert time.perf_counter() - started < 10 and len(calls) <= done_before + 2  # within a batch or two
    assert not [t for t in threading.enumerate() if t.name == "cellsynth-step"]
    assert not model.net._forward_pre_hooks  # the hook goes with the job


@pytest.mark.napari
def test_segment_widget_cancel_stops_within_a_frame(make_napari_viewer, qtbot, chromosome_cellpose_model, held_out):
    import time

    from napari_cellsynth._widgets.segment import CUSTOM

    viewer = make_napari_viewer()
    layer = viewer.add_image(large_frame(held_out), name="DAPI")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Segment")
    widget.reset_choices()
    widget.image_layer.value = layer
    widget.model_name.value = CUSTOM
    widget.model_file.value = str(chromosome_cellpose_model)
    widget.start()
    qtbot.waitUntil(lambda: "tiles through the network" in widget.status.value, timeout=60_000)
    started = time.perf_counter()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    assert time.perf_counter() - started < 10
    assert widget.status.value == "cancelled" and widget.run_button.enabled and widget.last_error is None
    qtbot.wait(200)
    assert [lay.name for lay in viewer.layers] == ["DAPI"]


@pytest.mark.slow
def test_cellpose_bundle_segments_like_its_model_file(cellpose_training_run, held_out, tmp_path):
    """``cellsynth export cellpose`` (fp16 weights in arrays.npz, no pickle) → a bundle that segments the unseen
    metaphase as the trained model file does; a changed weight file is refused by its sha256."""
    import sys
    from pathlib import Path

    from napari_cellsynth.core.bundle import BundleError

    bundle, model_file = tmp_path / "cellpose-bundle", cellpose_training_run / "models" / "chromosomes"
    done = subprocess.run([str(Path(sys.executable).with_name("cellsynth")), "export", "cellpose",
                           str(cellpose_training_run), "--out", str(bundle), "--root",
                           str(SHARED_DATA / "mfish"), "--parity-images", "1"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    card = json.loads((bundle / "card.json").read_text())
    assert card["kind"] == "cellpose" and card["cellpose"]["weights"] in ("fp16", "fp32")
    assert abs(card["export"]["ap50_trained"] - card["export"]["ap50_stored"]) <= 0.02
    thresholds = card["cellpose"]["thresholds"]  # chosen on the training metaphase; the bundle segments with them
    assert card["training"]["test_ap50_at_cellpose_thresholds"][0] == pytest.approx(
        json.loads((cellpose_training_run / "report.json").read_text())["test_at_defaults"]["ap50_mean"])
    corner = held_out.dapi[:256, :256]  # a quarter of the metaphase: the same comparison at a quarter of the cost
    # the run went on from the zoo's narrower network: `cellsynth segment --model FILE` reads its widths from the
    # file (with the thresholds the card holds) and segments as the bundle does; a file of no weights is refused
    report = json.loads((cellpose_training_run / "report.json").read_text())
    assert report["nbase"] != [32, 64, 128, 256]  # narrower than Cellpose's own
    tifffile.imwrite(tmp_path / "corner.tif", corner)
    done = subprocess.run([CELLSYNTH, "segment", str(tmp_path / "corner.tif"), "--model", str(model_file),
                           "--flow-threshold", str(thresholds["flow"]), "--cellprob-threshold",
                           str(thresholds["cellprob"]), "--out", str(tmp_path / "from-file.tif"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from_file = tifffile.imread(tmp_path / "from-file.tif")
    (tmp_path / "notes.txt").write_text("not weights")
    done = subprocess.run([CELLSYNTH, "segment", str(tmp_path / "corner.tif"), "--model", str(tmp_path / "notes.txt"),
                           "--out", str(tmp_path / "x.tif")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "is not a Cellpose model file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.tif").exists()
    from_bundle = run_to_end(segment(corner, SegmentSettings(str(bundle))))
    assert from_file.max() > 5 and abs(int(from_bundle.max()) - int(from_file.max())) <= 2  # a trained start finds
    if from_file.max():
        matched = [np.bincount(from_bundle[from_file == k]).argmax() > 0 for k in range(1, from_file.max() + 1)]
        assert np.mean(matched) > 0.9
    with open(bundle / "arrays.npz", "r+b") as fh:
        fh.seek(-100, 2)
        fh.write(b"x" * 10)
    with pytest.raises(BundleError, match="sha256"):
        load_model(str(bundle))


@pytest.mark.napari
def test_an_offline_builtin_model_fails_at_once_in_one_line_and_is_not_offered(make_napari_viewer, monkeypatch,
                                                                                 tmp_path, held_out):
    """Issue 35: with Cellpose's weights not cached and its server unreachable, `cellsynth segment --model cyto3`
    stops at once with one line naming the offline fixes, and the Segment widget does not offer the built-ins."""
    import sys
    from pathlib import Path

    from cellpose import models

    from napari_cellsynth.core import segment as segment_module

    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "no-weights")
    monkeypatch.setattr(segment_module, "CELLPOSE_HOST", ("127.0.0.1", 9))  # the discard port: nothing answers
    assert segment_module.available_builtins() == []
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Segment")
    assert "cyto3" not in widget.model_name.choices and "zoo:cellpose-chromosomes" in widget.model_name.choices
    screenshot(viewer, "segment-offline", tmp_path / "shots")  # the zoo's model offered, no built-in
    with pytest.raises(ImageInputError, match="'nuclei' is not downloaded .* cannot be reached"):
        load_model("nuclei")
    if segment_module.cellpose_reachable(timeout=2):
        pytest.skip("this machine reaches cellpose.org: the command would download the weights")
    tifffile.imwrite(tmp_path / "dapi.tif", held_out.dapi)
    done = subprocess.run([str(Path(sys.executable).with_name("cellsynth")), "segment", str(tmp_path / "dapi.tif"),
                           "--model", "cyto3", "--out", str(tmp_path / "labels.tif")], capture_output=True, text=True,
                          env={**__import__("os").environ, "CELLPOSE_LOCAL_MODELS_PATH": str(tmp_path / "none")},
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "zoo:cellpose-chromosomes" in done.stderr and "CELLPOSE_LOCAL_MODELS_PATH" in done.stderr
    assert not (tmp_path / "labels.tif").exists()


@pytest.mark.slow
def test_training_goes_on_from_a_bundles_weights(chromosome_cellpose_model, tmp_path):
    """``--init-from zoo-bundle``: one epoch of 8 crops from the zoo model's weights (its widths, not --nbase's)
    still segments an unseen metaphase (from random weights, two epochs find next to nothing); a path that is
    neither a bundle nor a model file is refused in one line."""
    from napari_cellsynth.training.records.registry import read_run
    from napari_cellsynth.training.trainers import cellpose as train_cellpose

    mfish = str(require(SHARED_DATA / "mfish"))  # the M-FISH metaphases to train on (a clone without them skips)
    run = tmp_path / "run"
    train_cellpose.main(["--root", mfish, "--epochs", "1", "--images-per-epoch", "8", "--limit", "1",
                         "--test-slides", "V26", "--init-from", str(chromosome_cellpose_model), "--out", str(run)])
    record = read_run(run)
    assert record.settings.init_from == str(chromosome_cellpose_model) and record.nbase == [16, 32, 64, 128]
    card = json.loads((chromosome_cellpose_model / "card.json").read_text())  # what it started from, by sha256
    assert record.init_from["sha256"] == {name: entry["sha256"] for name, entry in card["files"].items()}
    assert record.test["ap50_mean"] > 0.3
    done = subprocess.run([CELLSYNTH, "train", "cellpose", "--root", mfish, "--init-from", str(tmp_path / "nothing"),
                           "--out", str(tmp_path / "other")], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--init-from" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
