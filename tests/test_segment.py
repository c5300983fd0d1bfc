"""Cellpose segmentation with a model trained here from scratch on real M-FISH DAPI planes."""

import json

import numpy as np
import pytest
import tifffile

from conftest import SHARED_DATA
from napari_cellsynth.core.images import ImageInputError
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.mfish import read_metaphase
from napari_cellsynth.core.segment import SegmentSettings, estimate_diameter, load_model, segment


@pytest.fixture(scope="module")
def held_out():
    """A metaphase from slide V26, which the test model never saw."""
    return read_metaphase(SHARED_DATA / "mfish" / "V26__54", "V260254")


def test_model_was_scored_on_held_out_slides(chromosome_cellpose_model):
    report = json.loads((chromosome_cellpose_model.parents[1] / "report.json").read_text())
    assert set(report["held_out_slides"]) == {"V26", "A20"} and report["test_metaphases"] == 10
    assert report["test"]["ap50_mean"] > 0.3  # 0.42 when trained here (40 epochs, 10 metaphases)


def test_segments_chromosomes_of_an_unseen_metaphase(chromosome_cellpose_model, held_out):
    from training.train_cellpose import chromosome_instances

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


class SlowCellpose:
    """Stands in for a CellposeModel on a large frame: ``eval`` runs its network on 100 batches of tiles,
    0.05 s each, as Cellpose's run_net does (the network is called once per batch)."""

    def __init__(self, batches=100):
        import torch

        self.net = torch.nn.Identity()
        self.batches, self.calls = batches, 0

    def eval(self, frame, **settings):
        import time

        import torch

        for _ in range(self.batches):
            self.net(torch.zeros(8, 2, 16, 16))
            self.calls += 1
            time.sleep(0.05)
        return np.ones(frame.shape[:2], np.int32), None, None


def test_cancel_stops_cellpose_between_batches_of_tiles():
    import threading
    import time

    from napari_cellsynth.core.jobs import CancelToken, Cancelled

    model, token = SlowCellpose(), CancelToken()
    job = segment(np.zeros((64, 64), np.float32), SegmentSettings("unused"), model=model, cancel=token)
    assert next(job) == (0, 1)
    progress = []
    while model.calls < 10:
        progress.append(next(job))
    assert any("tiles through the network" in value[2] for value in progress if len(value) == 3)
    started = time.perf_counter()
    token.cancel()
    with pytest.raises(Cancelled):
        while True:
            next(job)
    assert time.perf_counter() - started < 1 and model.calls < 20  # within a batch or two, not the frame's 100
    assert not [t for t in threading.enumerate() if t.name == "cellsynth-step"]
    assert not model.net._forward_pre_hooks  # the hook goes with the job
    # without a token the frame runs to its end as before, progress per frame
    model = SlowCellpose(batches=3)
    job = segment(np.zeros((2, 64, 64), np.float32), SegmentSettings("unused"), model=model)
    progress = []
    while True:
        try:
            progress.append(next(job))
        except StopIteration as stop:
            labels = stop.value
            break
    assert progress == [(0, 2), (1, 2), (2, 2)] and labels.shape == (2, 64, 64) and model.calls == 6


@pytest.mark.napari
def test_segment_widget_cancel_stops_within_a_frame(make_napari_viewer, qtbot, monkeypatch):
    import time

    from napari_cellsynth._widgets import segment as segment_widget

    model = SlowCellpose(batches=400)  # 20 s for one frame
    monkeypatch.setattr(segment_widget, "load_model", lambda name: model)
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((64, 64), np.float32), name="DAPI")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Segment")
    widget.reset_choices()
    widget.image_layer.value = layer
    widget.model_name.value = "cyto3"
    widget.start()
    qtbot.waitUntil(lambda: "tiles through the network" in widget.status.value, timeout=10_000)
    started = time.perf_counter()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=3_000)
    assert time.perf_counter() - started < 3 and model.calls < 400
    assert widget.status.value == "cancelled" and widget.run_button.enabled and widget.last_error is None
    qtbot.wait(200)
    assert [lay.name for lay in viewer.layers] == ["DAPI"]
