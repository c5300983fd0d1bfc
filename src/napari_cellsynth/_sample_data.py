"""Sample data shipped with the plugin (licences beside the files in ``sample_data/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_DIR = Path(__file__).parent / "sample_data"
JURKAT_SAMPLE = SAMPLE_DIR / "jurkat_sample.npz"
MFISH_SAMPLE = SAMPLE_DIR / "mfish_V260554.tif"
MFISH_PLANES = ["DAPI", "S.Aqua", "Far Red", "S.Green", "S.Red", "S.Gold"]


def load_jurkat_sample() -> dict[str, np.ndarray]:
    with np.load(JURKAT_SAMPLE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def jurkat_cells():
    """226 Jurkat cells (N×3×40×40 uint16) from all seven phases, as one image layer."""
    data = load_jurkat_sample()
    metadata = {"labels": data["labels"].tolist(), "channels": data["channels"].tolist(),
                "source": "Jurkat cell cycle (Eulenberg et al. 2017), BSD-3-Clause"}
    return [(data["images"], {"name": "Jurkat cells", "metadata": metadata, "axis_labels": ("cell", "channel", "y", "x"),
                              "contrast_limits": [0, int(np.percentile(data["images"], 99.9))]}, "image")]


def mfish_metaphase():
    """A Vysis M-FISH metaphase, 46,XX,t(X;4): DAPI and five fluorophore planes, plus its karyotype."""
    import tifffile

    planes = tifffile.imread(MFISH_SAMPLE)
    karyotype = tifffile.imread(MFISH_SAMPLE.with_name(MFISH_SAMPLE.stem + "_K.tif")).astype(np.int32)
    karyotype[karyotype == 255] = 0  # overlaps carry no single class
    colormaps = ["blue", "cyan", "magenta", "green", "red", "yellow"]
    layers = [(planes[i], {"name": name, "colormap": colormaps[i], "blending": "additive", "visible": i == 0,
                           "axis_labels": ("y", "x")}, "image") for i, name in enumerate(MFISH_PLANES)]
    layers.append((karyotype, {"name": "karyotype (1-22, X=23, Y=24)", "opacity": 0.4, "axis_labels": ("y", "x")},
                   "labels"))
    return layers
