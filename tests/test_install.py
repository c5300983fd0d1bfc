"""A ``pip install`` (not a checkout) can train and export (issue 13): the wheel carries
``napari_cellsynth.training`` and ``.export``, and ``cellsynth train`` / ``cellsynth export`` run from it
in a folder far from the repository."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

from napari_cellsynth._sample_data import load_jurkat_sample


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel of the checkout's tracked files, built in a copy (setuptools leaves build/ where it builds)."""
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, tracked.stdout.split("\0")):
        if (REPO / name).is_file() and not name.startswith(("runs/", "tests/", "docs/", "bench/", "models/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name, follow_symlinks=False)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True)
    return next(out.glob("napari_cellsynth-*.whl"))


def test_the_wheel_holds_training_and_export_under_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("training/trainers/classifier.py", "training/trainers/ddpm.py", "training/nets/resnet.py",
                   "export/export_classifier.py", "export/export_bbdm.py", "core/batch/job.py", "_widgets/batch.py"):
        assert f"napari_cellsynth/{module}" in names, module
    assert not any(n.startswith(("training/", "export/")) for n in names)  # no generic top-level packages
    # every package folder of the source tree is in the wheel (found by setuptools, not listed)
    for init in (REPO / "src").rglob("__init__.py"):
        assert str(init.relative_to(REPO / "src")) in names, init
    assert "napari_cellsynth/zoo_registry.json" in names and "napari_cellsynth/napari.yaml" in names
    # cellsynth study --config NAME reads the papers' configurations from the installed package
    for config in (REPO / "src" / "napari_cellsynth" / "training" / "study" / "configs").glob("*.json"):
        assert f"napari_cellsynth/training/study/configs/{config.name}" in names, config.name


@pytest.mark.slow
def test_an_installed_wheel_trains_and_exports(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    data = load_jurkat_sample()  # real cells shipped with the package
    labels = data["labels"]
    pick = np.concatenate([np.flatnonzero(labels == c)[:40] for c in ("G1", "G2", "S_phase")])
    np.savez(tmp_path / "cells.npz", images=data["images"][pick], labels=labels[pick])
    # the installed copy comes first on the path; the interpreter's site-packages gives the dependencies
    env = {**os.environ, "PYTHONPATH": str(site)}

    def cellsynth(*args):
        done = subprocess.run([sys.executable, "-m", "napari_cellsynth.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    where = subprocess.run([sys.executable, "-c", "import napari_cellsynth.training.trainers.classifier as m; "
                            "print(m.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))
    cellsynth("train", "classifier", "--data", "cells.npz", "--width", "8", "--steps", "20", "--min-steps", "20",
              "--threads", "1", "--out", "run", "--quiet")
    cellsynth("export", "classifier", "run", "--out", "bundle")
    info = cellsynth("info", "bundle")
    assert "classifier" in info.stdout and "sha256" in info.stdout.lower()


@pytest.fixture(scope="module")
def fresh_install(wheel, tmp_path_factory):
    """A new virtual environment outside the checkout with only the wheel installed in it (``pip install
    --no-deps``).  The dependencies (torch, napari, onnxruntime …, gigabytes) come from this test run's own
    environment through a ``.pth`` line: a plain path entry, so the checkout's editable install of
    napari-cellsynth, which lives in a ``.pth`` hook there, is not loaded, and the fresh environment's own copy
    (first on the path) is the one that runs."""
    import site
    import sysconfig

    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    fresh_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    assert ours in site.getsitepackages()
    (Path(fresh_site) / "dependencies.pth").write_text(ours + "\n")
    where = subprocess.run([str(python), "-c", "import napari_cellsynth; print(napari_cellsynth.__file__)"],
                           cwd=root, check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(fresh_site), where
    return venv, root


def test_an_installed_wheel_pulls_the_zoo_from_a_release_url_and_works_offline_from_its_cache(fresh_install, wheel):
    """Issue 34: the wheel ships the registry, not the models; `cellsynth zoo pull` fetches a bundle from the
    release URL (here models/ served on 127.0.0.1), checked by sha256; then, with no network, the cached bundle
    classifies and an uncached one gives one line that names the offline fixes."""
    from zoo_server import closed_port_url, serve_zoo

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_cellsynth/zoo_registry.json" in names and not any(n.endswith(".onnx") for n in names)
    venv, root = fresh_install
    sample = REPO / "src" / "napari_cellsynth" / "sample_data" / "jurkat_sample.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLSYNTH_ZOO")}
    env["CELLSYNTH_CACHE"] = str(root / "cache")

    def cellsynth(*args, **extra):
        return subprocess.run([str(venv / "bin" / "cellsynth"), *args], cwd=root, env={**env, **extra},
                              capture_output=True, text=True, timeout=300)

    listed = cellsynth("zoo", "list")
    assert listed.returncode == 0, listed.stderr
    registry = json.loads((REPO / "src" / "napari_cellsynth" / "zoo_registry.json").read_text())
    assert "zoo_registry.json" in listed.stdout
    assert listed.stdout.count("[not downloaded") == len(registry["bundles"])
    with serve_zoo(short=["/classifier-jurkat7/model.onnx"]) as (url, handler):
        pulled = cellsynth("zoo", "pull", "classifier-jurkat4", "--quiet", CELLSYNTH_ZOO_URL=url)
        assert pulled.returncode == 0, pulled.stderr
        truncated = cellsynth("zoo", "pull", "classifier-jurkat7", "--quiet", CELLSYNTH_ZOO_URL=url)
        assert "/classifier-jurkat4/arrays.npz" in handler.requests
    assert truncated.returncode == 2 and "truncated" in truncated.stderr and "Traceback" not in truncated.stderr
    assert not (root / "cache" / "zoo" / "classifier-jurkat7").exists()
    assert "[cached]" in next(x for x in cellsynth("zoo", "list").stdout.splitlines() if "classifier-jurkat4 " in x)
    dead = closed_port_url()
    done = cellsynth("classify", str(sample), "--model", "zoo:classifier-jurkat4", "--out", "sample.csv",
                     CELLSYNTH_ZOO_URL=dead)
    assert done.returncode == 0, done.stderr
    assert "macro" in done.stdout.lower() and (root / "sample.csv").is_file()
    offline = cellsynth("classify", str(sample), "--model", "zoo:classifier-jurkat7", "--out", "s7.csv",
                        CELLSYNTH_ZOO_URL=dead)
    assert offline.returncode == 2 and "Traceback" not in offline.stderr, offline.stderr
    line = offline.stderr.strip().splitlines()[-1]
    assert "cannot reach" in line and "zoo pull classifier-jurkat7" in line and "CELLSYNTH_ZOO" in line


@pytest.mark.napari
def test_widgets_of_an_installed_wheel_open_from_the_plugins_menu_and_list_the_zoo(fresh_install, tmp_path):
    """The Plugins menu of napari, run from the fresh environment: the Classify widget opens and its zoo drop-down
    offers every classifier of the shipped registry, marked for download, with nothing cached."""
    venv, root = fresh_install
    script = tmp_path / "open_widget.py"
    script.write_text(
        "import napari, napari_cellsynth\n"
        "viewer = napari.Viewer(show=False)\n"
        "dock, widget = viewer.window.add_plugin_dock_widget('napari-cellsynth', 'Classify')\n"
        "print('FROM', napari_cellsynth.__file__)\n"
        "print('CHOICES', [widget.zoo.native.itemText(i) for i in range(widget.zoo.native.count())])\n"
        "viewer.close()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLSYNTH_ZOO")}
    env["CELLSYNTH_CACHE"] = str(tmp_path / "empty-cache")
    done = subprocess.run([str(venv / "bin" / "python"), str(script)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"FROM {venv}" in done.stdout
    choices = next(x for x in done.stdout.splitlines() if x.startswith("CHOICES"))
    for name in ("classifier-jurkat4", "classifier-jurkat7", "classifier-translocations"):
        assert f"zoo:{name} (downloads" in choices, choices
    assert "ddpm" not in choices
