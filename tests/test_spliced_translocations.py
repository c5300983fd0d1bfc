"""Issue 20: synthetic translocations spliced from two chromosomes of one metaphase."""

import numpy as np
import pytest

from napari_cellsynth.training.data.spliced_translocations import splice, spliced_set


def bar(rows: slice, cols: slice, planes: dict[int, int]) -> np.ndarray:
    """A 4×32×32 crop: a DAPI bar with a gradient along it and constant fluorophore planes."""
    crop = np.zeros((4, 32, 32), np.uint8)
    crop[0, rows, cols] = 50 + np.arange(cols.stop - cols.start, dtype=np.uint8)[None, :]
    for plane, value in planes.items():
        crop[plane, rows, cols] = value
    return crop


def test_splice_paints_one_end_of_the_recipient_in_the_donors_colour():
    recipient = bar(slice(12, 18), slice(2, 30), {1: 100})  # horizontal, painted in plane 1
    donor = np.transpose(bar(slice(12, 18), slice(4, 28), {2: 200}), (0, 2, 1)).copy()  # vertical, plane 2
    for seed in range(6):
        out = splice(recipient, donor, 0.3, np.random.default_rng(seed))
        own = recipient[0] > 0
        assert np.array_equal(out[0], recipient[0]) and np.array_equal(out.any(axis=0), own)  # DAPI and outline kept
        painted = own & (out[2] > 0)
        assert abs(painted.sum() / own.sum() - 0.3) < 0.05
        assert np.all(out[1][painted] == 0) and np.all(out[2][painted] == 200)  # the donor's code, its intensity
        assert np.array_equal(out[1][own & ~painted], recipient[1][own & ~painted])
        columns = np.flatnonzero(painted.any(axis=0))  # one terminal segment, cut across the long axis
        assert columns.min() == 2 or columns.max() == 29
        assert np.ptp(columns) + 1 == len(columns) and not (painted.any(axis=0) & (own & ~painted).any(axis=0)).any()


def test_an_interstitial_splice_paints_one_band_inside():
    recipient = bar(slice(12, 18), slice(2, 30), {1: 100})
    donor = bar(slice(10, 20), slice(1, 31), {2: 200})
    for seed in range(6):
        out = splice(recipient, donor, 0.2, np.random.default_rng(seed), interstitial=True)
        own = recipient[0] > 0
        painted = own & (out[2] > 0)
        assert abs(painted.sum() / own.sum() - 0.2) < 0.05 and np.all(out[2][painted] == 200)
        columns = np.flatnonzero(painted.any(axis=0))
        assert columns.min() > 2 and columns.max() < 29  # both ends keep the recipient's colour
        assert np.ptp(columns) + 1 == len(columns)  # one band, cut across the long axis


def test_splice_refuses_what_it_cannot_cut():
    crop = bar(slice(12, 18), slice(2, 30), {1: 100})
    with pytest.raises(ValueError, match="fraction must be in"):
        splice(crop, crop, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fraction must be in .* for a band"):
        splice(crop, crop, 0.85, np.random.default_rng(0), interstitial=True)
    with pytest.raises(ValueError, match="chromosome pixels"):
        splice(crop, np.zeros_like(crop), 0.3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="C×H×W crops"):
        splice(crop[:1], crop[:1], 0.3, np.random.default_rng(0))


def test_spliced_set_pairs_classes_within_a_metaphase_on_real_chromosomes(mfish_five_metaphases):
    with np.load(mfish_five_metaphases, allow_pickle=False) as data:
        images = np.concatenate([data["dapi"], data["fluorophores"]], axis=1)
        classes, metaphases = data["chromosome_class"], data["metaphase"]
        negatives = np.flatnonzero(data["translocation"] == 0)
    made = spliced_set(images, classes, metaphases, negatives, 40, seed=3)
    assert made["images"].shape == (40, *images.shape[1:]) and made["images"].dtype == images.dtype
    assert set(made["recipient"]) <= set(negatives) and set(made["donor"]) <= set(negatives)
    assert np.all(metaphases[made["recipient"]] == metaphases[made["donor"]])
    assert np.all(classes[made["recipient"]] != classes[made["donor"]])
    assert np.all((made["fraction"] >= 0.15) & (made["fraction"] <= 0.5))
    for k in range(40):
        source, out = images[made["recipient"][k]], made["images"][k]
        assert np.array_equal(out[0], source[0])  # DAPI untouched
        changed = (out[1:] != source[1:]).any(axis=0)
        assert changed.sum() <= 0.55 * source.any(axis=0).sum()
    assert not made["interstitial"].any()
    mixed = spliced_set(images, classes, metaphases, negatives, 200, seed=3, interstitial=0.3)
    assert 0.2 < mixed["interstitial"].mean() < 0.4
    assert np.all((mixed["fraction"][mixed["interstitial"]] >= 0.1) & (mixed["fraction"][mixed["interstitial"]] <= 0.3))
    again = spliced_set(images, classes, metaphases, negatives, 40, seed=3)
    assert np.array_equal(again["images"], made["images"])
    with pytest.raises(ValueError, match="no metaphase has two chromosomes"):
        one_class = negatives[classes[negatives] == classes[negatives[0]]]
        spliced_set(images, classes, metaphases, one_class, 5, seed=0)


def test_the_command_writes_training_crops_from_the_kept_slides(mfish_five_metaphases, tmp_path):
    import subprocess
    import sys

    from napari_cellsynth.training.data.labelled_crops import read_crops

    out = tmp_path / "spliced.npz"
    command = [sys.executable, "-m", "napari_cellsynth.training.data.spliced_translocations", "--chromosomes",
               str(mfish_five_metaphases), "--exclude-slides", "V26", "--count", "25", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    crops = read_crops(str(out))
    assert crops.images.shape[:2] == (25, 6) and set(crops.labels) == {"translocation"}
    with np.load(out, allow_pickle=False) as made:
        assert "V26" not in set(made["slide"].tolist())
    bad = subprocess.run(command[:-4] + ["Z99", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "--exclude-slides ['Z99'] are not in" in bad.stderr
    assert "Traceback" not in bad.stderr
