"""The model zoo: registry look-up by name, sha256 checks (local and downloaded), and every shipped bundle."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import screenshot
from napari_cellsynth.core.bundle import BundleError, read_card
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.zoo import SHIPPED_REGISTRY, default_location, open_zoo, read_registry, resolve
from napari_cellsynth.core.zoo_publish import add_to_registry

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture()
def zoo(classifier_bundle, tmp_path):
    folder = tmp_path / "zoo"
    shutil.copytree(classifier_bundle, folder / "clf")
    add_to_registry(folder / "clf", "a test classifier", {"macro-F1": 0.5}, "docs/results.md §2")
    return folder


def test_registry_lists_and_resolves_by_name(zoo, monkeypatch):
    entry = read_registry(str(zoo))["clf"]
    assert entry.kind == "classifier" and set(entry.sha256) == {"card.json", "model.onnx", "arrays.npz"}
    assert resolve("zoo:clf", str(zoo)) == zoo / "clf"
    assert resolve(zoo / "clf") == zoo / "clf"  # a plain path stays a path
    monkeypatch.setenv("CELLSYNTH_ZOO", str(zoo))
    assert default_location() == str(zoo)
    assert OnnxModel("zoo:clf", kind="classifier").card.kind == "classifier"
    assert read_card("zoo:clf").name == read_card(zoo / "clf").name


def test_missing_bundle_and_sha256_mismatch_are_refused(zoo, tmp_path):
    with pytest.raises(BundleError, match="'nope' is not in the model zoo.*available: clf"):
        resolve("zoo:nope", str(zoo))
    with open(zoo / "clf" / "model.onnx", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(BundleError, match="does not match the registry's sha256"):
        resolve("zoo:clf", str(zoo))
    with pytest.raises(BundleError, match="no model zoo registry"):
        read_registry(str(tmp_path / "empty"))


def test_remote_registry_downloads_verifies_and_refuses_a_corrupt_file(zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSYNTH_CACHE", str(tmp_path / "cache"))
    url = zoo.as_uri()  # file:// takes the same download path as https://
    folder = resolve("zoo:clf", url)
    assert folder == tmp_path / "cache" / "zoo" / "clf" and (folder / "model.onnx").is_file()
    assert OnnxModel(folder).card.kind == "classifier"
    registry = json.loads((zoo / "registry.json").read_text())
    registry["bundles"]["clf"]["sha256"]["model.onnx"] = "0" * 64
    (zoo / "registry.json").write_text(json.dumps(registry))
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(BundleError, match="model.onnx: the downloaded file does not match its sha256"):
        resolve("zoo:clf", url)
    assert not (tmp_path / "cache" / "zoo" / "clf").exists()  # nothing half-downloaded is left behind
    assert not list((tmp_path / "cache" / "zoo").iterdir())


def test_the_shipped_registry_lists_exactly_the_checkouts_models_with_sizes():
    """The registry in the package is the one that an installed user downloads by: it must list every bundle
    folder of models/ with each file's sha256 and size, and nothing else (scripts/zoo_add.py keeps it so)."""
    data = json.loads(SHIPPED_REGISTRY.read_text())
    assert "{version}" in data["base_url"] and data["base_url"].startswith("https://")
    folders = {p.name for p in MODELS.iterdir() if p.is_dir()}
    assert set(data["bundles"]) == folders
    for name, entry in data["bundles"].items():
        files = {p.name: p for p in (MODELS / entry["path"]).iterdir() if p.is_file()}
        assert set(entry["sha256"]) == set(files) == set(entry["sizes"]), name
        for file, path in files.items():
            assert entry["sizes"][file] == path.stat().st_size, (name, file)
    assert default_location() == str(SHIPPED_REGISTRY) or "CELLSYNTH_ZOO" in __import__("os").environ
    assert open_zoo(str(SHIPPED_REGISTRY)).local == MODELS  # a checkout reads its own files, offline


def test_every_shipped_zoo_bundle_loads_and_passes_its_card_checks():
    registry = read_registry(str(SHIPPED_REGISTRY))
    assert registry, "the zoo in models/ lists no bundle"
    total = 0
    for name, entry in registry.items():
        size = sum(p.stat().st_size for p in (MODELS / entry.path).iterdir())
        assert size <= 10 * 2**20, f"{name}: {size / 2**20:.1f} MB"
        total += size
        assert entry.results.startswith("docs/results.md")
        if entry.kind == "cellpose":  # weights for Cellpose's own network: sha256, card, then loaded into it
            from napari_cellsynth.core.segment import load_model

            assert load_model(f"zoo:{name}").net.nbase[0] == 2
            continue
        model = OnnxModel(f"zoo:{name}", kind=entry.kind)  # sha256, card and graph checks
        if entry.kind == "classifier":
            assert model.card.training["test_metrics"]["macro_f1"] > 0.5, name
        if entry.kind == "ddpm":
            section = model.card.ddpm
            assert section.schedule.prediction in ("epsilon", "v") and section.x0_bounds is not None
        assert entry.results.startswith("docs/results.md")
    assert total <= 60 * 2**20


