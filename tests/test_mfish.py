"""The M-FISH chromosome data set builder on two real metaphases (one normal, one t(X;4))."""

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, require
from napari_cellsynth.training.data.mfish import parse_karyotype_codes, read_metaphase

MFISH = SHARED_DATA / "mfish"


def test_karyotype_codes_give_the_translocations():
    codes = parse_karyotype_codes(require(MFISH / "README.TXT"))
    assert codes["54"]["translocations"] == [(23, 4)]
    assert codes["XY"]["translocations"] == [] and codes["XY"]["iscn"] == "46, XY"
    assert (9, 14) in codes["51"]["translocations"]  # written "(9;14)" without the t
    assert codes["62"]["translocations"][-1] == (20, 5)
    # every class a karyotype names: losses, gains, exchanges, notes; a lost sex chromosome names X and Y
    assert codes["54"]["mentioned"] == [4, 23] and codes["XX"]["mentioned"] == []
    assert codes["26"]["mentioned"] == [3, 5, 13, 18]  # "45, XY, -13, -18, 3 +der(5)"
    assert codes["29"]["mentioned"] == [8, 10, 11, 13, 22]  # "(8,10,13 on edge of image)"
    assert codes["56"]["mentioned"] == [6, 23, 24] and codes["EX"]["mentioned"] is None


def test_reading_a_metaphase_and_a_missing_plane(tmp_path):
    mp = read_metaphase(require(MFISH / "V26__54"), "V260754")
    assert mp.probe_set == "V" and mp.code == "54" and mp.slide == "V26"
    assert mp.dapi.shape == mp.karyotype.shape and mp.fluorophores.shape == (5, *mp.dapi.shape)
    with pytest.raises(FileNotFoundError, match="needs DAPI and five fluorophore planes"):
        read_metaphase(tmp_path, "V990154")


def test_builder_counts_shapes_and_label_rule(tmp_path):
    from napari_cellsynth.training.data import mfish_dataset

    require(MFISH)
    summary = mfish_dataset.main(["--root", str(MFISH), "--only", "V1401XX", "V260754", "--codes-from", str(MFISH),
                                  "--size", "64", "--out", str(tmp_path)])
    with np.load(tmp_path / "chromosomes.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    n = len(arrays["translocation"])
    assert arrays["dapi"].shape == (n, 1, 64, 64) and arrays["rgb"].shape == (n, 3, 64, 64)
    assert arrays["dapi"].dtype == np.uint8
    normal = arrays["metaphase"] == "V1401XX"
    assert 40 <= normal.sum() <= 50  # a 46,XX metaphase, overlaps and tiny pieces left out
    assert (arrays["translocation"][normal] == 0).all()
    # in the t(X;4) metaphase only X or 4 chromosomes can be positive; the classes its karyotype never names
    # are negatives (the default rule), X and 4 chromosomes without the partner's segment unknown
    aberrant = ~normal
    positive = arrays["translocation"] == 1
    named = np.isin(arrays["chromosome_class"], [4, 23])
    assert positive.sum() >= 1 and set(arrays["chromosome_class"][positive]) <= {4, 23}
    assert (arrays["translocation"][aberrant & ~named] == 0).all() and (aberrant & ~named).sum() >= 30
    assert set(arrays["translocation"][aberrant & named]) <= {1, -1}
    assert (arrays["partner_fraction"][positive] >= 0.1).all()
    # each crop shows one chromosome: DAPI signal in the centre, zeros in the corners
    assert (arrays["dapi"][:, 0, 28:36, 28:36].max(axis=(1, 2)) > 0).all()
    assert (arrays["dapi"][:, 0, :4, :4] == 0).all(axis=(1, 2)).mean() > 0.9  # long diagonal ones may reach a corner
    assert summary["counts"]["translocation"]["positive"] == positive.sum()
    task = np.load(tmp_path / "translocation_task.npz", allow_pickle=False)
    assert set(task["labels"]) == {"translocation", "normal"} and len(task["images"]) == (arrays["translocation"] >= 0).sum()
    codes = json.loads((tmp_path / "dataset.json").read_text())["class_codes"]["V"]
    assert len(codes) == 24 and len({tuple(c) for c in codes}) == 24  # combinatorial labelling: all distinct
    assert (tmp_path / "examples.png").is_file()
    assert json.loads((tmp_path / "dataset.json").read_text())["rule"]["negatives"] == "unmentioned"
    # the first rule: negatives from normal karyotypes only, every other chromosome of t(X;4) unknown
    mfish_dataset.main(["--root", str(MFISH), "--only", "V1401XX", "V260754", "--codes-from", str(MFISH),
                        "--size", "64", "--negatives", "normal-karyotypes", "--out", str(tmp_path / "first-rule")])
    with np.load(tmp_path / "first-rule" / "chromosomes.npz", allow_pickle=False) as data:
        first = data["translocation"]
    assert np.array_equal(first == 1, positive) and (first[aberrant & ~positive] == -1).all()


def test_held_out_slides_learn_codes_elsewhere_and_unlisted_karyotypes_are_named(tmp_path, capsys):
    """A folder of new slides: its codes come from --codes-from; a metaphase whose karyotype code its README.TXT
    does not list is warned about in one line, and its chromosomes are labelled unknown (-1)."""
    import shutil

    from napari_cellsynth.training.data import mfish_dataset

    root = tmp_path / "new"
    shutil.copytree(require(MFISH / "V26__54"), root / "V26__54",
                    ignore=lambda folder, names: [n for n in names if n.endswith(".tif") and "V260754" not in n])
    (root / "README.TXT").write_text("no karyotype tables here\n")
    mfish_dataset.main(["--root", str(root), "--codes-from", str(MFISH), "--size", "64", "--out", str(tmp_path / "o")])
    warning = [line for line in capsys.readouterr().err.splitlines() if "missing from" in line]
    assert len(warning) == 1 and "54" in warning[0] and "unknown (-1)" in warning[0]
    with np.load(tmp_path / "o" / "chromosomes.npz", allow_pickle=False) as data:
        assert len(data["translocation"]) > 30 and (data["translocation"] == -1).all()
