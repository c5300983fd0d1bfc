"""Issue 20 in napari, as a user goes through it: an unannotated ``EX`` metaphase (slide A31, which no model
trained on) opened from its TIFFs, its chromosomes segmented with the zoo's Cellpose model, synthetic FISH
chromosomes generated from its DAPI plane, and every chromosome classified normal or translocation by the
zoo's translocation classifier; each widget opened from the Plugins menu.

The BBDM is ``$CELLSYNTH_BBDM`` when set, else the tests' small one (no BBDM is in the zoo yet: none beats
the baselines of docs/results.md §8).  ``CELLSYNTH_SCREENSHOTS=docs/figures`` writes the README's
``napari-5-translocations.png``.
"""

import os

import numpy as np
import pytest
from conftest import SHARED_DATA, require, screenshot

PLUGIN = "napari-cellsynth"
FOLDER, METAPHASE = "A31__EX", "A3101EX"


def dock(viewer, name: str, previous=None):
    """Open widget ``name`` from the Plugins menu, closing the previous step's dock first (as a user would)."""
    if previous is not None:
        viewer.window.remove_dock_widget(previous.native.parent())
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.reset_choices()
    return widget


def run(widget, qtbot, timeout=300_000) -> None:
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    assert widget.last_error is None, widget.last_error


@pytest.mark.napari
def test_an_unannotated_metaphase_segmented_synthesised_and_classified(make_napari_viewer, qtbot, bbdm_bundle,
                                                                       tmp_path):
    import tifffile

    from napari_cellsynth.core.bundle import read_card
    from napari_cellsynth.training.data.mfish import FLUOROPHORES

    root = require(SHARED_DATA / "mfish") / FOLDER
    # the six planes as one stack, in the order the classifier's card names them (DAPI, then the probe set's
    # fluorophores), as Fiji's Images to Stack would make it
    letters = ["D", *FLUOROPHORES[METAPHASE[0]]]
    stack_path = tmp_path / f"{METAPHASE}_planes.tif"
    tifffile.imwrite(stack_path, np.stack([tifffile.imread(root / f"{METAPHASE}{c}.tif") for c in letters]))

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    [dapi] = viewer.open(root / f"{METAPHASE}D.tif", plugin="napari")
    [planes] = viewer.open(stack_path, plugin="napari", name=f"{METAPHASE} planes", visible=False)
    assert planes.data.shape[0] == 6

    segment = dock(viewer, "Segment")
    segment.image_layer.value = dapi
    assert segment.model_name.value == "zoo:cellpose-chromosomes"
    run(segment, qtbot)
    objects = viewer.layers[f"{dapi.name} objects"]
    found = len(np.unique(objects.data)) - 1
    assert found > 20  # a human metaphase; EX karyotypes are rearranged, not small

    translate = dock(viewer, "Generate from DAPI", segment)
    translate.dapi_layer.value, translate.labels_layer.value = dapi, objects
    translate.bundle.value = os.environ.get("CELLSYNTH_BBDM", str(bbdm_bundle))
    translate.steps.value = 20
    run(translate, qtbot)
    synthetic = viewer.layers[-1]
    assert synthetic.name.startswith("synthetic FISH") and synthetic.name.endswith("composite")
    assert synthetic.data.shape[:2] == dapi.data.shape

    classify = dock(viewer, "Classify", translate)
    classify.image_layer.value, classify.labels_layer.value = planes, objects
    classify.zoo.value = "zoo:classifier-translocations"
    card = read_card("zoo:classifier-translocations")
    assert card.channels[0] == "DAPI" and len(card.channels) == 6 and card.classes == ["normal", "translocation"]
    run(classify, qtbot)
    table = classify.result_table
    assert len(table) == found and set(table["class"]) <= {"normal", "translocation"}
    called = int((table["class"] == "translocation").sum())
    assert 0 < called < found / 3  # an extreme karyotype has rearranged chromosomes, most are still whole
    assert np.allclose(table[["p_normal", "p_translocation"]].sum(axis=1), 1, atol=1e-4)
    assert classify.status.value.startswith(f"{found} objects: ")
    assert f"classes of {objects.name}" in viewer.layers

    for layer in viewer.layers:
        layer.visible = layer.name in (dapi.name, objects.name, f"classes of {objects.name}", synthetic.name)
    synthetic.opacity = 0.6
    viewer.reset_view()
    rows, cols = np.nonzero(objects.data)
    viewer.camera.center = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    viewer.camera.zoom *= 0.9 * min(dapi.data.shape[0] / np.ptp(rows), dapi.data.shape[1] / np.ptp(cols))
    screenshot(viewer, "5-translocations", tmp_path / "shots")
