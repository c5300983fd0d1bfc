import numpy as np
import pytest
import tifffile

from napari_cellsynth._sample_data import load_jurkat_sample
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.images import ImageInputError
from napari_cellsynth.core.label_maps import apply_label_map, resolve_label_map


@pytest.fixture(scope="module")
def sample():
    return load_jurkat_sample()


def test_npz_keeps_dtype_labels_and_channels(sample, tmp_path):
    crops = read_crops(_write_npz(tmp_path, sample))
    assert crops.images.dtype == np.uint16 and crops.images.shape == sample["images"].shape
    assert crops.channels == ["brightfield", "DNA", "darkfield"]
    assert crops.labels.tolist() == sample["labels"].tolist()


def _write_npz(tmp_path, sample):
    path = tmp_path / "cells.npz"
    np.savez(path, images=sample["images"], labels=sample["labels"], channels=sample["channels"])
    return path


def test_tiff_stack_with_labels_csv(sample, tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", sample["images"][:10])
    rows = ["index,label"] + [f"{i},{lab}" for i, lab in reversed(list(enumerate(sample["labels"][:10])))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    crops = read_crops(tmp_path / "stack.tif", tmp_path / "labels.csv")
    np.testing.assert_array_equal(crops.images, sample["images"][:10])
    assert crops.labels.tolist() == sample["labels"][:10].tolist()
    (tmp_path / "short.csv").write_text("label\nG1\n")
    with pytest.raises(ImageInputError, match=r"no label for slice"):
        read_crops(tmp_path / "stack.tif", tmp_path / "short.csv")


def test_folder_per_class_and_channels_last_png(sample, tmp_path):
    for i in range(6):
        folder = tmp_path / "cells" / str(sample["labels"][i * 30])
        folder.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / f"cell{i}.tif", sample["images"][i * 30])
    crops = read_crops(tmp_path / "cells")
    assert crops.images.shape == (6, 3, 40, 40) and crops.images.dtype == np.uint16
    assert set(crops.labels) == {str(sample["labels"][i * 30]) for i in range(6)}
    from skimage.io import imsave

    flat = tmp_path / "flat"
    flat.mkdir()
    imsave(flat / "rgb.png", np.zeros((40, 40, 3), np.uint8), check_contrast=False)
    assert read_crops(flat).images.shape == (1, 3, 40, 40)


def test_grey_and_colour_classes_are_made_alike_with_a_warning(sample, tmp_path):
    """One class saved as grey PNGs and another as colour ones: all become colour, and the note says the format
    alone tells the classes apart."""
    from skimage.io import imsave

    for name, k, colour in (("G1", 0, False), ("G2", 60, True)):
        folder = tmp_path / "mixed" / name
        folder.mkdir(parents=True)
        for i in range(3):
            dna = (sample["images"][k + i, 1] // 257).astype(np.uint8)  # the real DNA channel, 8 bits
            imsave(folder / f"{i}.png", np.stack([dna] * 3, axis=-1) if colour else dna, check_contrast=False)
    crops = read_crops(tmp_path / "mixed")
    assert crops.images.shape[1] == 3
    assert any("class G1 is grey and G2 colour throughout" in note for note in crops.notes)


def test_bad_inputs(tmp_path):
    np.savez(tmp_path / "noimages.npz", pictures=np.zeros((2, 4, 4)))
    with pytest.raises(ImageInputError, match="no 'images' array"):
        read_crops(tmp_path / "noimages.npz")
    np.savez(tmp_path / "pickled.npz", images=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ImageInputError, match="pickled objects"):
        read_crops(tmp_path / "pickled.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageInputError, match="holds no"):
        read_crops(tmp_path / "empty")
    with pytest.raises(ImageInputError, match="does not exist"):
        read_crops(tmp_path / "missing.npz")


def test_label_maps(sample):
    y, classes = apply_label_map(sample["labels"], resolve_label_map("jurkat4", sample["labels"]))
    assert classes == ["G1", "S", "G2", "M"]
    mitotic = np.isin(sample["labels"], ["Prophase", "Metaphase", "Anaphase", "Telophase"])
    assert (y[mitotic] == 3).all() and (y[~mitotic] < 3).all()
    y7, classes7 = apply_label_map(sample["labels"], resolve_label_map("jurkat7", sample["labels"]))
    assert classes7[0] == "G1" and len(classes7) == 7
    assert resolve_label_map(None, ["b", "a"]) == {"a": ["a"], "b": ["b"]}
    with pytest.raises(ValueError, match="not in the label map"):
        apply_label_map(["G1", "Interphase"], resolve_label_map("jurkat4", []))
    with pytest.raises(ValueError, match="unknown label map"):
        resolve_label_map("jurkat5", [])
