"""The plugin inside a real napari viewer (headless under Xvfb through pytest-xvfb).

Every widget is opened the way a user opens it: through the manifest, by
``viewer.window.add_plugin_dock_widget('napari-cellsynth', NAME)``, never constructed by hand.
"""

import importlib
from pathlib import Path

import numpy as np
import pytest

from napari_cellsynth._sample_data import jurkat_cells, load_jurkat_sample, mfish_metaphase
from napari_cellsynth._widgets.classify import RESULT_KEY, class_color
from napari_cellsynth.core.classify import classify_crops, classify_objects
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel

pytestmark = pytest.mark.napari


def test_manifest_is_valid_and_lists_the_contributions():
    from npe2 import PluginManager, PluginManifest

    manifest = PluginManifest.from_distribution("napari-cellsynth")
    assert manifest.name == "napari-cellsynth"
    pm = PluginManager.instance()
    pm.discover()
    widgets = [w.display_name for w in pm.get_manifest("napari-cellsynth").contributions.widgets]
    samples = [s.key for s in pm.get_manifest("napari-cellsynth").contributions.sample_data]
    assert widgets == ["Segment", "Classify", "Generate", "Generate from DAPI", "UMAP filter", "Batch"]
    assert samples == ["jurkat_cells", "mfish_metaphase"]


def test_sample_data_layers():
    [(cells, meta, kind)] = jurkat_cells()
    assert kind == "image" and cells.shape == (226, 3, 40, 40) and cells.dtype == np.uint16
    assert meta["axis_labels"] == ("cell", "channel", "y", "x")
    assert len(meta["metadata"]["labels"]) == 226
    layers = mfish_metaphase()
    assert [k for *_, k in layers] == ["image"] * 6 + ["labels"]
    assert layers[0][0].shape == (517, 645) and 23 in np.unique(layers[-1][0])


def wait_for(widget, qtbot, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


PLUGIN = "napari-cellsynth"


def manifest_widgets():
    """(display name, command id, python_name) for every widget contribution of napari.yaml."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    return [(w.display_name, w.command, commands[w.command]) for w in manifest.contributions.widgets]


def plugin_class(python_name):
    module, _, attribute = python_name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def dock(viewer, name):
    """Open widget ``name`` of the manifest as the Plugins menu does; return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.reset_choices()
    return widget


WIDGETS = manifest_widgets()


@pytest.mark.parametrize("name, command, python_name", WIDGETS, ids=[n for n, *_ in WIDGETS])
def test_every_manifest_widget_opens_through_the_plugin(make_napari_viewer, name, command, python_name):
    viewer = make_napari_viewer()
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert type(widget) is plugin_class(python_name)
    assert dock_widget.inner_widget() is widget
    viewer.add_image(np.zeros((8, 8), np.float32), name="probe")
    assert "probe" in [layer.name for layer in widget._viewer.layers]  # napari injected this viewer


@pytest.mark.parametrize("name, command, python_name", WIDGETS, ids=[n for n, *_ in WIDGETS])
def test_every_manifest_widget_opens_from_the_plugins_menu_command(make_napari_viewer, name, command, python_name):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    get_app_model().commands.execute_command(command).result()  # what Plugins → napari-cellsynth → NAME runs
    widget = viewer.window.dock_widgets[f"{name} ({PLUGIN})"]
    assert type(widget) is plugin_class(python_name)


def test_classify_a_crop_stack_in_the_viewer(make_napari_viewer, qtbot, classifier_bundle, tmp_path, monkeypatch):
    import csv

    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer(show=True)
    for data, kwargs, _ in jurkat_cells():
        layer = viewer.add_image(data, **kwargs)
    widget = dock(viewer, "Classify")
    widget.image_layer.value = layer
    widget.bundle.value = str(classifier_bundle)
    widget.start()
    assert widget.busy
    wait_for(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    table = layer.metadata[RESULT_KEY]
    expected = run_to_end(classify_crops(OnnxModel(classifier_bundle), layer.data))
    assert table["class"] == expected.predicted_names
    assert widget.progress.value == widget.progress.max == 226
    viewer.dims.set_current_step(0, 17)
    assert viewer.text_overlay.text.startswith(f"Jurkat cells crop 17: {expected.predicted_names[17]}")
    shot = viewer.screenshot(canvas_only=False)
    assert shot.shape[2] == 4 and shot[..., :3].std() > 5

    # the per-crop table in the dock: one row per crop, a row picked brings its crop into view
    model = widget.table.model()
    assert model.rowCount() == 226 and widget.result_table["class"].tolist() == expected.predicted_names
    columns = [model.headerData(k, 1) for k in range(model.columnCount())]  # 1: Qt.Horizontal
    assert columns == ["crop", "class", "confidence", "p_G1", "p_S", "p_G2", "p_M"]
    assert model.data(model.index(40, 1)) == expected.predicted_names[40]
    widget._row_chosen(40)
    assert viewer.dims.current_step[0] == 40 and "crop 40:" in viewer.text_overlay.text
    assert not widget.legend.visible  # crops are not coloured in stack mode
    # exported as CSV, never into the working directory when the field is blank
    assert widget.export_table() is None and "choose a CSV file" in str(widget.last_error)
    assert list(tmp_path.iterdir()) == []
    widget.csv_file.value = str(tmp_path / "out" / "crops.csv")
    path = widget.export_table()
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 226 and list(rows[0]) == columns
    assert [r["class"] for r in rows] == expected.predicted_names
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], expected.confidence, atol=1e-5)
    assert [p.name for p in path.parent.iterdir()] == ["crops.csv"]  # written atomically: no temporary left

    # the crop overlay, the table and the result go with their layer
    viewer.add_image(np.zeros((5, 3, 40, 40), np.uint16), name="other crops")
    viewer.layers.remove(layer)
    assert viewer.text_overlay.text == "" and not viewer.text_overlay.visible
    assert model.rowCount() == 0 and widget.result_table is None
    viewer.dims.set_current_step(0, 2)
    assert viewer.text_overlay.text == ""


