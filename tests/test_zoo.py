"""The model zoo: registry look-up by name, sha256 checks (local and downloaded), and every shipped bundle."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_cellsynth.core.bundle import BundleError, read_card
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.zoo import add_to_registry, default_location, read_registry, resolve

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture()
def zoo(classifier_bundle, tmp_path):
    folder = tmp_path / "zoo"
    shutil.copytree(classifier_bundle, folder / "clf")
    add_to_registry(folder / "clf", "a test classifier", {"macro-F1": 0.5}, "docs/results.md §2")
    return folder


def test_registry_lists_and_resolves_by_name(zoo, monkeypatch):
    entry = read_registry(str(zoo))["clf"]
    assert entry.kind == "classifier" and set(entry.sha256) == {"card.json", "model.onnx"}
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
    with pytest.raises(BundleError, match="downloaded model.onnx does not match"):
        resolve("zoo:clf", url)
    assert not (tmp_path / "cache" / "zoo" / "clf" / "model.onnx").exists()


def test_every_shipped_zoo_bundle_loads_and_passes_its_card_checks():
    registry = read_registry(str(MODELS))
    assert registry, "the zoo in models/ lists no bundle"
    total = 0
    for name, entry in registry.items():
        model = OnnxModel(f"zoo:{name}", kind=entry.kind)  # sha256, card and graph checks
        total += sum(p.stat().st_size for p in (MODELS / entry.path).iterdir())
        assert (MODELS / entry.path / "model.onnx").stat().st_size <= 10 * 2**20
        if entry.kind == "ddpm":
            section = model.card.ddpm
            assert section.schedule.prediction in ("epsilon", "v") and section.x0_bounds is not None
        assert entry.results.startswith("docs/results.md")
    assert total <= 60 * 2**20


def test_zoo_list_as_a_command():
    cellsynth = Path(sys.executable).with_name("cellsynth")
    done = subprocess.run([str(cellsynth), "zoo", "list", "--verify"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in read_registry(str(MODELS)):
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