def test_zoo_list_as_a_command():
    cellsynth = Path(sys.executable).with_name("cellsynth")
    done = subprocess.run([str(cellsynth), "zoo", "list", "--verify"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in read_registry(str(SHIPPED_REGISTRY)):
        assert f"zoo:{name}" in done.stdout
    assert "sha256 ok" in done.stdout
    bad = subprocess.run([str(cellsynth), "info", "zoo:no-such-bundle"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "not in the model zoo" in bad.stderr and "Traceback" not in bad.stderr


def test_zoo_ddpm_generates_clean_cells_quickly_from_the_registry():
    """The zoo's cut10 generator, DPM-Solver++(2M) at 20 steps: images in the data's range."""
    from napari_cellsynth.core.generate import GenerationSettings, generate
    from napari_cellsynth.core.jobs import run_to_end

    model = OnnxModel("zoo:ddpm-jurkat4-cut10-v", kind="ddpm")
    out = run_to_end(generate(model, GenerationSettings("M", 4, "dpm_solver_pp_2m", 20, seed=0, batch_size=4)))
    assert out.images.shape == (4, 3, 40, 40) and np.isfinite(out.images).all()
    assert out.provenance["spacing"] == "trailing" and out.provenance["first_timestep"] == 999


def test_zoo_classifiers_rescore_to_their_cards_as_a_command(tmp_path):
    """The re-scoring command of results §10: each zoo classifier on its own recorded test split, through ONNX
    Runtime, gives the macro-F1 its card shipped with (measured in torch at training time)."""
    from conftest import JURKAT, require

    require(JURKAT)
    for name in ("classifier-jurkat4", "classifier-jurkat7"):
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, "-m", "napari_cellsynth.training.experiments.rescore", f"zoo:{name}",
                               "--tolerance", "0.01", "--out", str(out)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(out.read_text())
        assert result["test_crops"] > 1300 and abs(result["macro_f1"] - result["card_macro_f1"]) <= 0.01


def _cellsynth(*args, env):
    cellsynth = Path(sys.executable).with_name("cellsynth")
    return subprocess.run([str(cellsynth), *args], capture_output=True, text=True, timeout=300, env=env)


def test_zoo_pull_from_a_loopback_server_fills_the_cache(tmp_path):
    """`cellsynth zoo pull` over HTTP fills the cache and `zoo list` says so; a registry URL that does not answer
    gives one line naming the fix.  (An installed wheel's offline use of the cache: test_install.)"""
    import os

    from zoo_server import closed_port_url, serve_zoo

    env = {**os.environ, "CELLSYNTH_CACHE": str(tmp_path / "cache")}
    with serve_zoo() as (url, handler):
        env["CELLSYNTH_ZOO"] = url
        done = _cellsynth("zoo", "pull", "zoo:classifier-jurkat4", "--quiet", env=env)
        assert done.returncode == 0, done.stderr
        listed = _cellsynth("zoo", "list", env=env)
        assert "/classifier-jurkat4/model.onnx" in handler.requests
    folder = tmp_path / "cache" / "zoo" / "classifier-jurkat4"
    assert {p.name for p in folder.iterdir()} == {p.name for p in (MODELS / "classifier-jurkat4").iterdir()}
    assert "/classifier-jurkat4/model.int8.onnx" in handler.requests  # its int8 variant comes along
    assert (folder / "model.onnx").read_bytes() == (MODELS / "classifier-jurkat4" / "model.onnx").read_bytes()
    assert "[cached]" in next(x for x in listed.stdout.splitlines() if "zoo:classifier-jurkat4 " in x)
    assert "[not downloaded" in next(x for x in listed.stdout.splitlines() if "zoo:classifier-jurkat7 " in x)
    dead = _cellsynth("zoo", "list", env={**env, "CELLSYNTH_ZOO": closed_port_url()})
    assert dead.returncode == 2 and "Traceback" not in dead.stderr and len(dead.stderr.strip().splitlines()) == 1
    assert "no model zoo registry" in dead.stderr and "CELLSYNTH_ZOO" in dead.stderr


def test_truncated_or_broken_off_downloads_are_refused_and_leave_nothing(tmp_path, monkeypatch):
    from zoo_server import closed_port_url, serve_zoo

    monkeypatch.setenv("CELLSYNTH_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "zoo"
    path = "/classifier-jurkat4/model.onnx"
    for how in ("short", "broken"):
        with serve_zoo(**{how: [path]}) as (url, _):
            with pytest.raises(BundleError, match="truncated|broke off") as err:
                resolve("zoo:classifier-jurkat4", url)
        assert "\n" not in str(err.value) and "zoo pull classifier-jurkat4" in str(err.value)
        assert not cache.exists() or not list(cache.iterdir()), list(cache.iterdir())
    dead = closed_port_url()
    monkeypatch.setenv("CELLSYNTH_ZOO_URL", dead)
    zoo = open_zoo(str(SHIPPED_REGISTRY))
    assert zoo.url == dead
    with pytest.raises(BundleError, match="cannot reach .*zoo pull classifier-jurkat4.*CELLSYNTH_ZOO"):
        from napari_cellsynth.core.jobs import run_to_end

        run_to_end(zoo.pull("classifier-jurkat4"))


@pytest.mark.napari
def test_typed_zoo_names_and_zoo_pickers_work_in_the_widgets(make_napari_viewer, qtbot, tmp_path):
    """Issue 35: a typed zoo:NAME works in Classify (it was refused as a missing folder), Generate and the UMAP
    filter; Batch offers the zoo's Cellpose models, classifiers and generators, and a pick fills its field."""
    from napari_cellsynth._sample_data import load_jurkat_sample

    viewer = make_napari_viewer()
    layer = viewer.add_image(load_jurkat_sample()["images"][:8], name="cells")

    def dock(name):
        return viewer.window.add_plugin_dock_widget("napari-cellsynth", name)[1]

    classify = dock("Classify")
    classify.image_layer.value = layer
    classify.bundle.line_edit.value = "zoo:classifier-jurkat4"  # typed into the field, as a user types it
    classify.start()
    qtbot.waitUntil(lambda: not classify.busy, timeout=60_000)
    assert classify.last_error is None, classify.last_error
    assert classify.status.value.startswith("8 crops")
    generate = dock("Generate")
    generate.bundle.line_edit.value = "zoo:ddpm-jurkat4-cut10-v"
    assert generate.class_name.value == "M"  # the rarest class of its card (34 training cells)
    umap = dock("UMAP filter")
    umap.classifier.line_edit.value = "zoo:classifier-jurkat4"
    assert list(umap.minority.choices) == ["G1", "S", "G2", "M"]
    batch = dock("Batch")
    pickers = {w.label: w for w in batch if w.label.endswith("from the zoo")}
    assert "zoo:cellpose-chromosomes" in pickers["Cellpose from the zoo"].choices
    assert "zoo:ddpm-jurkat4-cut10-v" in pickers["generator from the zoo"].choices
    pickers["Cellpose from the zoo"].value = "zoo:cellpose-chromosomes"
    assert Path(str(batch.segment_model.value)) == MODELS / "cellpose-chromosomes"
    pickers["classifier from the zoo"].value = "zoo:classifier-translocations"
    assert Path(str(batch.classifier.value)) == MODELS / "classifier-translocations"
    screenshot(viewer, "zoo-names-in-widgets", tmp_path / "shots")


def test_a_registry_that_names_paths_out_of_the_cache_is_refused(zoo):
    registry = json.loads((zoo / "registry.json").read_text())
    registry["bundles"]["clf"]["sha256"]["../../escape.onnx"] = "0" * 64
    (zoo / "registry.json").write_text(json.dumps(registry))
    with pytest.raises(BundleError, match="not a plain name"):
        read_registry(str(zoo))


@pytest.mark.napari
def test_picking_a_bundle_not_downloaded_fetches_it_in_the_background(make_napari_viewer, qtbot, tmp_path,
                                                                      monkeypatch):
    """A zoo served on 127.0.0.1 with nothing cached: Classify's drop-down marks the bundle for download; picking
    it downloads it in a worker into the cache and then fills the folder field."""
    from zoo_server import serve_zoo

    monkeypatch.setenv("CELLSYNTH_CACHE", str(tmp_path / "cache"))
    with serve_zoo() as (url, handler):
        monkeypatch.setenv("CELLSYNTH_ZOO", url)
        viewer = make_napari_viewer()
        _, classify = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Classify")
        labels = [classify.zoo.native.itemText(i) for i in range(classify.zoo.native.count())]
        assert any(x.startswith("zoo:classifier-jurkat4 (downloads") for x in labels), labels
        classify.zoo.value = "zoo:classifier-jurkat4"
        folder = tmp_path / "cache" / "zoo" / "classifier-jurkat4"
        qtbot.waitUntil(lambda: str(classify.bundle.value) == str(folder), timeout=60_000)
        assert "/classifier-jurkat4/model.onnx" in handler.requests
    assert (folder / "model.onnx").read_bytes() == (MODELS / "classifier-jurkat4" / "model.onnx").read_bytes()
