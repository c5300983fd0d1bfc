"""A ``pip install`` (not a checkout) can train and export (issue 13): the wheel carries
``napari_cellsynth.training`` and ``.export``, and ``cellsynth train`` / ``cellsynth export`` run from it
in a folder far from the repository."""

import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import JURKAT, REPO, require


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
    # every package folder of the checkout is in the wheel (pyproject lists them by hand)
    for init in [*(REPO / "src").rglob("__init__.py"), *(REPO / "training").rglob("__init__.py"),
                 *(REPO / "export").rglob("__init__.py")]:
        relative = init.relative_to(REPO / "src" if "src" in init.parts else REPO)
        expected = str(relative) if "src" in init.parts else f"napari_cellsynth/{relative}"
        assert expected in names, expected


@pytest.mark.slow
def test_an_installed_wheel_trains_and_exports(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    with np.load(require(JURKAT), allow_pickle=False) as data:
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
