"""umap-learn's and Cellpose's numba functions kept compiled on disk (core/numba_cached.py): a later process loads
them instead of compiling, and what they compute is bit for bit what the libraries as shipped compute."""

import numpy as np

from conftest import REPO, child_json

CHILD = """
import json, sys
import numpy as np
if sys.argv[1] == "shipped":  # the libraries as they ship: imported first, compiled afresh in this process
    import umap
    import cellpose.models
from napari_cellsynth.core.numba_cached import import_cellpose, import_umap
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.segment import SegmentSettings, segment
from napari_cellsynth._sample_data import MFISH_SAMPLE
import tifffile

if sys.argv[1] != "shipped":
    umap, cellpose = import_umap(), import_cellpose()
features = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
fitted = umap.UMAP(n_epochs=50, random_state=0).fit(features)
labels = run_to_end(segment(tifffile.imread(MFISH_SAMPLE)[0][160:352, 200:392], SegmentSettings(sys.argv[3])))
np.savez(sys.argv[2], embedding=fitted.embedding_, placed=fitted.transform(features[:20]), labels=labels)
from numba.core.dispatcher import Dispatcher
counts = {}
for library in ("umap", "cellpose"):
    functions = [f for name, m in list(sys.modules.items()) if name.split(".")[0] == library
                 for f in vars(m).values() if isinstance(f, Dispatcher)]
    counts[library] = {"loaded": sum(sum(f.stats.cache_hits.values()) for f in functions),
                       "compiled": sum(sum(f.stats.cache_misses.values()) for f in functions)}
print(json.dumps(counts))
"""


def test_a_later_process_loads_the_compiled_functions_and_computes_identically(tmp_path):
    """Three processes: the libraries as shipped, then two with the disk cache (the first may write it, the second
    loads it).  UMAP's embedding and placed points, and Cellpose's labels of a 192 × 192 window of a real metaphase,
    are equal."""
    model = str(REPO / "models" / "cellpose-chromosomes")

    def child(mode: str) -> dict:
        return child_json(CHILD, mode, tmp_path / f"{mode}.npz", model)

    shipped, _, cached = child("shipped"), child("first"), child("cached")
    for library in ("umap", "cellpose"):
        assert cached[library]["loaded"] > shipped[library]["loaded"], (library, shipped, cached)
        assert cached[library]["compiled"] < shipped[library]["compiled"], (library, shipped, cached)
    with np.load(tmp_path / "shipped.npz") as reference:
        assert reference["labels"].max() > 10  # chromosomes were found (23 karyotyped in this window): it means something
        for mode in ("first", "cached"):
            with np.load(tmp_path / f"{mode}.npz") as other:
                for key in ("embedding", "placed", "labels"):
                    np.testing.assert_array_equal(other[key], reference[key], err_msg=f"{mode}: {key}")
