"""Shared fixtures: paths to the real data in ../shared/data and a small classifier trained on it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CELLSYNTH_SHARED_DATA", REPO.parent / "shared" / "data"))
JURKAT = SHARED_DATA / "jurkat" / "jurkat_cells.npz"
NUCLEI = SHARED_DATA / "nuclei"
# The console script `pip install` puts beside the interpreter: tests run commands as a user types them.
CELLSYNTH = str(Path(sys.executable).with_name("cellsynth"))


_OWN_CACHE: list[str] = [""]  # the cache folder this process made, if it made one


def pytest_configure(config):
    # Mesa writes a shader cache under XDG_CACHE_HOME; keep it out of the user's home, in one folder per run that the
    # run removes (xdist's workers inherit the controller's; an XDG_CACHE_HOME already set is left alone)
    if "XDG_CACHE_HOME" not in os.environ:
        os.environ["XDG_CACHE_HOME"] = _OWN_CACHE[0] = tempfile.mkdtemp(prefix="cellsynth-xdg-")
    os.environ.setdefault("CELLSYNTH_PROVIDERS", "cpu")
    # fp32 weights everywhere, so that a zoo bundle's numbers are the same on CPUs with and without int8 dot-product
    # instructions; tests/test_int8_variant.py runs the automatic choice (auto) as a user's program makes it
    os.environ.setdefault("CELLSYNTH_PRECISION", "fp32")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: one thread per worker (torch, ONNX Runtime, and the
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # commands the tests run), so that workers do not fight over
        os.environ.setdefault("CELLSYNTH_THREADS", "1")  # the cores; set before torch is first imported


def screenshot(viewer, name: str, folder: Path) -> np.ndarray:
    """The whole napari window (canvas and docks) as ``napari-NAME.png`` in ``folder`` and, when
    ``CELLSYNTH_SCREENSHOTS`` names a folder (``docs/figures``), there too, so that the figures the README and
    docs/viewer.md show are refreshed by the tests that drive those views:

        CELLSYNTH_SCREENSHOTS=docs/figures .venv/bin/python -m pytest -m napari
    """
    import imageio.v3 as iio

    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.shape[2] == 4 and shot[..., :3].std() > 5, name  # a drawn window, not a blank one
    for target in filter(None, [folder, os.environ.get("CELLSYNTH_SCREENSHOTS")]):
        Path(target).mkdir(parents=True, exist_ok=True)
        iio.imwrite(Path(target) / f"napari-{name}.png", shot[..., :3])
    return shot


NO_DATA = "real data"  # the start of every skip reason below, counted in the run's summary line


def child_json(script: str, *args, timeout: float = 300) -> dict:
    """Run ``python -c script *args`` in a new process (its own imports, caches and Qt) and return the JSON line it
    prints last; its stderr's end when it fails."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{NO_DATA} {path} not found (set CELLSYNTH_SHARED_DATA)")
    return path


# Each test module's seconds (setup, call and teardown of its tests, summed) in a whole run of the suite; written by
# CELLSYNTH_TEST_DURATIONS=tests/durations.json bash scripts/test.sh
DURATIONS = Path(__file__).with_name("durations.json")


def module_seconds() -> dict[str, float]:
    return json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}


def pytest_collection_modifyitems(config, items):
    """Modules run longest first (their seconds in ``durations.json``; a module not in it counts as the longest), so
    that the workers of ``pytest -n --dist loadfile`` (scripts/test.sh, which turns off xdist's own reordering by test
    count) are not left waiting on one long module at the end.  Tests marked ``full_data`` need the whole of
    ../shared/data (they score against cells that the package's sample data would have trained on, or use files only
    it has): skipped at once in a clone without it."""
    seconds = module_seconds()
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], float("inf")))  # stable: file order in a tie
    if JURKAT.exists():
        return
    skip = pytest.mark.skip(reason=f"{NO_DATA} {SHARED_DATA} not found: this test needs the full data "
                                   "(set CELLSYNTH_SHARED_DATA)")
    for item in items:
        if item.get_closest_marker("full_data"):
            item.add_marker(skip)


_RECORDED: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Each test's seconds, summed per module (in the process that reports: with ``-n`` the controller)."""
    if os.environ.get("CELLSYNTH_TEST_DURATIONS") and not os.environ.get("PYTEST_XDIST_WORKER"):
        module = report.nodeid.split("::")[0]
        _RECORDED[module] = _RECORDED.get(module, 0.0) + report.duration


