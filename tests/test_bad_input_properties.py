"""Bad input, drawn by Hypothesis (issue 36): malformed files for every reader (npz, TIFF, PNG/JPEG, OME-Zarr,
folders, CSV labels) and the commands that read a user's files.  Whatever the file holds, a reader either reads it
or refuses it with one :class:`ImageInputError` line; a command exits 0, or 2 with one line, no traceback and no
output left behind.  The examples are derandomized (the same on every run and every CPU) and real files are the
seeds: the package's sample cells and metaphase, cut short or overwritten at drawn places."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_cellsynth._sample_data import MFISH_SAMPLE, load_jurkat_sample
from napari_cellsynth.cli import main
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.images import ImageInputError

PROPERTY = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CELLS = load_jurkat_sample()["images"][:6]  # 6×3×40×40 uint16, real

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64, np.bool_, np.complex64])
ARRAYS = DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                                                         max_side=6)))


def real_npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=CELLS, labels=np.array(["G1", "S", "G2", "M", "M", "G1"]))
    return buffer.getvalue()


def real_tiff_bytes(compression: str | None = None) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, CELLS, compression=compression)
    return buffer.getvalue()


def real_metaphase_tiff_bytes(compression: str | None = None) -> bytes:
    buffer = io.BytesIO()  # a corner of the real DAPI plane
    tifffile.imwrite(buffer, tifffile.imread(MFISH_SAMPLE)[0, :96, :96], compression=compression)
    return buffer.getvalue()


def real_png_bytes() -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", (CELLS[0, 0] >> 8).astype(np.uint8), extension=".png")


def damaged(original: bytes) -> st.SearchStrategy[bytes]:
    """A real file cut short, overwritten with junk at a drawn place, or replaced by junk."""
    cut = st.integers(0, len(original) - 1).map(lambda n: original[:n])
    overwrite = st.tuples(st.integers(0, len(original) - 1), st.binary(min_size=1, max_size=64)).map(
        lambda at: original[:at[0]] + at[1] + original[at[0] + len(at[1]):])
    return st.one_of(cut, overwrite, st.binary(max_size=512))


def damaged_tiff(seed) -> st.SearchStrategy[bytes]:
    """A real TIFF, plain or deflate-compressed as microscopes and tifffile often write them, damaged."""
    return st.one_of(damaged(seed()), damaged(seed("zlib")))


def reads_or_refuses(path: Path, **kwargs):
    """The reader's contract: a 4-D stack of at least one crop, or one line that names the problem."""
    try:
        crops = read_crops(path, **kwargs)
    except ImageInputError as err:
        message = str(err)
        assert message.strip() and "\n" not in message, message
        return None
    assert crops.images.ndim == 4 and min(crops.images.shape) >= 1, crops.images.shape
    assert crops.labels is None or len(crops.labels) == len(crops.images)
    return crops


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cellsynth-hyp-"))


@PROPERTY
@given(arrays=st.dictionaries(st.sampled_from(["images", "labels", "channels", "other"]), ARRAYS, max_size=3))
def test_npz_of_any_arrays_reads_or_is_refused_in_one_line(arrays):
    folder = fresh_dir()
    try:
        np.savez(folder / "crops.npz", **arrays)
        reads_or_refuses(folder / "crops.npz")
    finally:
        shutil.rmtree(folder)


@settings(PROPERTY, max_examples=50)
@given(file=st.one_of(damaged(real_npz_bytes()).map(lambda b: ("crops.npz", b)),
                      damaged_tiff(real_tiff_bytes).map(lambda b: ("stack.tif", b))))
def test_a_damaged_npz_or_tiff_reads_or_is_refused_in_one_line(file):
    name, content = file
    folder = fresh_dir()
    try:
        (folder / name).write_bytes(content)
        reads_or_refuses(folder / name)
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(array=ARRAYS)
def test_a_tiff_of_any_array_reads_or_is_refused_in_one_line(array):
    folder = fresh_dir()
    try:
        try:
            tifffile.imwrite(folder / "stack.tif", array)
        except Exception:  # noqa: BLE001 - tifffile cannot write every drawn array; those are not inputs
            return
        reads_or_refuses(folder / "stack.tif")
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(rows=st.lists(st.lists(st.text(max_size=6), max_size=3), max_size=8),
       header=st.sampled_from([["index", "label"], ["label"], ["name"], []]))
