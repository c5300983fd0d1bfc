"""Rebuild the sample data shipped in src/napari_cellsynth/sample_data from ../shared/data.

    python scripts/make_sample_data.py [--shared ../shared/data]

* jurkat_sample.npz: a fixed, seeded subset of Jurkat cells from every phase, with
  ``source_index`` (rows of jurkat_cells.npz) so that training can leave them out.
* mfish_V2605_54.tif: one Vysis M-FISH metaphase with a t(X;4) translocation,
  planes DAPI, A, F, G, R, Y (C×H×W uint8) and the karyotype labels K (H×W uint8).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import tifffile

PER_CLASS = {"G1": 60, "S_phase": 50, "G2": 50, "Prophase": 40, "Metaphase": 16, "Anaphase": 4, "Telophase": 6}
MFISH_FOLDER, MFISH_ID, MFISH_PLANES = "V26__54", "V260554", ["D", "A", "F", "G", "R", "Y"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    args = parser.parse_args()
    shared, out = Path(args.shared), Path(__file__).resolve().parents[1] / "src/napari_cellsynth/sample_data"
    out.mkdir(exist_ok=True)
    with np.load(shared / "jurkat/jurkat_cells.npz", allow_pickle=False) as data:
        labels, rng = data["labels"], np.random.default_rng(20261122)
        index = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == name), count, replace=False)
                                        for name, count in PER_CLASS.items()]))
        np.savez_compressed(out / "jurkat_sample.npz", images=data["images"][index], labels=labels[index],
                            experiment=data["experiment"][index], channels=data["channels"], source_index=index)
    shutil.copy(shared / "jurkat/LICENSE", out / "LICENSE_jurkat.txt")
    folder = shared / "mfish" / MFISH_FOLDER
    planes = np.stack([tifffile.imread(folder / f"{MFISH_ID}{p}.tif") for p in MFISH_PLANES])
    karyotype = tifffile.imread(folder / f"{MFISH_ID}K.tif")
    tifffile.imwrite(out / f"mfish_{MFISH_ID}.tif", planes, compression="zlib",
                     metadata={"planes": MFISH_PLANES, "axes": "CYX"})
    tifffile.imwrite(out / f"mfish_{MFISH_ID}_K.tif", karyotype, compression="zlib")
    notice = (shared / "mfish/README.TXT").read_text(errors="replace").split("-" * 80)[0]
    (out / "LICENSE_mfish.txt").write_text(notice)
    print(f"wrote {out}: {len(index)} Jurkat cells, metaphase {MFISH_ID} {planes.shape}")


if __name__ == "__main__":
    main()