def pytest_sessionfinish(session):
    path = os.environ.get("CELLSYNTH_TEST_DURATIONS")
    if path and _RECORDED and not os.environ.get("PYTEST_XDIST_WORKER"):
        known = json.loads(Path(path).read_text()) if Path(path).is_file() else {}  # a partial run updates its modules
        merged = {**known, **{m: round(s, 1) for m, s in _RECORDED.items()}}
        ordered = dict(sorted(merged.items(), key=lambda kv: -kv[1]))
        Path(path).write_text(json.dumps(ordered, indent=1) + "\n")


def pytest_unconfigure(config):
    if _OWN_CACHE[0]:
        shutil.rmtree(_OWN_CACHE[0], ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """One line that says how much of the suite a clone without ../shared/data did not run."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if NO_DATA in str(report.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests skipped: they need the real data in {SHARED_DATA} "
                                    "(set CELLSYNTH_SHARED_DATA to run them)", yellow=True)


@pytest.fixture(scope="session")
def jurkat_slice(tmp_path_factory) -> Path:
    """A seeded slice of the real Jurkat cells: every mitotic cell plus 300 of each interphase class.

    The cells shipped as the plugin's sample data are left out, so tests can score on them.  Without ../shared/data
    it is those 226 sample cells, and the tests that score on them are marked ``full_data``.
    """
    from napari_cellsynth.training.experiments.shift import jurkat_slice as write_slice

    out = tmp_path_factory.mktemp("data") / "jurkat_slice.npz"
    if not JURKAT.exists():  # a clone without the data: the 226 sample cells (tests that score on them are full_data)
        from napari_cellsynth._sample_data import load_jurkat_sample

        sample = load_jurkat_sample()
        np.savez(out, images=sample["images"], labels=sample["labels"], channels=sample["channels"])
        return out
    return write_slice(JURKAT, out)


@pytest.fixture(scope="session")
def trained_run(jurkat_slice, tmp_path_factory) -> Path:
    """A ResNet-18 (width 16) trained for 3 epochs (SGD) on the Jurkat slice, 4 classes."""
    from napari_cellsynth.training.trainers import classifier as train_classifier

    run = tmp_path_factory.mktemp("runs") / "jurkat4"
    # 36 SGD steps without shifts: the recipe the tests' thresholds were calibrated with.  The default
    # recipe (AdamW, 1,000 steps, --shift 0.1 on such a small set) is measured in results §1b (experiments/shift.py); at 36 steps
    # the shift costs this toy model accuracy (macro-F1 0.32 at seed 0, under the tests' 0.4 floor)
    train_classifier.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--width", "16",
                           "--epochs", "3", "--optimizer", "sgd", "--warmup", "0", "--shift", "0", "--seed", "0",
                           "--out", str(run), "--quiet"])
    return run


@pytest.fixture(scope="session")
def classifier_bundle(trained_run, tmp_path_factory) -> Path:
    from napari_cellsynth.export.export_classifier import export_classifier

    return export_classifier(trained_run, tmp_path_factory.mktemp("bundles") / "jurkat4")


@pytest.fixture(scope="session")
def chromosome_cellpose_model() -> Path:
    """The zoo's Cellpose chromosome model (a bundle folder: 80 epochs on 92 metaphases, slides A20 V26 A04 V14
    P09 held out).  Tests downstream of training use it, so that their numbers are the same on every CPU and
    nothing is trained for the suite (issue 36); it used to be trained here, 20 minutes on a fresh machine."""
    return REPO / "models" / "cellpose-chromosomes"


# The batch tests segment the nuclei image with the zoo's chromosome model: told that objects are 30 px across, Cellpose
# scales the nuclei (median 24 px) down to its chromosomes' size and finds about half of them (45 of 117 in the
# tests' 12 frames; 22 at its own diameter).  The tests are about the batch machinery, not about segmentation quality.
NUCLEI_DIAMETER = 30.0


@pytest.fixture(scope="session")
def cellpose_training_run(tmp_path_factory) -> Path:
    """A Cellpose run trained for seconds on from the zoo model's weights on real M-FISH DAPI planes (2 epochs of 8
    crops, 1 training and 1 held-out metaphase): enough to test the trainer's records and the export, not its
    accuracy (a trained start: a random network's masks make the threshold grid 10× slower)."""
    from napari_cellsynth.training.trainers import cellpose as train_cellpose

    out = tmp_path_factory.mktemp("cellpose") / "run"
    train_cellpose.main(["--root", str(require(SHARED_DATA / "mfish")), "--epochs", "2", "--images-per-epoch", "8",
                         "--limit", "1", "--test-slides", "V26", "A20", "--init-from", "zoo:cellpose-chromosomes",
                         "--out", str(out)])
    return out


@pytest.fixture(scope="session")
def mfish_pairs(tmp_path_factory) -> Path:
    """The M-FISH data set builder run on two real metaphases (46,XX and t(X;4)): chromosomes.npz."""
    from napari_cellsynth.training.data import mfish_dataset

    root = require(SHARED_DATA / "mfish")
    out = tmp_path_factory.mktemp("mfish")
    mfish_dataset.main(["--root", str(root), "--only", "V1401XX", "V260754", "--codes-from", str(root),
                        "--size", "64", "--out", str(out)])
    return out / "chromosomes.npz"


@pytest.fixture(scope="session")
def mfish_five_metaphases(tmp_path_factory) -> Path:
    """The builder on five real metaphases of four slides: normal V14 and V16, translocations in V26 and V28."""
    from napari_cellsynth.training.data import mfish_dataset

    root = require(SHARED_DATA / "mfish")
    out = tmp_path_factory.mktemp("mfish5")
    mfish_dataset.main(["--root", str(root), "--only", "V1401XX", "V260754", "V1601XX", "V280462", "V280162",
                        "--codes-from", str(root), "--size", "64", "--out", str(out)])
    return out / "chromosomes.npz"


@pytest.fixture(scope="session")
def bbdm_run(mfish_pairs, tmp_path_factory) -> Path:
    """A small BBDM (U-Net base 16) trained for 12 steps on those real DAPI → FISH pairs."""
    from napari_cellsynth.training.trainers import bbdm as train_bbdm

    run = tmp_path_factory.mktemp("runs") / "bbdm"
    train_bbdm.main(["--data", str(mfish_pairs), "--base", "16", "--steps", "12", "--sample-every", "12",
                     "--sample-steps", "10", "--ckpt-every", "4", "--out", str(run), "--quiet"])
    return run


@pytest.fixture(scope="session")
def bbdm_bundle(bbdm_run, tmp_path_factory) -> Path:
    from napari_cellsynth.export.export_bbdm import export_bbdm

    return export_bbdm(bbdm_run, tmp_path_factory.mktemp("bundles") / "bbdm")


@pytest.fixture(scope="session")
def metaphase_with_chromosomes():
    """A real metaphase's DAPI plane and instance labels of its first six chromosomes (karyotype components)."""
    from skimage.measure import label

    from napari_cellsynth.training.data.mfish import read_metaphase

    mp = read_metaphase(require(SHARED_DATA / "mfish" / "V26__54"), "V260754")
    instances = label((mp.karyotype > 0) & (mp.karyotype < 255))
    instances[instances > 6] = 0
    return mp.dapi, instances.astype(np.int32)


TINY_DDPM = ["--base", "8", "--channel-mult", "1", "2", "--batch-size", "16", "--sample-every", "1000", "--quiet"]


@pytest.fixture(scope="session")
def ddpm_run(jurkat_slice, tmp_path_factory):
    """A tiny ε-prediction DDPM (40 steps) on the Jurkat slice's split-seed-0 training part, 4 classes."""
    from napari_cellsynth.training.trainers import ddpm as train_ddpm

    run = tmp_path_factory.mktemp("ddpm") / "base"
    train_ddpm.main(["--data", str(jurkat_slice), "--label-map", "jurkat4", "--steps", "40", "--timesteps", "100",
                     "--prediction", "epsilon", "--out", str(run), *TINY_DDPM])  # paper 000's ε; the default is v
    return run


@pytest.fixture(scope="session")
def ddpm_bundle(ddpm_run, tmp_path_factory):
    from napari_cellsynth.export.export_ddpm import export_ddpm

    return export_ddpm(ddpm_run, tmp_path_factory.mktemp("ddpm-bundles") / "ddpm")
