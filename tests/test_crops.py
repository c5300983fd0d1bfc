import numpy as np
import pytest
import tifffile
from conftest import NUCLEI, require

from napari_cellsynth.core.crops import as_channels_first, cut_window, extract_object_crops, square_box
from napari_cellsynth.core.images import ImageInputError


def test_square_box_is_centred_and_grown_by_the_margin():
    assert square_box((10, 20, 20, 40), 0.0) == (5, 20, 25, 40)
    top, left, bottom, right = square_box((10, 20, 20, 40), 0.25)
    assert bottom - top == right - left == 30
    assert (top + bottom) / 2 == 15 and (left + right) / 2 == 30


def test_cut_window_repeats_the_edge_outside_the_image():
    image = np.arange(25, dtype=float).reshape(1, 5, 5)
    window = cut_window(image, (-2, -2, 3, 3))
    assert window.shape == (1, 5, 5)
    np.testing.assert_array_equal(window[0, :3, :3], np.full((3, 3), 0.0))
    np.testing.assert_array_equal(window[0, 2:, 2:], image[0, :3, :3])


def test_one_crop_per_real_nucleus_in_intensity_range():
    image = tifffile.imread(require(NUCLEI / "img2d.tif"))
    mask = tifffile.imread(NUCLEI / "mask2d.tif")
    objects = extract_object_crops(image[None], mask, (32, 32), margin=0.1)
    ids = np.unique(mask)[1:]
    assert objects.crops.shape == (len(ids), 1, 32, 32)
    np.testing.assert_array_equal(objects.labels, ids)
    assert objects.crops.min() >= image.min() and objects.crops.max() <= image.max()
    # a nucleus sits in the middle of its crop: the centre is brighter than the crop's corners
    centre = objects.crops[:, 0, 12:20, 12:20].mean(axis=(1, 2))
    corners = objects.crops[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]].mean(axis=1)
    assert (centre > corners).mean() > 0.9


def test_crop_without_resizing_matches_the_image():
    image = np.random.default_rng(0).random((2, 50, 50)).astype(np.float32)
    labels = np.zeros((50, 50), np.int32)
    labels[10:20, 30:40] = 7
    objects = extract_object_crops(image, labels, (10, 10), margin=0.0)
    np.testing.assert_allclose(objects.crops[0], image[:, 10:20, 30:40], rtol=1e-6)
    assert objects.labels.tolist() == [7]


def test_only_object_keeps_the_objects_pixels_and_zeroes_the_rest():
    """Crops cut as the M-FISH chromosome set's are: the object's own pixels, neighbours and background 0."""
    image = np.full((1, 30, 30), 5.0, np.float32)
    labels = np.zeros((30, 30), np.int32)
    labels[10:15, 10:15] = 1
    labels[10:15, 16:20] = 2  # a neighbour inside object 1's window
    image[0][labels == 1], image[0][labels == 2] = 100, 200
    plain = extract_object_crops(image, labels, (20, 20), margin=0.0, keep_scale=True)
    only = extract_object_crops(image, labels, (20, 20), margin=0.0, keep_scale=True, only_object=True)
    assert 200 in plain.crops[0] and 5 in plain.crops[0]
    assert (only.crops[0] == 100).sum() == 25 and (only.crops[0] == 0).sum() == 20 * 20 - 25
    assert (only.crops[1] == 200).sum() == 20 and (only.crops[1] == 0).sum() == 20 * 20 - 20


def test_bad_labels_and_images_are_named():
    image = np.zeros((3, 64, 64))
    with pytest.raises(ImageInputError, match="no objects"):
        extract_object_crops(image, np.zeros((64, 64), np.int32), (40, 40))
    with pytest.raises(ImageInputError, match="integer object ids"):
        extract_object_crops(image, np.zeros((64, 64), np.float32), (40, 40))
    with pytest.raises(ImageInputError, match="labels are 32×32 but the image is 64×64"):
        as_channels_first(image, 3, (32, 32))
    with pytest.raises(ImageInputError, match="needs 3 channel"):
        as_channels_first(np.zeros((64, 64)), 3, (64, 64))
    assert as_channels_first(np.zeros((64, 64, 3)), 3, (64, 64)).shape == (3, 64, 64)
