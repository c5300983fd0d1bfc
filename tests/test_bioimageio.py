"""`cellsynth export bioimageio` (issue 34): a classifier bundle as a BioImage Model Zoo package that passes
bioimageio.spec's validation and bioimageio.core's test (ONNX Runtime reproduces the test outputs)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CELLSYNTH = str(Path(sys.executable).with_name("cellsynth"))


def export(*args, cwd):
    return subprocess.run([CELLSYNTH, "export", "bioimageio", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_a_zoo_classifier_becomes_a_valid_bioimageio_package_as_a_command(tmp_path):
    pytest.importorskip("bioimageio.core")
    import yaml
    from bioimageio.core import test_model

    done = export("zoo:classifier-jurkat7", "--out", "jurkat7.zip", "--author", "A. Tester", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    package = tmp_path / "jurkat7.zip"
    names = set(zipfile.ZipFile(package).namelist())
    assert {"rdf.yaml", "model.onnx", "test_images.npy", "test_logits.npy", "test_features.npy", "cover.png",
            "README.md"} <= names
    rdf = yaml.safe_load(zipfile.ZipFile(package).read("rdf.yaml"))
    assert rdf["type"] == "model" and rdf["license"] == "BSD-3-Clause" and rdf["authors"] == [{"name": "A. Tester"}]
    logits = next(t for t in rdf["outputs"] if t["id"] == "logits")
    assert logits["axes"][1]["channel_names"] == ["G1", "S_phase", "G2", "Prophase", "Metaphase", "Anaphase",
                                                  "Telophase"]
    steps = [step["id"] for step in rdf["inputs"][0]["preprocessing"]]
    assert "fixed_zero_mean_unit_variance" in steps  # the card's standardisation, as a consumer applies it
    summary = test_model(str(package))  # runs the ONNX weights on the test inputs
    assert summary.status == "passed", [d.name for d in summary.details if d.status != "passed"]


def test_bad_requests_are_refused_in_one_line(tmp_path):
    pytest.importorskip("bioimageio.spec")
    for args, message in ((["zoo:classifier-jurkat4", "--out", "model.bioimageio"], "is a .zip file"),
                          (["zoo:ddpm-jurkat4-cut10-v", "--out", "m.zip"], "'ddpm' bundle"),
                          (["zoo:classifier-translocations", "--out", "m.zip"], "give --test-data")):
        done = export(*args, cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing half-written
