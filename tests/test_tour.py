"""The README's tour in one viewer, as a user goes through it (issue 12): the plugin's sample data from
*File → Open Sample*, every widget from the Plugins menu (``add_plugin_dock_widget``), the trained models
of the model zoo picked from the widgets' drop-downs, and a screenshot of each step.

``CELLSYNTH_SCREENSHOTS=docs/figures`` also writes the screenshots the README shows
(``docs/figures/napari-*.png``), so that they are refreshed whenever a widget changes:

    CELLSYNTH_SCREENSHOTS=docs/figures .venv/bin/python -m pytest tests/test_tour.py
"""

from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, screenshot

PLUGIN = "napari-cellsynth"
ZOO = REPO / "models"


def only(viewer, *names: str) -> None:
    """Show these layers (the tour's current step) and frame them."""
    for layer in viewer.layers:
        layer.visible = layer.name in names
    viewer.reset_view()


def dock(viewer, name: str, previous=None):
    """Open widget ``name`` from the Plugins menu, closing the previous step's dock first (as a user would)."""
    if previous is not None:
        viewer.window.remove_dock_widget(previous)
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.reset_choices()
    return dock_widget, widget


def run(widget, qtbot, timeout=300_000) -> None:
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    assert widget.last_error is None, widget.last_error


@pytest.mark.napari
def test_the_readme_tour_in_one_viewer(make_napari_viewer, qtbot, jurkat_slice, tmp_path):
    from napari_cellsynth._widgets.segment import CUSTOM
    from napari_cellsynth.core.outputs import FILTER_FILES

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    shots = tmp_path / "shots"

    # 1. sample data, from File → Open Sample
    viewer.open_sample(PLUGIN, "mfish_metaphase")
    viewer.open_sample(PLUGIN, "jurkat_cells")
    assert {"DAPI", "Jurkat cells"} <= {layer.name for layer in viewer.layers}

    # 2. segment the metaphase's chromosomes with the Cellpose chromosome model (slide V26: held out of its training)
    opened, segment = dock(viewer, "Segment")
    segment.image_layer.value = viewer.layers["DAPI"]
    assert segment.model_name.value == "zoo:cellpose-chromosomes" and CUSTOM in segment.model_name.choices
    run(segment, qtbot)
    chromosomes = viewer.layers["DAPI objects"]
    assert chromosomes.data.max() > 20  # 46 chromosomes in this metaphase, some touching
    assert segment.status.value == f"{len(np.unique(chromosomes.data)) - 1} objects"
    only(viewer, "DAPI", "DAPI objects")
    screenshot(viewer, "1-segment", shots)
    for name in [layer.name for layer in viewer.layers if layer.name != "Jurkat cells"]:
        viewer.layers.remove(name)  # the metaphase is done with

    # 3. classify the sample cells (a stack of crops) with a classifier bundle
    opened, classify = dock(viewer, "Classify", opened)
    cells = viewer.layers["Jurkat cells"]
    classify.image_layer.value = cells
    classify.zoo.value = "zoo:classifier-jurkat4"
    assert Path(classify.bundle.value) == ZOO / "classifier-jurkat4"
    run(classify, qtbot)
    assert classify.table.model().rowCount() == len(cells.data) == 226
    only(viewer, "Jurkat cells")
    viewer.dims.set_current_step(0, 17)
    assert viewer.dims.axis_labels[0] == "cell" and viewer.text_overlay.text.startswith("Jurkat cells crop 17:")
    screenshot(viewer, "2-classify", shots)

    # 4. generate rare M cells with the zoo's DDPM (DPM-Solver++(2M), 20 steps)
    opened, generate = dock(viewer, "Generate", opened)
    assert "zoo:classifier-jurkat4" not in generate.zoo.choices  # only generators
    generate.zoo.value = "zoo:ddpm-jurkat4-cut10-v"
    generate.class_name.value, generate.count.value = "M", 24
    run(generate, qtbot)
    generated = viewer.layers[-1]
    assert generated.data.shape == (24, 3, 40, 40) and generated.name.startswith("generated M")
    only(viewer, generated.name)
    assert not viewer.text_overlay.visible  # the crop overlay belongs to the hidden Jurkat cells
    screenshot(viewer, "3-generate", shots)

    # 5. keep the realistic ones: the UMAP filter on the classifier's features, fitted on real labelled cells
    opened, umap = dock(viewer, "UMAP filter", opened)
    umap.zoo.value = "zoo:classifier-jurkat4"
    umap.real_data.value = str(jurkat_slice)
    umap.synthetic_layer.value = generated
    umap.minority.value = "M"
    run(umap, qtbot)
    assert len(generated.metadata["cellsynth_filter"]) == 24
    screenshot(viewer, "4-umap-filter", shots)

    # 6. save what was kept: the files `cellsynth filter` writes
    umap.export_folder.value = str(tmp_path / "kept")
    kept = umap.export_kept()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == sorted(FILTER_FILES)
    assert len(kept) == int(generated.metadata["cellsynth_filter"]["keep"].sum())
    assert sorted(p.name for p in shots.iterdir()) == [f"napari-{n}.png" for n in
                                                       ("1-segment", "2-classify", "3-generate", "4-umap-filter")]