def test_classify_runs_the_zoo_int8_variant_where_the_cpu_makes_it_pay(make_napari_viewer, qtbot, monkeypatch):
    """As a user's viewer runs it (precision auto): the zoo classifier's int8 weights on a CPU with int8 dot-product
    instructions, said in the status line; fp32 elsewhere, with no note."""
    from napari_cellsynth.core.precision import cpu_int8_dot

    monkeypatch.setenv("CELLSYNTH_PRECISION", "auto")
    viewer = make_napari_viewer()
    for data, kwargs, _ in jurkat_cells():
        layer = viewer.add_image(data, **kwargs)
    widget = dock(viewer, "Classify")
    widget.image_layer.value = layer
    widget.bundle.value = "zoo:classifier-jurkat4"
    widget.start()
    wait_for(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    model = OnnxModel("zoo:classifier-jurkat4", kind="classifier")
    assert model.runs_as.weights == ("int8" if cpu_int8_dot() else "fp32")
    assert layer.metadata[RESULT_KEY]["class"] == run_to_end(classify_crops(model, layer.data)).predicted_names
    assert ("int8 weights: CPU with" in widget.status.value) == (model.runs_as.weights == "int8"), widget.status.value


def cells_on_a_slide(count=16):
    """Real Jurkat cells tiled into one 3-channel image, each cell's object from its DNA channel (the slide
    the shift experiment classifies, results §1b)."""
    from napari_cellsynth.training.experiments.shift import cells_on_a_slide as slide

    image, labels, cells, _ = slide(count)
    return image, labels, cells


def test_classify_objects_writes_features_and_colours_by_class(make_napari_viewer, qtbot, classifier_bundle):
    viewer = make_napari_viewer(show=True)
    image, labels, _ = cells_on_a_slide()
    image_layer = viewer.add_image(image, name="slide")
    labels_layer = viewer.add_labels(labels, name="cells")
    widget = dock(viewer, "Classify")
    widget.image_layer.value = image_layer
    widget.labels_layer.value = labels_layer
    widget.bundle.value = str(classifier_bundle)
    widget.start()
    wait_for(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    features = labels_layer.features
    assert features["label"].tolist() == list(range(1, 17))
    assert set(features["class"]) <= {"G1", "S", "G2", "M"}
    assert np.allclose(features[["p_G1", "p_S", "p_G2", "p_M"]].sum(axis=1), 1, atol=1e-4)
    classes = ["G1", "S", "G2", "M"]
    for lab, name in zip(features["label"], features["class"]):
        colour = labels_layer.colormap.map(np.array([lab]))[0]
        expected = np.array([int(class_color(classes.index(name))[k:k + 2], 16) / 255 for k in (1, 3, 5)])
        np.testing.assert_allclose(colour[:3], expected, atol=0.01)
    assert "classes of cells" in viewer.layers
    assert "16 objects" in widget.status.value
    # a colour legend: each class of the bundle with its colour and its count
    counts = features["class"].value_counts()
    assert widget.legend.visible
    assert widget.legend_entries == [(c, class_color(k), int(counts.get(c, 0))) for k, c in enumerate(classes)]
    for k, c in enumerate(classes):
        assert f'color:{class_color(k)}">&#9632;</span> {c} ({int(counts.get(c, 0))})' in widget.legend.value
    # the per-object table, a picked row selects that object
    assert widget.table.model().rowCount() == 16 and widget.result_table["label"].tolist() == list(range(1, 17))
    widget._row_chosen(4)
    assert labels_layer.selected_label == 5
    viewer.layers.remove(labels_layer)
    assert not widget.legend.visible and widget.table.model().rowCount() == 0
    assert "classes of cells" not in viewer.layers  # the class names go with their labels layer
    assert "slide" in viewer.layers  # and nothing else does


def test_bad_input_shows_an_error_and_viewer_stays_usable(make_napari_viewer, qtbot, classifier_bundle):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((64, 64), np.float32), name="gray")
    widget = dock(viewer, "Classify")
    widget.image_layer.value = layer
    widget.bundle.value = str(classifier_bundle)
    widget.start()
    wait_for(widget, qtbot)
    assert "channel" in str(widget.last_error) and widget.status.value.startswith("error:")
    assert widget.run_button.enabled
    widget.bundle.value = str(classifier_bundle.parent)
    widget.start()
    wait_for(widget, qtbot)
    assert "card.json" in str(widget.last_error)


def test_cancel_stops_a_long_job(make_napari_viewer, qtbot, classifier_bundle):
    viewer = make_napari_viewer()
    cells = np.concatenate([load_jurkat_sample()["images"]] * 20)
    layer = viewer.add_image(cells, name="many")
    widget = dock(viewer, "Classify")
    widget.image_layer.value = layer
    widget.bundle.value = str(classifier_bundle)
    widget.batch_size.value = 1
    widget.start()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=60_000)
    widget.cancel()
    wait_for(widget, qtbot)
    assert widget.status.value == "cancelled"
    assert RESULT_KEY not in layer.metadata
    assert widget.progress.value < len(cells)


