"""int8 variants of classifier bundles (issue 36 item 2): ``cellsynth export int8`` calibrates on the bundle's own
training crops, refuses a variant whose calls drift, and the runtime runs it only where it pays, saying so in
provenance.  Run as a user runs them: commands, the zoo bundle, real cells."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CELLSYNTH, JURKAT

from napari_cellsynth.core.bundle import Card, load_arrays, read_card, save_bundle
from napari_cellsynth.core.errors import BundleError
from napari_cellsynth.core.precision import choose_weights, cpu_int8_dot
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.zoo import resolve


def cellsynth(*args, precision: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CELLSYNTH_PRECISION"}
    if precision:
        env["CELLSYNTH_PRECISION"] = precision
    return subprocess.run([CELLSYNTH, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def sample_npz(tmp_path_factory) -> Path:
    from napari_cellsynth._sample_data import load_jurkat_sample

    sample = load_jurkat_sample()
    out = tmp_path_factory.mktemp("int8") / "sample.npz"
    np.savez(out, images=sample["images"], labels=sample["labels"], channels=sample["channels"])
    return out


def bundle_tested_on(tmp: Path, test_index: np.ndarray) -> Path:
    """A copy of zoo:classifier-jurkat4 whose recorded test split is ``test_index`` of the sample cells (the zoo
    bundle's own split indexes the full data, which a clone may lack)."""
    folder = tmp / "jurkat4-sample-split"
    shutil.copytree(resolve("zoo:classifier-jurkat4"), folder)
    card = read_card(folder)
    save_bundle(folder, card, {"test_source_index": np.asarray(test_index, np.int64)})
    return folder


@pytest.fixture(scope="module")
def int8_bundle(sample_npz, tmp_path_factory) -> Path:
    """zoo:classifier-jurkat4 made int8 by the command, calibrated on half of the sample cells, checked on the other."""
    tmp = tmp_path_factory.mktemp("int8-bundle")
    source = bundle_tested_on(tmp, np.arange(1, 226, 2))
    before = (source / "card.json").read_bytes()
    done = cellsynth("export", "int8", source, "--out", tmp / "jurkat4-int8", "--data", sample_npz,
                     "--tolerance", "0.95", "--class-tolerance", "0.8")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "crops/s on this CPU" in done.stdout
    assert (source / "card.json").read_bytes() == before  # the input bundle is left as it was
    return tmp / "jurkat4-int8"


def test_export_int8_writes_a_checked_variant(int8_bundle, tmp_path):
    card = read_card(int8_bundle)
    variant = card.extra["variants"]["int8"]
    assert variant["agreement_on"] == "113 test crops"
    assert variant["calibration"].startswith("113 training crops of sample.npz")
    assert variant["top1_agreement"] >= variant["tolerance"] == 0.95
    assert min(c["kept"] for c in variant["kept_calls"].values()) >= variant["class_tolerance"]
    assert set(variant["kept_fp32"]) == {"/stem/stem.0/Conv", "/head/Gemm"}  # the input's conv and the logits
    assert variant["macro_f1"]["int8"] > 0.5 and variant["speed"]["int8_crops_per_s"] > 0
    assert card.files["model.int8.onnx"]["sha256"]  # checked like every file of the bundle
    model = OnnxModel(int8_bundle, kind="classifier", precision="int8")
    assert model.runs_as.weights == "int8"
    tampered = Path(shutil.copytree(int8_bundle, tmp_path / "tampered"))
    (tampered / "model.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256"):
        OnnxModel(tampered, kind="classifier")


def test_classify_runs_int8_where_the_cpu_makes_it_pay(int8_bundle, sample_npz, tmp_path):
    """auto picks by the CPU's int8 dot-product feature (recorded with why in OUT.provenance.json); fp32 and int8
    can be asked for, and their calls on the 226 sample cells agree."""
    card = read_card(int8_bundle)
    expected = choose_weights(card, on_cpu=True, precision="auto")  # what this machine's CPU gets
    assert expected.weights == ("int8" if cpu_int8_dot() else "fp32")
    calls = {}
    for precision in ("auto", "fp32", "int8"):
        out = tmp_path / f"{precision}.csv"
        done = cellsynth("classify", sample_npz, "--model", int8_bundle, "--out", out, precision=precision)
        assert done.returncode == 0, done.stderr
        record = json.loads(out.with_suffix(".provenance.json").read_text())
        ran = expected.weights if precision == "auto" else precision
        assert record["runs_as"]["weights"] == ran
        assert record["runs_as"]["sha256"] == card.files[record["runs_as"]["file"]]["sha256"]
        assert record["crops"] == 226 and record["bundle"] == card.name
        assert ("int8 weights:" in done.stderr) == (ran == "int8")
        calls[precision] = np.loadtxt(out, delimiter=",", skiprows=1, usecols=[2], dtype=str)
    assert np.mean(calls["int8"] == calls["fp32"]) >= 0.95
    info = cellsynth("info", int8_bundle, precision="auto")  # what a user asks before running
    assert info.returncode == 0 and f"weights here: {expected.weights} ({expected.why})" in info.stderr


def test_int8_refused_when_calibrated_on_the_wrong_crops(sample_npz, tmp_path):
    """Calibrated on crops 20× dimmer than the ones it is checked on, the int8 graph clips: refused in one line,
    nothing left at --out."""
    test_index = np.arange(1, 226, 2)
    source = bundle_tested_on(tmp_path, test_index)
    with np.load(sample_npz) as sample:
        images = sample["images"].astype(np.float64)
        dim = np.setdiff1d(np.arange(len(images)), test_index)
        images[dim] = images[dim] / 20
        np.savez(tmp_path / "dim.npz", images=images.astype(np.uint16), labels=sample["labels"],
                 channels=sample["channels"])
    done = cellsynth("export", "int8", source, "--out", tmp_path / "out", "--data", tmp_path / "dim.npz")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "below --tolerance" in done.stderr and "no int8 variant" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.staging").exists()


@pytest.mark.parametrize("args, message", [
    (["zoo:ddpm-jurkat4-cut10-v"], "makes int8 variants of classifier bundles"),
    (["{source}", "--data", "{source}/card.json"], "unsupported input"),
    (["{source}", "--tolerance", "1.5"], "--tolerance 1.5"),
    (["{source}", "--data", "{missing}"], "does not exist"),
])
def test_export_int8_bad_input_one_line(args, message, sample_npz, tmp_path):
    source = bundle_tested_on(tmp_path, np.arange(1, 226, 2))
    args = [a.format(source=source, missing=tmp_path / "nope.npz") for a in args]
    done = cellsynth("export", "int8", *args, "--out", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_export_int8_refuses_to_overwrite_its_input(tmp_path, sample_npz):
    source = bundle_tested_on(tmp_path, np.arange(1, 226, 2))
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    done = cellsynth("export", "int8", source, "--out", source, "--data", sample_npz)
    assert done.returncode == 2 and "is the input bundle" in done.stderr
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before


def _card(variant: dict | None) -> Card:
    return Card(kind="classifier", name="c", channels=["a"], input={}, normalization={},
                extra={"variants": {"int8": variant}} if variant else {})


GOOD = {"file": "model.int8.onnx", "top1_agreement": 0.999, "tolerance": 0.995, "agreement_on": "100 test crops",
        "kept_calls": {"A": {"fp32_calls": 90, "kept": 1.0}, "B": {"fp32_calls": 10, "kept": 1.0}},
        "class_tolerance": 0.95}


def test_choose_weights_rules():
    assert choose_weights(_card(GOOD), True, "auto", "avx512_vnni").weights == "int8"
    assert "no int8 dot-product" in choose_weights(_card(GOOD), True, "auto", None).why
    assert choose_weights(_card(GOOD), False, "auto", "avx512_vnni").why == "runs on a GPU"
    assert choose_weights(_card(GOOD), True, "fp32", "avx512_vnni").weights == "fp32"
    assert choose_weights(_card(GOOD), True, "int8", None).weights == "int8"  # asked for: runs even without VNNI
    assert choose_weights(_card(None), True, "auto", "avx512_vnni").weights == "fp32"
    drifted = GOOD | {"kept_calls": {"A": {"fp32_calls": 90, "kept": 1.0}, "B": {"fp32_calls": 10, "kept": 0.8}}}
    assert "class tolerance" in choose_weights(_card(drifted), True, "auto", "avx512_vnni").why
    with pytest.raises(BundleError, match="class tolerance"):
        choose_weights(_card(drifted), True, "int8", "avx512_vnni")
    with pytest.raises(BundleError, match="has no int8 variant"):
        choose_weights(_card(None), True, "int8", None)
    with pytest.raises(ValueError, match="precision 'fp8' is unknown"):
        choose_weights(_card(GOOD), True, "fp8", None)
    cellpose = Card(kind="cellpose", name="c", channels=["a"], input={}, normalization={},
                    extra={"cellpose": {"weights": "fp16"}})
    runs_as = choose_weights(cellpose, True, "auto", "avx512_vnni")  # `cellsynth info`: no ONNX session, no int8
    assert runs_as.weights == "fp32" and "Cellpose's network in torch, its weights stored in fp16" in runs_as.why


@pytest.mark.full_data
def test_zoo_classifier_int8_on_its_own_test_split(tmp_path):
    """The zoo's 4-class classifier, calibrated on its training crops, checked on its 1,402 test crops at the
    default tolerances (99.5 % overall, 95 % of every class's calls)."""
    done = cellsynth("export", "int8", "zoo:classifier-jurkat4", "--out", tmp_path / "j4", "--data", JURKAT)
    assert done.returncode == 0, done.stderr
    variant = read_card(tmp_path / "j4").extra["variants"]["int8"]
    assert variant["agreement_on"] == "1402 test crops" and variant["top1_agreement"] >= 0.995
    assert abs(variant["macro_f1"]["int8"] - variant["macro_f1"]["fp32"]) <= 0.01
    assert len(load_arrays(tmp_path / "j4", read_card(tmp_path / "j4"))["test_source_index"]) == 1402


def test_a_generators_calibration_is_the_inputs_its_sampler_gives_it():
    """For the int8 generator measured in results §2d: calibration feeds are the network's inputs at every step of the
    sampler, for every class; the convolutions that read x_t and write the prediction stay fp32."""
    from napari_cellsynth.export.export_int8 import generator_kept_fp32, sampling_feeds, weights_as_fp32

    model = OnnxModel("zoo:ddpm-jurkat4-cut10-v", kind="ddpm")
    feeds = sampling_feeds(model, 2, "dpm_solver_pp_2m", 3, seed=0)
    assert len(feeds) == 3 * len(model.card.classes)  # one batch per step per class
    assert {tuple(np.unique(f["class"])) for f in feeds} == {(k,) for k in range(len(model.card.classes))}
    assert all(f["x"].shape == (2, 3, 40, 40) for f in feeds)
    assert len({float(f["t"][0]) for f in feeds}) == 3  # three noise levels
    graph = weights_as_fp32(model.folder / "model.onnx")
    kept = generator_kept_fp32(graph)
    nodes = {n.name: n for n in graph.graph.node}
    assert len(kept) == 2 and nodes[kept[0]].input[0] == "x" and nodes[kept[1]].output[0] == "v"
