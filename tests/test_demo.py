"""The README's main job as its command (headless): every step from the zoo, every picture in the report; then
the same report folder in napari, as the command opens it on a desktop."""

import json
import subprocess
import sys

import pytest

from conftest import JURKAT, SHARED_DATA, require


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    require(JURKAT)
    require(SHARED_DATA / "mfish")
    out = tmp_path_factory.mktemp("demo") / "report"
    done = subprocess.run([sys.executable, "-m", "napari_cellsynth.training.demo", "--headless", "--count", "32",
                           "--per-class", "60", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_demo_runs_the_whole_product_from_the_zoo_and_reports_it(demo_report):
    out = demo_report
    for name in ("report.html", "results.csv", "metrics.json", "confusion.png", "gallery.png", "real_vs_generated.png",
                 "umap_filter/umap_filter.png", "umap_filter/decisions.csv", "segmentation.png", "chromosomes.csv",
                 "chromosome_labels.tif", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cells"]["n"] == 226 and summary["cells"]["macro_f1"] > 0.6  # sample cells, never trained on
    synthetic = summary["synthetic"]
    assert synthetic["kept"] + synthetic["dropped"] == 32 and synthetic["class"] == "M"
    chromosomes = summary["chromosomes"]
    assert chromosomes["ap50"] > 0.3 and chromosomes["objects"] > 20  # 46 chromosomes in the karyotype
    assert chromosomes["identity_accuracy"] > 3 / 24  # far above chance among 24 classes
    page = (out / "report.html").read_text()
    # the cellsynth study's verdict and table (docs/results.md §13), with the command that regenerates them
    assert "cellsynth study --data" in page and "<td>copies</td>" in page and "<td>balanced</td>" in page
    assert "Generated cells" in page or "Use generated" in page
    assert "kept by the filter" not in page  # §7's older table (an ε generator) is no longer pasted
    for picture in ("confusion.png", "gallery.png", "real_vs_generated.png", "umap_filter/umap_filter.png",
                    "segmentation.png"):
        assert f'src="{picture}"' in page, picture


@pytest.mark.napari
def test_demo_report_opens_in_napari_with_every_layer(make_napari_viewer, qtbot, demo_report):
    from napari_cellsynth.training.demo import show_in_viewer

    viewer = make_napari_viewer()
    widget = show_in_viewer(viewer, demo_report, "zoo:classifier-jurkat4")
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None and widget.table.model().rowCount() == 226
    names = {layer.name for layer in viewer.layers}
    assert {"Jurkat cells", "DAPI", "Cellpose chromosomes", "generated, kept by the UMAP filter"} <= names
    assert viewer.layers["Cellpose chromosomes"].data.max() > 20


def test_demo_names_a_missing_zoo_bundle_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "napari_cellsynth.training.demo", "--headless", "--classifier",
                           "zoo:no-such-model", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "not in the model zoo" in done.stderr and "Traceback" not in done.stderr