def test_object_mode_cuts_crops_as_the_training_crops_were_cut(make_napari_viewer, qtbot, classifier_bundle):
    """All 226 real sample cells tiled into one slide, objects from the DNA channel: object mode (the default
    fixed window at native scale) calls what stack mode calls on the same cells."""
    from napari_cellsynth.core.label_maps import apply_label_map

    viewer = make_napari_viewer()
    sample = load_jurkat_sample()
    image, labels, cells = cells_on_a_slide(len(sample["images"]))
    assert len(cells) == 226 and np.array_equal(cells, sample["images"])
    image_layer = viewer.add_image(image, name="slide")
    labels_layer = viewer.add_labels(labels, name="cells")
    widget = dock(viewer, "Classify")
    assert widget.object_crop.value == "fixed window, native scale" and not widget.margin.enabled
    widget.image_layer.value = image_layer
    widget.labels_layer.value = labels_layer
    widget.bundle.value = str(classifier_bundle)
    widget.start()
    wait_for(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    model = OnnxModel(classifier_bundle)
    stack = run_to_end(classify_crops(model, cells))
    objects = labels_layer.features
    assert objects["label"].tolist() == list(range(1, 227))
    agreement = np.mean(np.array(objects["class"]) == np.array(stack.predicted_names))
    assert agreement >= 0.95, agreement
    truth, classes = apply_label_map(sample["labels"], model.card.training["data"]["label_map"])
    assert classes == model.card.classes
    accuracy_stack = np.mean(stack.predicted == truth)
    accuracy_objects = np.mean(np.array([classes.index(c) for c in objects["class"]]) == truth)
    assert abs(accuracy_objects - accuracy_stack) <= 0.03, (accuracy_objects, accuracy_stack)

    # the old way stays an explicit option: each bounding box (plus the margin) resized to the bundle's size
    widget.object_crop.value = "bounding box resized"
    assert widget.margin.enabled
    widget.start()
    wait_for(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    _, resized = run_to_end(classify_objects(model, image, labels, margin=widget.margin.value, crop="resize"))
    assert labels_layer.features["class"].tolist() == resized.predicted_names


def card_only_bundle(bundle, folder):
    """A bundle folder holding only a bundle's card (enough for a widget's picker)."""
    folder.mkdir()
    (folder / "card.json").write_text((bundle / "card.json").read_text())
    return folder


def test_bundle_choices_survive_layer_changes(make_napari_viewer, classifier_bundle, tmp_path):
    viewer = make_napari_viewer()
    generate = dock(viewer, "Generate")
    umap = dock(viewer, "UMAP filter")
    # the zoo's 4-class DDPM's card: the same classes as the classifier
    generate.bundle.value = str(card_only_bundle(Path(__file__).parents[1] / "models" / "ddpm-jurkat4-full-v",
                                                 tmp_path / "ddpm"))
    generate.class_name.value = "S"
    umap.classifier.value = str(classifier_bundle)
    assert umap.minority.value == "M"
    classes = ("G1", "S", "G2", "M")

    def unchanged():
        return (tuple(generate.class_name.choices) == classes and generate.class_name.value == "S"
                and tuple(umap.minority.choices) == classes and umap.minority.value == "M")

    layer = viewer.add_image(np.zeros((8, 8), np.float32), name="new layer")
    assert umap.synthetic_layer.value is layer  # the layer pickers did follow the change
    assert unchanged()
    viewer.layers.remove(layer)
    assert umap.synthetic_layer.value is None
    assert unchanged()
    generate.reset_choices(), umap.reset_choices()
    assert unchanged()


@pytest.mark.parametrize("text", ["word " * 100, "0123456789abcdef" * 32],
                         ids=["words", "one long token"])
def test_a_long_status_line_does_not_widen_the_dock(make_napari_viewer, qtbot, text):
    viewer = make_napari_viewer(show=True)
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Classify")
    qtbot.wait(50)
    width, window = dock_widget.width(), viewer.window._qt_window.width()
    widget.status.value = f"error: {text[:500]}"
    qtbot.wait(100)
    assert len(widget.status.value) > 500
    assert dock_widget.width() <= width + 5 and viewer.window._qt_window.width() <= window + 5
    assert widget.status.native.toolTip() == widget.status.value  # the whole line stays readable


def test_job_errors_reach_napari_notifications(make_napari_viewer, qtbot, classifier_bundle):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((64, 64), np.float32), name="gray")
    widget = dock(viewer, "Classify")
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        widget.image_layer.value = layer
        widget.bundle.value = str(classifier_bundle)
        widget.start()  # fails inside the worker: one channel, the bundle needs three
        wait_for(widget, qtbot)
        widget.bundle.value = str(classifier_bundle / "missing")
        widget.start()  # fails before the worker starts
        wait_for(widget, qtbot)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    errors = [n.message for n in seen if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 2, errors
    assert "channel" in errors[0] and "choose a classifier bundle folder" in errors[1]
    assert widget.status.value.startswith("error: choose a classifier bundle folder")


def test_blank_fields_are_asked_for_never_the_working_directory(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """An empty folder or file field reads as '.', the launch directory: every widget refuses it instead, with
    a status line and a notification that ask for it, and nothing is read from or written to that directory."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_cellsynth._widgets.generate import PROVENANCE_KEY
    from napari_cellsynth._widgets.segment import CUSTOM

    monkeypatch.chdir(tmp_path)
    (tmp_path / "card.json").write_text("{}")  # a stray bundle card in the working directory is not picked up
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((2, 3, 40, 40), np.float32), name="crops")
    labels = viewer.add_labels(np.zeros((40, 40), np.int32), name="objects")
    seen = []
    notification_manager.notification_ready.connect(seen.append)

    def refused(widget, action, asks):
        seen.clear()
        result = action()
        assert not widget.busy and asks in str(widget.last_error), (asks, widget.last_error)
        assert widget.status.value.startswith(f"error: {asks}")
        assert [n.severity for n in seen] == [NotificationSeverity.ERROR] and asks in seen[0].message
        return result

    try:
        segment = dock(viewer, "Segment")
        segment.image_layer.value = image
        assert segment.model_name.value == "zoo:cellpose-chromosomes"  # the zoo's model first: no download
        segment.model_name.value = CUSTOM
        refused(segment, segment.start, "choose a Cellpose model file, or a built-in model")
        refused(segment, segment.estimate_button.native.click, "choose a Cellpose model file")

        classify = dock(viewer, "Classify")
        classify.image_layer.value = image
        refused(classify, classify.start, "choose a classifier bundle folder")

        generate = dock(viewer, "Generate")
        refused(generate, generate.start, "choose a DDPM or GAN bundle folder")
        generated = viewer.add_image(np.zeros((2, 3, 8, 8), np.float32), name="generated",
                                     metadata={PROVENANCE_KEY: {"class": "M", "seed": 0}})
        viewer.layers.selection.active = generated
        assert refused(generate, generate.save_selected, "choose a folder to save the images to") == []

        translate = dock(viewer, "Generate from DAPI")
        translate.dapi_layer.value, translate.labels_layer.value = image, labels
        refused(translate, translate.start, "choose a BBDM or CycleGAN bundle folder")
        fish = viewer.add_image(np.zeros((2, 5, 8, 8), np.float32), name="synthetic FISH",
                                metadata={"cellsynth_provenance": {"class": "chr1", "seed": 0}})
        viewer.layers.selection.active = fish
        assert refused(translate, translate.save_selected, "choose a folder to save the crops to") == []
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json"]  # nothing written where napari started


def test_two_tall_widgets_docked_together_scroll_instead_of_growing_the_window(make_napari_viewer, qtbot):
    """Issue 35: Generate and UMAP filter docked together grew the window to 1,327 px on a 1,000 px screen."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1200, 700)
    qtbot.wait(50)
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in ("Generate", "UMAP filter")]
    qtbot.wait(200)
    assert window.height() <= 700 + 5
    for dock_widget, widget in docks:
        assert isinstance(widget.native, QScrollArea) and dock_widget.height() <= 700
        # everything stays reachable: the scroll area holds the whole widget
        assert widget.native.widget().sizeHint().height() > 0


@pytest.mark.parametrize("name", ["Classify", "Batch", "Segment"])
def test_opening_a_widget_that_draws_labels_compiles_their_colour_mapping_off_the_main_thread(make_napari_viewer,
                                                                                              monkeypatch, name):
    """The first labels drawn with per-class colours stalled the viewer while napari compiled its colour mapping
    (issue 35: 2.4 s on the first Classify).  Opening the widget maps labels of every common integer type through
    both label colormaps in a background thread, once per process."""
    import threading

    from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap

    from napari_cellsynth._widgets import colour_warmup

    seen = []
    for colormap in (DirectLabelColormap, CyclicLabelColormap):
        original = colormap._data_to_texture

        def recorded(self, values, original=original, kind=colormap.__name__):
            seen.append((kind, np.asarray(values).dtype.name, threading.current_thread().name))
            return original(self, values)

        monkeypatch.setattr(colormap, "_data_to_texture", recorded)
    monkeypatch.setattr(colour_warmup, "_thread", None)  # as in a new napari session
    viewer = make_napari_viewer()
    dock(viewer, name)
    thread = colour_warmup.warm_colour_mapping()  # the one that opening the widget started
    thread.join(timeout=300)
    assert not thread.is_alive() and thread is not threading.main_thread()
    wanted = {(kind, np.dtype(t).name) for kind in ("DirectLabelColormap", "CyclicLabelColormap")
              for t in colour_warmup.LABEL_DTYPES}
    assert {(kind, dtype) for kind, dtype, _ in seen} == wanted
    assert {who for *_, who in seen} == {"cellsynth-colour-warmup"}


STALL_PROBE = """
import json, os, sys, threading, time, traceback
import numpy as np
import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

with np.load(sys.argv[1]) as saved:
    image, labels = saved["image"], saved["labels"]
viewer = napari.Viewer(show=True)
image_layer, labels_layer = viewer.add_image(image, name="slide"), viewer.add_labels(labels, name="cells")
_, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Classify")  # as the Plugins menu opens it
widget.reset_choices()
widget.image_layer.value, widget.labels_layer.value = image_layer, labels_layer
widget.bundle.value = sys.argv[2]
app, ticks, state = QApplication.instance(), [], {}
probe = QTimer()
cpu = {}  # the main thread's own CPU time at each tick: what a stall costs it, whatever else runs on the machine


def tick():
    ticks.append(time.perf_counter())
    cpu[ticks[-1]] = time.thread_time()


probe.timeout.connect(tick)
probe.start(10)  # a tick every 10 ms while the main thread is free: a gap between ticks is a stall
samples, main = [], threading.main_thread().ident
# the renderer's first draw of new layers: OpenGL calls (Mesa compiles shaders), vispy building their GLSL and
# rendering the text's glyphs
RENDERER = ("/OpenGL/", "/vispy/gloo/", "/vispy/visuals/shaders/", "/vispy/visuals/text/")


def watch():  # every 20 ms of a stall, where the main thread is: in the renderer or elsewhere (Python)
    while "measured" not in state:
        time.sleep(0.02)
        if "clicked" in state and ticks and time.perf_counter() - ticks[-1] > 0.05:
            stack = traceback.extract_stack(sys._current_frames()[main])
            samples.append((ticks[-1], any(part in f.filename for f in stack for part in RENDERER)))


sampler = threading.Thread(target=watch, daemon=True)
sampler.start()


def click():
    state["clicked"] = time.perf_counter()
    tick()  # so that the click's own time on the main thread counts as a gap
    cpu[state["clicked"]] = time.thread_time()
    widget.start()  # the first Classify of this napari session, with its first labels drawn in class colours


def check():
    now = time.perf_counter()
    if widget.busy:
        state.pop("done", None)
    else:
        state.setdefault("done", now)
    if "done" not in state or now - state["done"] < 1.5:  # running, or less than 1.5 s of drawing after it
        QTimer.singleShot(20, check)
        return
    state["measured"] = True  # the sampling thread stops before anything is torn down
    sampler.join(timeout=5)
    after = [t for t in ticks if t >= state["clicked"]]
    stalls = []
    for start, end in zip(after[:-1], after[1:]):
        inside = [in_renderer for at, in_renderer in samples if at == start]
        renderer = float(np.mean(inside)) if inside else 0.0
        used = cpu[end] - cpu[start]  # the main thread's CPU seconds in the gap: not the time it waited for a core
        stalls.append({"seconds": end - start, "cpu": used, "in_renderer": renderer, "python": used * (1 - renderer)})
    print(json.dumps({"max_gap": max(x["seconds"] for x in stalls), "ticks": len(stalls),
                      "max_python": max(x["python"] for x in stalls),
                      "worst": max(stalls, key=lambda x: x["python"]), "error": str(widget.last_error or ""),
                      "classes_layer": "classes of cells" in viewer.layers}), flush=True)
    os._exit(0)  # measured and printed: no Qt, OpenGL or thread teardown after it (one such teardown crashed)


QTimer.singleShot(2000, click)  # the window drawn and the widget's own start-up done
QTimer.singleShot(2100, check)
app.exec_()
"""


@pytest.mark.napari
def test_the_first_classify_of_a_session_never_stalls_the_viewer_beyond_half_a_second(classifier_bundle, qtbot,
                                                                                      tmp_path):
    """Issue 35: a timer on the Qt loop of a new napari session ticks every 10 ms while the first Classify runs and
    its labels are drawn in class colours; a gap between ticks is a main-thread stall.  It was 2.4 s while napari
    compiled its colour mapping on the first draw (now warmed in a thread when the widget opens).

    A thread samples where the main thread is during each stall.  What is left is the renderer: under Xvfb, Mesa's
    software OpenGL compiles the new layers' shaders on their first draw, once per machine (Mesa keeps them in
    ``$XDG_CACHE_HOME``), and vispy builds their GLSL and renders the text's glyphs.  Each stall is measured in the
    main thread's own CPU seconds, so that other work on the machine (the other test worker) does not lengthen it:
    wall-clock gaps failed CI at 0.74 s outside OpenGL beside the other worker (0.19-0.21 s on an idle machine here).
    Measured here on 2 cores: the worst stall 1.05-1.40 s of wall clock idle and 1.24-2.34 s beside two busy
    processes, 90-94 % of it in the renderer; outside it, 0.07-0.11 s of CPU idle and 0.07-0.13 s loaded.  So the
    bound is on the CPU time outside the renderer, which is the plugin's and napari's Python: under 0.5 s."""
    from conftest import child_json

    image, labels, _ = cells_on_a_slide()
    np.savez(tmp_path / "slide.npz", image=image, labels=labels)
    probe = child_json(STALL_PROBE, tmp_path / "slide.npz", classifier_bundle)
    assert probe["error"] == "" and probe["classes_layer"] and probe["ticks"] > 5, probe
    assert probe["max_python"] < 0.5, probe
