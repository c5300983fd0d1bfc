"""The UMAP manifold filter: the ellipse on Gaussian data, fit/predict, save/load, CLI, bad inputs."""

import json

import numpy as np
import pytest

from conftest import screenshot
from napari_cellsynth.core.outputs import FILTER_FILES, read_provenance
from napari_cellsynth.core.umap_filter import UmapGmmFilter


def blobs(seed=0, n=150, d=24):
    """Gaussian clusters in d dimensions: classes 'a' and 'b', and a 'rare' class made of a main
    cluster (80 %) and a far outlying one (20 %), as the paper's mixture of two components."""
    rng = np.random.default_rng(seed)
    parts = [("a", 0.0, n), ("b", 6.0, n), ("rare", -6.0, 4 * n // 10), ("rare", 14.0, n // 10)]
    features = np.concatenate([rng.normal(centre, 1.0, size=(size, d)) for _, centre, size in parts])
    labels = np.concatenate([[name] * size for name, _, size in parts])
    return features.astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    features, labels = blobs()
    return UmapGmmFilter("rare", n_epochs=200, random_state=0).fit(features, labels)


def test_ellipse_holds_the_level_on_gaussian_points():
    f = UmapGmmFilter("rare", confidence=0.9)
    f.features_ = np.zeros((1, 2))
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    f._set_mixture([0.3, 0.7], [[5, 5], [1, -1]], [np.eye(2), cov])
    assert f.component_ == 1 and f.level_ == 0.9
    points = np.random.default_rng(0).multivariate_normal([1, -1], cov, size=100_000)
    assert f.keep(f.mahalanobis(points)).mean() == pytest.approx(0.9, abs=0.005)
    assert f.keep(f.mahalanobis(points), level=0.5).mean() == pytest.approx(0.5, abs=0.005)
    np.testing.assert_allclose(f.mahalanobis(f.ellipse()), f.radius(0.9), rtol=1e-9)
    f.confidence = "weight"
    f._set_mixture([0.3, 0.7], [[5, 5], [1, -1]], [np.eye(2), cov])
    assert f.level_ == pytest.approx(0.7)


def test_keeps_samples_like_the_rare_class_and_drops_others(fitted):
    rng = np.random.default_rng(5)
    like_rare = rng.normal(-6.0, 1.0, size=(30, 24)).astype(np.float32)
    like_outlier = rng.normal(14.0, 1.0, size=(30, 24)).astype(np.float32)
    like_a = rng.normal(0.0, 1.0, size=(30, 24)).astype(np.float32)
    assert fitted.weights_.max() == pytest.approx(0.8, abs=0.02) and fitted.level_ == fitted.weights_.max()
    assert set(fitted.predict(np.concatenate([like_rare, like_a]))) == {1, -1}  # EllipticEnvelope's ±1
    assert (fitted.predict(like_rare) == 1).mean() > 0.5
    assert (fitted.predict(like_outlier) == 1).mean() < 0.1 and (fitted.predict(like_a) == 1).mean() < 0.1
    # higher score = more typical; decision_function = score - offset_, ≥ 0 exactly when predict keeps
    assert fitted.score_samples(like_rare).mean() > fitted.score_samples(like_a).mean()
    probe = np.concatenate([like_rare, like_a])
    np.testing.assert_allclose(fitted.decision_function(probe), fitted.score_samples(probe) - fitted.offset_)
    np.testing.assert_array_equal(fitted.predict(probe) == 1, fitted.decision_function(probe) >= 0)
    assert fitted.offset_ == pytest.approx(-fitted.radius(fitted.level_))
    assert fitted.n_features_in_ == 24


def test_follows_scikit_learn_estimator_conventions(fitted):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    unfitted = clone(fitted)
    assert unfitted.get_params() == fitted.get_params() and unfitted.get_params()["minority"] == "rare"
    assert not hasattr(unfitted, "embedding_")  # __init__ stores parameters only
    assert unfitted.set_params(n_components=3).n_components == 3
    for method in ("predict", "score_samples", "decision_function", "transform"):
        with pytest.raises(NotFittedError):
            getattr(unfitted, method)(np.zeros((2, 24), np.float32))
    features, labels = blobs()
    with pytest.raises(ValueError, match="needs the minority class"):
        UmapGmmFilter().fit(features, labels)


def test_save_load_gives_identical_decisions(fitted, tmp_path):
    probe = np.random.default_rng(6).normal(-4.0, 2.0, size=(40, 24)).astype(np.float32)
    path = fitted.save(tmp_path / "filter.npz")
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert json.loads(str(data["config"]))["minority"] == "rare"
    loaded = UmapGmmFilter.load(path)
    np.testing.assert_array_equal(loaded.predict(probe), fitted.predict(probe))
    np.testing.assert_allclose(loaded.score_samples(probe), fitted.score_samples(probe))


def test_bad_inputs_are_named(fitted):
    with pytest.raises(ValueError, match="have 10 columns but the filter was fitted on 24"):
        fitted.predict(np.zeros((3, 10), np.float32))
    features, labels = blobs(n=30)
    few = labels.copy()
    few[np.flatnonzero(few == "rare")[4:]] = "a"
    with pytest.raises(ValueError, match="has 4 real sample.*needs at least 6"):
        UmapGmmFilter("rare").fit(features, few)
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full((2, 24), np.nan, np.float32))
    with pytest.raises(ValueError, match="confidence must be"):
        UmapGmmFilter("rare", confidence=1.5).fit(features, labels)


def test_fit_reports_epochs_and_stops_on_cancel(fitted):
    from napari_cellsynth.core.jobs import Cancelled, CancelToken

    features, labels = blobs()
    seen = []
    again = UmapGmmFilter("rare", n_epochs=200, random_state=0).fit(features, labels,
                                                                    lambda *value: seen.append(value))
    np.testing.assert_array_equal(again.embedding_, fitted.embedding_)  # the hooks change nothing
    assert seen[0][0] == 0 and seen[-1] == (1000, 1000, "fitted")
    epochs = [done for done, _, message in seen if message.startswith("UMAP embedding: epoch")]
    assert len(epochs) == 201 and epochs == sorted(epochs)
    token = CancelToken()

    def cancel_at_epoch_20(done, total, message):
        if message == "UMAP embedding: epoch 20 of 200":
            token.cancel()
        assert "epoch 22 " not in message  # stopped within one epoch

    with pytest.raises(Cancelled):
        UmapGmmFilter("rare", n_epochs=200, random_state=0).fit(features, labels, cancel_at_epoch_20, token)


def test_fit_in_a_child_process_gives_the_same_filter(fitted):
    from napari_cellsynth.core.jobs import run_to_end

    features, labels = blobs()
    probe = np.random.default_rng(7).normal(-5.0, 2.0, size=(20, 24)).astype(np.float32)
    served = run_to_end(UmapGmmFilter("rare", n_epochs=200, random_state=0).fit_in_process(features, labels))
    np.testing.assert_array_equal(served.embedding_, fitted.embedding_)
    np.testing.assert_allclose(served.means_, fitted.means_)
    np.testing.assert_allclose(run_to_end(served.transform_in_process(probe)), fitted.transform(probe))
    np.testing.assert_allclose(served.transform(probe), fitted.transform(probe))
    with pytest.raises(ValueError, match="has 2 real sample"):  # errors in the child are raised here
        run_to_end(UmapGmmFilter("rare").fit_in_process(features[:5], ["rare", "rare", "a", "a", "a"]))


@pytest.fixture(scope="module")
def mixed_synthetic():
    """Stand-ins for generator output with a known answer: real unseen M cells and real G1 cells."""
    from napari_cellsynth._sample_data import load_jurkat_sample

    sample = load_jurkat_sample()
    mitotic = np.isin(sample["labels"], ["Prophase", "Metaphase", "Anaphase", "Telophase"])
    m_cells, g1_cells = sample["images"][mitotic][:30], sample["images"][sample["labels"] == "G1"][:30]
    return np.concatenate([m_cells, g1_cells]), np.array([True] * 30 + [False] * 30)


def test_cli_filter_on_real_features(classifier_bundle, jurkat_slice, mixed_synthetic, tmp_path):
    from napari_cellsynth.cli import main

    images, is_m = mixed_synthetic
    np.savez(tmp_path / "synthetic.npz", images=images)
    out = tmp_path / "filtered"
    assert main(["filter", "--classifier", str(classifier_bundle), "--real", str(jurkat_slice), "--synthetic",
                 str(tmp_path / "synthetic.npz"), "--minority", "M", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    import csv

    with open(out / "decisions.csv") as fh:
        keep = np.array([row["keep"] == "True" for row in csv.DictReader(fh)])
    assert summary["kept"] == keep.sum() and summary["synthetic"] == 60
    assert keep[is_m].mean() > keep[~is_m].mean()  # M-like samples survive more often than G1 cells
    with np.load(out / "kept.npz") as kept:
        assert len(kept["images"]) == keep.sum()
    assert sorted(p.name for p in out.iterdir()) == sorted(FILTER_FILES)  # what the widget's Export writes too
    assert len(list((out / "kept").glob("*.tif"))) == keep.sum()
    assert (out / "umap_filter.png").stat().st_size > 10_000
    reloaded = out / "again"
    assert main(["filter", "--classifier", str(classifier_bundle), "--real", str(jurkat_slice), "--synthetic",
                 str(tmp_path / "synthetic.npz"), "--minority", "M", "--load", str(out / "filter.npz"),
                 "--out", str(reloaded)]) == 0
    assert (reloaded / "decisions.csv").read_text() == (out / "decisions.csv").read_text()


def dock(viewer, name):
    """Open widget ``name`` of the manifest as the Plugins menu does; return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", name)
    widget.reset_choices()
    return widget


def filter_in_viewer(viewer, mixed_synthetic, classifier_bundle, jurkat_slice):
    """The UMAP filter opened from the Plugins menu with the synthetic layer and its inputs filled in."""
    images, _ = mixed_synthetic
    layer = viewer.add_image(images, name="synthetic")
    widget = dock(viewer, "UMAP filter")
    widget.classifier.value = str(classifier_bundle)
    widget.real_data.value = str(jurkat_slice)
    widget.synthetic_layer.value = layer
    widget.minority.value = "M"
    return viewer, layer, widget


@pytest.mark.napari
@pytest.mark.full_data  # its numbers are those of the full slice
def test_filter_widget_plots_refilters_and_exports(make_napari_viewer, qtbot, classifier_bundle, jurkat_slice,
                                                   mixed_synthetic, tmp_path, monkeypatch):
    from napari_cellsynth._widgets.umap_filter import FILTER_KEY

    monkeypatch.chdir(tmp_path)
    viewer, layer, widget = filter_in_viewer(make_napari_viewer(show=True), mixed_synthetic, classifier_bundle,
                                             jurkat_slice)
    seen = []
    widget.progress.changed.connect(lambda value: seen.append((value, widget.status.value)))
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    assert widget.last_error is None, widget.last_error
    # real progress through the stages, the UMAP fit's epochs among them (the bar no longer sits at 0)
    assert any("real crops" in text for _, text in seen) and any("UMAP embedding: epoch" in text for _, text in seen)
    fit_values = [value for value, text in seen if "UMAP embedding: epoch" in text]
    assert len(set(fit_values)) > 10 and fit_values == sorted(fit_values)
    assert widget.progress.value == widget.progress.max
    table = layer.metadata[FILTER_KEY]
    assert len(table) == 60 and {"distance", "keep", "umap_x", "umap_y"} <= set(table.columns)
    assert widget.level.value == pytest.approx(widget.result.fitted.level_, abs=0.01)
    kept_before = int(table["keep"].sum())
    widget.level.value = 0.99
    kept_wide = int(layer.metadata[FILTER_KEY]["keep"].sum())
    widget.level.value = 0.05
    kept_narrow = int(layer.metadata[FILTER_KEY]["keep"].sum())
    assert kept_narrow <= kept_before <= kept_wide
    assert len(widget.axes.collections) >= 3  # real classes and synthetic points drawn
    widget.show_sample(7)
    assert viewer.dims.current_step[0] == 7 and "synthetic 7" in widget.status.value
    widget.level.value = 0.99
    assert widget.export_kept() == [] and "choose a folder to export the kept images to" in str(widget.last_error)
    assert list(tmp_path.iterdir()) == []  # a blank folder field is not the working directory
    widget.export_folder.value = str(tmp_path / "kept")
    paths = widget.export_kept()
    assert len(paths) == kept_wide
    exported = tmp_path / "kept"
    assert sorted(p.name for p in exported.iterdir()) == sorted(FILTER_FILES)  # the files `cellsynth filter` writes
    assert json.loads((exported / "summary.json").read_text())["kept"] == kept_wide
    assert read_provenance(paths[0])["umap_filter"]["level"] == pytest.approx(0.99)
    widget.level.value = 0.05  # a narrower export to the same folder leaves no stale kept images behind
    assert len(widget.export_kept()) == kept_narrow == len(list((exported / "kept").glob("*.tif")))


@pytest.mark.napari
def test_cancel_stops_the_umap_fit(make_napari_viewer, qtbot, classifier_bundle, jurkat_slice, mixed_synthetic):
    """Cancel during the UMAP fit: the job really stops (its UMAP process too) within 3 s, Run comes back,
    and no result is added."""
    import time

    from napari_cellsynth._widgets.umap_filter import FILTER_KEY
    from napari_cellsynth.core.umap_filter import _UmapServer

    viewer, layer, widget = filter_in_viewer(make_napari_viewer(), mixed_synthetic, classifier_bundle, jurkat_slice)
    widget.start()
    assert widget.busy and not widget.run_button.enabled
    qtbot.waitUntil(lambda: "UMAP embedding: epoch" in widget.status.value, timeout=180_000)
    assert widget.progress.value > 300  # past the real crops' features, in the fit
    cancelled = time.perf_counter()
    widget.cancel()
    assert widget.status.value == "cancelling…" and not widget.cancel_button.enabled
    qtbot.waitUntil(lambda: not widget.busy, timeout=3_000)
    assert time.perf_counter() - cancelled < 3
    assert widget.run_button.enabled and widget.status.value == "cancelled"
    assert widget.last_error is None
    assert not _UmapServer._shared.alive  # the UMAP process itself was stopped, not left running
    qtbot.wait(300)
    assert widget.result is None and FILTER_KEY not in layer.metadata and not widget.level.enabled
    assert len(viewer.layers) == 1

    # again, cancelled before the first epoch: a fresh UMAP process building its neighbour graph, numba
    # compiling (30 s and more on real-sized data, which a thread could not interrupt)
    widget.start()
    qtbot.waitUntil(lambda: "neighbour graph" in widget.status.value, timeout=180_000)
    cancelled = time.perf_counter()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=3_000)
    assert time.perf_counter() - cancelled < 3 and widget.status.value == "cancelled"
    assert not _UmapServer._shared.alive
    assert widget.result is None and FILTER_KEY not in layer.metadata


@pytest.mark.napari
def test_filter_widget_asks_for_blank_fields(make_napari_viewer, qtbot, classifier_bundle, mixed_synthetic,
                                             tmp_path, monkeypatch):
    """A blank file field is unset, never the working directory (whose images it used to scan)."""
    import tifffile

    monkeypatch.chdir(tmp_path)
    tifffile.imwrite(tmp_path / "stray.tif", np.zeros((4, 3, 40, 40), np.uint16))
    viewer = make_napari_viewer()
    layer = viewer.add_image(mixed_synthetic[0], name="synthetic")
    widget = dock(viewer, "UMAP filter")
    widget.synthetic_layer.value = layer
    widget.start()
    assert not widget.busy and "choose a classifier bundle folder" in str(widget.last_error)
    widget.classifier.value = str(classifier_bundle)
    assert widget.minority.value == "M"
    widget.start()
    assert not widget.busy and "choose the file of real labelled crops" in str(widget.last_error)
    assert widget.status.value.startswith("error: choose the file of real labelled crops")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stray.tif"]


@pytest.mark.napari
def test_a_second_fit_on_another_layer_redraws_everything(make_napari_viewer, qtbot, classifier_bundle,
                                                          jurkat_slice, mixed_synthetic, tmp_path):
    """Issue 35: a second fit, on another layer, with the slider already at the new fit's level, must redraw the
    plot, the status and the new layer's decisions (the slider rounds, so it may send no signal); a 2-D layer is
    refused at once, before any fit."""
    from napari_cellsynth._widgets.umap_filter import FILTER_KEY

    viewer, first, widget = filter_in_viewer(make_napari_viewer(show=True), mixed_synthetic, classifier_bundle,
                                             jurkat_slice)
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    assert widget.last_error is None, widget.last_error
    images, _ = mixed_synthetic
    second = viewer.add_image(images[:16], name="synthetic-16")
    widget.synthetic_layer.value = second
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    assert widget.last_error is None, widget.last_error
    table = second.metadata[FILTER_KEY]
    assert len(table) == 16 and widget.result.points.shape[0] == 16
    assert widget.status.value.startswith(f"kept {int(table['keep'].sum())} of 16 at level")
    synthetic = [c for c in widget.axes.collections if str(c.get_label()).startswith("synthetic:")]
    assert len(synthetic) == 1 and len(synthetic[0].get_offsets()) == 16  # the first fit's 60 points are gone
    assert synthetic[0].get_label() == f"synthetic: {int(table['keep'].sum())} kept, {16 - int(table['keep'].sum())} dropped"
    assert len(first.metadata[FILTER_KEY]) == 60  # the first layer keeps its own decisions
    viewer.window._qt_window.resize(1400, 1000)
    viewer.dims.set_current_step(0, 0)  # the second layer's first cell, under its decisions in the plot
    screenshot(viewer, "umap-second-fit", tmp_path / "shots")
    flat = viewer.add_image(images[0, 0], name="one crop")
    widget.synthetic_layer.value = flat
    widget.start()
    assert not widget.busy and "single image" in str(widget.last_error)