def test_a_labels_csv_of_any_text_reads_or_is_refused_in_one_line(rows, header):
    import csv

    folder = fresh_dir()
    try:
        tifffile.imwrite(folder / "stack.tif", CELLS)
        with open(folder / "labels.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        reads_or_refuses(folder / "stack.tif", labels_csv=folder / "labels.csv")
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(files=st.lists(st.tuples(st.sampled_from(["", "G1/", "M/"]), st.sampled_from([".png", ".jpg", ".tif"]),
                                damaged(real_png_bytes())), min_size=1, max_size=4))
def test_a_folder_of_damaged_images_reads_or_is_refused_in_one_line(files):
    folder = fresh_dir()
    try:
        for i, (where, suffix, content) in enumerate(files):
            path = folder / "crops" / f"{where}cell{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        reads_or_refuses(folder / "crops")
        reads_or_refuses(folder / "crops", skip_unreadable=True)
    finally:
        shutil.rmtree(folder)


def one_line_or_success(argv: list[str], out: Path, capsys) -> int:
    """A command as the console script runs it (``sys.exit(main())``): 0, or 2 with one error line (the last; a
    progress line may come before it), no traceback, and nothing written at ``out``."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    if code == 0:
        return code
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert "Traceback" not in err and lines and lines[-1].startswith(f"cellsynth {argv[0]}") \
        and ": error: " in lines[-1], err
    assert sum(": error: " in line for line in lines) == 1, err
    assert not out.exists(), f"{out} was left behind by a refused command"
    return code


@PROPERTY
@given(kind=st.sampled_from(["npz", "tif"]),
       content=st.one_of(damaged(real_npz_bytes()), damaged_tiff(real_tiff_bytes)))
def test_classify_exits_2_in_one_line_on_damaged_crops(kind, content, capsys):
    folder = fresh_dir()
    try:
        source, out = folder / f"cells.{kind}", folder / "out" / "predictions.csv"
        source.write_bytes(content)
        one_line_or_success(["classify", str(source), "--model", "zoo:classifier-jurkat4", "--out", str(out),
                             "--quiet"], out, capsys)
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(array=ARRAYS)
def test_classify_exits_2_in_one_line_on_crops_of_any_shape_and_type(array, capsys):
    folder = fresh_dir()
    try:
        source, out = folder / "cells.npz", folder / "predictions.csv"
        np.savez(source, images=array)
        one_line_or_success(["classify", str(source), "--model", "zoo:classifier-jurkat4", "--out", str(out),
                             "--quiet"], out, capsys)
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(content=damaged_tiff(real_metaphase_tiff_bytes))
def test_segment_exits_2_in_one_line_on_a_damaged_image(content, capsys):
    folder = fresh_dir()
    try:
        (folder / "dapi.tif").write_bytes(content)
        out = folder / "labels.tif"
        one_line_or_success(["segment", str(folder / "dapi.tif"), "--model", "zoo:cellpose-chromosomes", "--out",
                             str(out), "--quiet"], out, capsys)
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(kind=st.sampled_from(["tif", "zarr"]), content=damaged_tiff(real_metaphase_tiff_bytes),
       metadata=st.one_of(st.just(None), st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_batch_exits_2_in_one_line_on_a_damaged_stack(kind, content, metadata, capsys):
    """A damaged TIFF, or a folder that calls itself Zarr with junk (or no) metadata and chunks."""
    folder = fresh_dir()
    try:
        if kind == "tif":
            source = folder / "stack.tif"
            source.write_bytes(content)
        else:
            source = folder / "stack.ome.zarr"
            (source / "0").mkdir(parents=True)
            if metadata is not None:
                (source / "zarr.json").write_bytes(metadata)
            (source / "0" / "c").write_bytes(content)
        out = folder / "run"
        one_line_or_success(["batch", str(source), "--segment-model", "zoo:cellpose-chromosomes", "--classifier",
                             "zoo:classifier-jurkat4", "--out", str(out), "--quiet"], out, capsys)
    finally:
        shutil.rmtree(folder)


AXIS_NAMES = st.lists(st.one_of(st.sampled_from(list("tzcyxq")), st.just({"name": "y"}), st.just({"type": "space"})),
                      max_size=6)
MULTISCALES = st.one_of(
    st.builds(lambda axes, path: [{"axes": axes, "datasets": [{"path": path}]}], AXIS_NAMES,
              st.sampled_from(["0", "0", "missing", ""])),
    st.sampled_from([[], [{}], [{"datasets": []}], [{"datasets": [{}]}], "0", [["0"]], {"datasets": "0"}]))


@settings(PROPERTY, max_examples=20)
@given(array=DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                                                                 max_side=5))),
       multiscales=st.one_of(st.none(), MULTISCALES))
def test_batch_exits_2_in_one_line_on_an_ome_zarr_of_any_array_and_metadata(array, multiscales, capsys):
    """A valid Zarr v3 store: a plain array of any dtype and shape, or an OME-Zarr group whose ``multiscales`` names
    its axes and datasets right, wrongly or not at all."""
    import zarr

    folder = fresh_dir()
    try:
        source = folder / "stack.ome.zarr"
        if multiscales is None:
            zarr.create_array(str(source), shape=array.shape, dtype=array.dtype)[...] = array
        else:
            group = zarr.open_group(str(source), mode="w")
            group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
            group.create_array("0", shape=array.shape, dtype=array.dtype)[...] = array
        out = folder / "run"
        one_line_or_success(["batch", str(source), "--segment-model", "zoo:cellpose-chromosomes", "--out", str(out),
                             "--quiet"], out, capsys)
    finally:
        shutil.rmtree(folder)


FLOATS = ["nan", "inf", "-1", "0", "0.5", "1", "1.5", "150"]
GENERATE_FIELDS = {  # each option's values: a valid baseline (M, 1 image, DDIM, 2 steps) with one of them changed
    "--class": ["M", "G1", "m", "X", ""], "--count": ["-1", "0", "2"], "--steps": ["-1", "0", "1", "1001"],
    "--sampler": ["ddim", "dpm_solver_pp_2m", "ddpm"], "--batch-size": ["-1", "0", "2"], "--seed": ["-1", "7"],
    "--guidance": FLOATS, "--eta": FLOATS, "--clip-x0": FLOATS, "--dynamic-percentile": FLOATS,
    "--guidance-interval": [f"{a} {b}" for a in ("nan", "-1", "0", "2") for b in ("inf", "0", "1", "5")]}
BASELINE = {"--class": "M", "--count": "1", "--sampler": "ddim", "--steps": "2", "--batch-size": "1", "--seed": "0"}


@settings(PROPERTY, max_examples=40)
@given(change=st.sampled_from(sorted(GENERATE_FIELDS)).flatmap(
    lambda option: st.tuples(st.just(option), st.sampled_from(GENERATE_FIELDS[option]))))
def test_generate_exits_2_in_one_line_on_any_setting(change, capsys):
    """The zoo's generator with one setting of a valid command changed to any value: images, or one line."""
    option, value = change
    extra = {"--dynamic-percentile": ["--threshold", "dynamic"], "--guidance-interval": ["--guidance", "2"]}
    folder = fresh_dir()
    try:
        out = folder / "generated"
        options = BASELINE | {option: value}
        argv = ["generate", "--model", "zoo:ddpm-jurkat4-cut10-v", *extra.get(option, []),
                *[part for key, v in options.items() for part in (key, *v.split(" "))], "--out", str(out), "--quiet"]
        if one_line_or_success(argv, out, capsys) == 0:
            images = [tifffile.imread(p) for p in sorted(out.glob("*.tif"))]
            assert len(images) == int(options["--count"]) and all(np.isfinite(i).all() and i.any() for i in images)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("which", ["real", "synthetic"])
@PROPERTY
@given(content=damaged(real_npz_bytes()))
def test_filter_exits_2_in_one_line_on_damaged_crops(which, content, capsys):
    folder = fresh_dir()
    try:
        np.savez(folder / "good.npz", images=CELLS, labels=np.array(["G1", "S_phase", "G2", "Prophase"] * 1 + ["G1"] * 2))
        (folder / "bad.npz").write_bytes(content)
        real, synthetic = (folder / "bad.npz", folder / "good.npz") if which == "real" else \
            (folder / "good.npz", folder / "bad.npz")
        out = folder / "filtered"
        one_line_or_success(["filter", "--classifier", "zoo:classifier-jurkat4", "--real", str(real), "--synthetic",
                             str(synthetic), "--minority", "M", "--out", str(out)], out, capsys)
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(content=st.one_of(damaged(real_npz_bytes()), damaged_tiff(real_tiff_bytes)),
       kind=st.sampled_from(["npz", "tif"]))
def test_train_classifier_exits_2_in_one_line_on_damaged_crops(content, kind, capsys):
    folder = fresh_dir()
    try:
        (folder / f"cells.{kind}").write_bytes(content)
        out = folder / "run"
        one_line_or_success(["train", "classifier", "--data", str(folder / f"cells.{kind}"), "--steps", "1",
                             "--out", str(out), "--quiet"], out, capsys)
    finally:
        shutil.rmtree(folder)


@PROPERTY
@given(dapi=damaged_tiff(real_metaphase_tiff_bytes), labels=st.one_of(ARRAYS, st.just(None)))
def test_translate_exits_2_in_one_line_on_a_damaged_plane_or_labels(bbdm_bundle, dapi, labels, capsys):
    folder = fresh_dir()
    try:
        (folder / "dapi.tif").write_bytes(dapi)
        if labels is None:  # the labels file damaged instead
            (folder / "labels.tif").write_bytes(dapi[: len(dapi) // 2])
        else:
            try:
                tifffile.imwrite(folder / "labels.tif", labels)
            except Exception:  # noqa: BLE001 - tifffile cannot write every drawn array; those are not inputs
                return
        out = folder / "fish"
        one_line_or_success(["translate", "--model", str(bbdm_bundle), "--dapi", str(folder / "dapi.tif"),
                             "--labels", str(folder / "labels.tif"), "--steps", "2", "--out", str(out), "--quiet"],
                            out, capsys)
    finally:
        shutil.rmtree(folder)


STUDY_FIELDS = {  # a valid study (the sample cells, one seed, tiny runs) with one option changed to any value
    "--data": ["damaged"], "--rare": ["M", "X", ""], "--keep": ["M=0", "M=-1", "M=1.5", "M=nan", "X=3", "M", "M=10000"],
    "--seeds": ["-1", "0 0"], "--steps": ["-1", "0"], "--count": ["-1", "0"], "--width": ["0", "-8"],
    "--arms": ["nothing", "copies"], "--label-map": ["nothing", "{}"]}


@settings(PROPERTY, max_examples=20)
@given(change=st.sampled_from(sorted(STUDY_FIELDS)).flatmap(
    lambda option: st.tuples(st.just(option), st.sampled_from(STUDY_FIELDS[option]))),
       content=damaged(real_npz_bytes()))
def test_study_exits_2_in_one_line_on_any_setting_or_damaged_data(change, content, capsys):
    """``cellsynth study`` on the 226 sample cells with one option changed (or its data damaged): a study, or one
    line."""
    option, value = change
    folder = fresh_dir()
    try:
        data, out = folder / "cells.npz", folder / "study"
        if option == "--data":
            data.write_bytes(content)
        else:  # the 226 sample cells with their labels, as the package ships them
            sample = load_jurkat_sample()
            np.savez(data, images=sample["images"], labels=sample["labels"], channels=sample["channels"])
        options = {"--data": str(data), "--label-map": "jurkat4", "--rare": "M", "--seeds": "0", "--steps": "2",
                   "--count": "4", "--width": "8", "--arms": "real"}
        if option != "--data":
            options[option] = value
        argv = ["study", *[part for key, v in options.items() for part in (key, *v.split(" "))], "--out", str(out),
                "--quiet"]
        one_line_or_success(argv, out, capsys)
    finally:
        shutil.rmtree(folder)
