"""Bad input at every command-line entry point gives one line naming the problem and the fix, exit
status 2 and no traceback (issue 14); ``-v`` shows the traceback.  docs/results.md lists these."""

import subprocess

import numpy as np
import pytest

from conftest import CELLSYNTH

from napari_cellsynth._sample_data import load_jurkat_sample


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CELLSYNTH, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "unlabelled").mkdir()
    images = load_jurkat_sample()["images"][:20]  # real cells shipped with the package: no ../shared/data needed
    np.savez(root / "unlabelled.npz", images=images)
    np.savez(root / "one_class.npz", images=images, labels=np.array(["G1"] * 20))
    np.savez(root / "two_classes.npz", images=images, labels=np.array(["G1", "M"] * 10))
    (root / "broken").mkdir()
    (root / "broken" / "G1").mkdir()
    (root / "broken" / "G1" / "cell.jpg").write_bytes(b"not a jpeg")
    import tifffile

    tifffile.imwrite(root / "plane.tif", images[0, 1])  # one real DNA plane
    tifffile.imwrite(root / "two_planes.tif", images[:2, 1], metadata={"axes": "CYX"})  # frames stored as channels
    (root / "a_run").mkdir()
    (root / "a_run" / "config.json").write_text("{}")  # what a training run holds, where a bundle was meant
    return root


CASES = [
    # (command, what must be in the one-line message)
    (["train", "classifier", "--data", "{root}/missing.npz", "--out", "{root}/o"], "does not exist"),
    (["train", "classifier", "--data", "{root}/unlabelled.npz", "--out", "{root}/o"], "has no labels"),
    (["train", "classifier", "--data", "{root}/one_class.npz", "--out", "{root}/o"],
     "at least two classes need 5 or more crops"),
    (["train", "classifier", "--data", "{root}/broken", "--out", "{root}/o"], "could not be read"),
    (["train", "classifier", "--data", "{root}/one_class.npz", "--steps", "0", "--out", "{root}/o"],
     "--steps must be at least 1"),
    (["train", "classifier", "--data", "{root}/one_class.npz", "--fit", "stretch", "--out", "{root}/o"],
     "invalid choice: 'stretch'"),
    (["train", "classifier", "--data", "{root}/one_class.npz", "--size", "100000", "--out", "{root}/o"],
     "--size 100000: the classifier takes crops of 16–256 px"),  # before resizing (it tried 37 GiB)
    (["train", "classifier", "--data", "{root}/one_class.npz", "--split", "0.9", "--out", "{root}/o"],
     "--split takes an .npz"),
    (["train", "ddpm", "--data", "{root}/one_class.npz", "--sample-every", "-1", "--out", "{root}/o"],
     "--sample-every must be 0 or more"),
    (["train", "ddpm", "--data", "{root}/one_class.npz", "--init-from", "{root}/unlabelled", "--out", "{root}/o"],
     "neither a cellsynth train ddpm run"),
    (["train", "gan", "--data", "{root}/one_class.npz", "--lr", "0", "--out", "{root}/o"], "--lr must be above 0"),
    (["train", "bbdm", "--data", "{root}/x.npz", "--dropout", "1.5", "--out", "{root}/o"],
     "--dropout is a fraction in [0, 1)"),
    (["segment", "{root}/plane.tif", "--model", "zoo:cellpose-chromosomes", "--diameter", "-3", "--out", "{root}/l.tif"],
     "object diameter -3.0 px: give one above 0"),
    (["batch", "{root}/plane.tif", "--segment-model", "zoo:cellpose-chromosomes", "--tile", "-5", "--out", "{root}/r"],
     "--tile -5: give a tile side of at least 64 px"),
    (["batch", "{root}/two_planes.tif", "--segment-model", "zoo:cellpose-chromosomes", "--classifier",
      "zoo:classifier-jurkat4", "--out", "{root}/r2"], "if they are frames, not channels, say so with --axes TYX"),
    (["study", "--data", "{root}/two_classes.npz", "--rare", "M", "--keep", "M=0", "--out", "{root}/s"],
     "0 crops would leave M out of training"),
    (["generate", "--model", "zoo:ddpm-jurkat4-cut10-v", "--class", "M", "--count", "1", "--out", "{root}/plane.tif"],
     "is a file where a folder is needed"),
    (["info", "{root}/a_run"], "make a bundle of it with cellsynth export"),
    (["export", "classifier", "{root}/unlabelled", "--out", "{root}/b"], "is not a finished classifier run"),
    (["classify", "{root}/unlabelled.npz", "--model", "{root}/nothing", "--out", "{root}/p.csv"],
     "does not exist"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(c[0][:2] + c[0][-3:-2]) for c in CASES])
def test_one_line_error_without_traceback(inputs, args, message):
    done = run(*[a.format(root=inputs) for a in args])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # one line, "PROG: error: MESSAGE" (argparse's own errors print the usage above it)
    assert lines[-1].startswith("cellsynth "), lines
    assert ": error: " in lines[-1] and message in lines[-1], lines[-1]
    assert len(lines) == 1 or lines[0].startswith("usage:"), lines


def test_verbose_shows_the_traceback(inputs):
    done = run("train", "classifier", "--data", f"{inputs}/missing.npz", "--out", f"{inputs}/o", "-v")
    assert done.returncode != 0 and "Traceback" in done.stderr and "does not exist" in done.stderr


def test_a_damaged_tiff_gives_one_line_without_the_readers_log(tmp_path):
    """tifffile logs every damaged tag and page before it raises; a command shows only its own line (``-v`` shows
    the rest), and writes nothing."""
    from napari_cellsynth._sample_data import MFISH_SAMPLE

    (tmp_path / "cut.tif").write_bytes(MFISH_SAMPLE.read_bytes()[:300])  # a deflate-compressed TIFF cut short
    out = tmp_path / "labels.tif"
    for command in (["segment", str(tmp_path / "cut.tif"), "--model", "zoo:cellpose-chromosomes"],
                    ["classify", str(tmp_path / "cut.tif"), "--model", "zoo:classifier-jurkat4"]):
        done = run(*command, "--out", str(out))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"cellsynth {command[0]}: error: ") and "cut.tif" in lines[0], lines
        assert not out.exists()
