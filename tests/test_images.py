import numpy as np
import pytest

from napari_cellsynth.core.bundle import Card
from napari_cellsynth.core.images import ImageInputError, as_stack, normalize, prepare

CARD = Card(kind="classifier", name="c3", classes=["a", "b"], channels=["bf", "dna", "df"], input={"size": [40, 40]},
            normalization={"type": "standardize", "mean": [10.0, 20.0, 30.0], "std": [2.0, 4.0, 5.0]})


def test_accepted_shapes():
    assert as_stack(np.zeros((5, 3, 40, 40), np.uint16), 3).shape == (5, 3, 40, 40)
    assert as_stack(np.zeros((3, 40, 40)), 3).shape == (1, 3, 40, 40)
    assert as_stack(np.zeros((7, 40, 40)), 1).shape == (7, 1, 40, 40)
    assert as_stack(np.zeros((40, 40)), 1).shape == (1, 1, 40, 40)


@pytest.mark.parametrize("shape, message", [
    ((40, 40), r"rank 2.*N×3×H×W"),
    ((2, 2, 3, 40, 40), r"rank 5"),
    ((4, 40, 40), r"rank 3"),
    ((4, 2, 40, 40), r"2 channel\(s\).*trained on 3"),
    ((0, 3, 40, 40), "no crops"),
])
def test_bad_shapes_are_named(shape, message):
    with pytest.raises(ImageInputError, match=message):
        prepare(np.zeros(shape, np.float32), CARD)


def test_wrong_size_names_both_sizes_and_the_fix():
    with pytest.raises(ImageInputError, match=r"32×32 pixels but bundle 'c3' takes 40×40.*resize"):
        prepare(np.zeros((2, 3, 32, 32)), CARD)


def test_nan_is_refused_with_the_crop_index():
    data = np.zeros((4, 3, 40, 40), np.float32)
    data[2, 1, 5, 5] = np.nan
    with pytest.raises(ImageInputError, match=r"NaN.*crop\(s\) \[2\]"):
        prepare(data, CARD)


@pytest.mark.parametrize("dtype", [bool, object, complex])
def test_non_numeric_dtypes_are_refused(dtype):
    with pytest.raises(ImageInputError, match="dtype"):
        prepare(np.zeros((1, 3, 40, 40), dtype=dtype), CARD)


def test_standardisation_per_channel_and_uint16_kept_exact():
    data = np.stack([np.full((40, 40), v, np.uint16) for v in (12, 28, 65535)])[None]
    out = normalize(data, CARD.normalization)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 2.0, (65535 - 30) / 5], rtol=1e-6)
