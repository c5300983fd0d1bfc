"""Export a classifier bundle as a BioImage Model Zoo package (bioimage.io model spec 0.5).

    cellsynth export bioimageio zoo:classifier-jurkat4 --out jurkat4.bioimageio.zip
    cellsynth export bioimageio bundles/my-cells --out my-cells.zip --test-data my_cells/

The package holds ``rdf.yaml``, the bundle's ONNX graph as its weights, test inputs and outputs (real crops and
what ONNX Runtime makes of them), a cover, a README from the card, and licence and citation fields.  The card's
per-channel standardisation becomes the input's ``fixed_zero_mean_unit_variance`` preprocessing, so any
bioimage.io consumer (deepImageJ, ilastik, bioimageio.core) feeds the network as napari-cellsynth does; the
outputs are the logits (one channel per class) and the penultimate features.  The package is validated with
``bioimageio.spec`` before it is moved into place, and refused if it does not pass.

Test crops: ``--test-data`` (anything ``cellsynth classify`` reads), or, for a bundle of the plugin's three Jurkat
channels, its sample cells.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from napari_cellsynth import __version__
from napari_cellsynth.core.bundle import BundleError
from napari_cellsynth.core.datasets import read_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.images import prepare
from napari_cellsynth.core.runtime import OnnxModel

TEST_CROPS = 2
PROJECT_URL = "https://github.com/napari-cellsynth/napari-cellsynth"


def identifier(name: str) -> str:
    """A bioimage.io identifier for a class or channel name (letters, digits and underscores, not a digit first)."""
    text = re.sub(r"\W", "_", str(name))
    return text if text[:1].isalpha() else f"c_{text}"


def test_crops(model: OnnxModel, test_data: str | None) -> np.ndarray:
    """Real crops for the package's test tensors, at the bundle's size, as float32."""
    card = model.card
    if test_data is None:
        from napari_cellsynth._sample_data import load_jurkat_sample

        sample = load_jurkat_sample()
        if sample["images"].shape[1] != card.n_channels:
            raise ValueError(f"bundle '{card.name}' takes {card.n_channels} channel(s), not the sample cells' 3; give "
                             "--test-data with crops it classifies (npz, TIFF stack or folder)")
        images = sample["images"]
    else:
        fit = card.size_fit
        images = read_crops(test_data, size=fit.size if fit else None, fit=fit.fit if fit else None).images
    if images.shape[1:] != (card.n_channels, *card.image_size):
        raise ValueError(f"--test-data crops are {images.shape[1:]}, the bundle takes "
                         f"{(card.n_channels, *card.image_size)}")
    return np.ascontiguousarray(images[:TEST_CROPS], np.float32)


def write_cover(crops: np.ndarray, path: Path) -> None:
    """The test crops side by side, each channel scaled to its own range (a grey or RGB picture)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tiles = []
    for crop in crops:
        planes = [(c - c.min()) / max(float(np.ptp(c)), 1e-6) for c in crop[:3]]
        tiles.append(np.stack(planes, -1) if len(planes) == 3 else planes[0])
    picture = np.concatenate(tiles, axis=1)
    plt.imsave(path, np.repeat(np.repeat(picture, 4, axis=0), 4, axis=1), cmap="gray")


def readme(card, source: str) -> str:
    training = card.training or {}
    metrics = training.get("test_metrics") or {}
    lines = [f"# {card.name}", "", f"A napari-cellsynth classifier exported from `{source}` "
             f"(napari-cellsynth {__version__}).", "",
             f"- classes: {', '.join(card.classes)}",
             f"- input: {card.n_channels} channel(s) ({', '.join(card.channels)}), {card.image_size[0]}×"
             f"{card.image_size[1]} px, raw intensities standardised per channel (the preprocessing)",
             "- outputs: `logits` (softmax gives the class probabilities) and `features` (penultimate layer)"]
    if metrics.get("macro_f1") is not None:
        lines.append(f"- test macro-F1 {metrics['macro_f1']:.3f} on {metrics.get('n', '?')} crops of its own split")
    if card.decision is not None:
        lines.append(f"- decision thresholds chosen on validation: {card.decision.thresholds}")
    data = training.get("data") or {}
    if data.get("source"):
        lines.append(f"- trained on `{Path(str(data['source'])).name}`")
    lines += ["", f"Made with napari-cellsynth: {PROJECT_URL}", ""]
    return "\n".join(lines)


def describe(model: OnnxModel, folder: Path, crops: np.ndarray, authors: list[str], license_id: str, source: str):
    """The bioimage.io model description of the bundle, its files in ``folder``."""
    from bioimageio.spec.model.v0_5 import (
        Author, AxisId, BatchAxis, ChannelAxis, CiteEntry, FileDescr, FixedZeroMeanUnitVarianceAlongAxisKwargs,
        FixedZeroMeanUnitVarianceDescr, Identifier, InputTensorDescr, IntervalOrRatioDataDescr, LicenseId,
        ModelDescr, OnnxWeightsDescr, OutputTensorDescr, SpaceInputAxis, TensorId, Version, WeightsDescr)

    card = model.card
    channel = AxisId("channel")
    norm = card.normalization
    inputs = InputTensorDescr(
        id=TensorId("images"), description="raw crops, channels first",
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier(identifier(c)) for c in card.channels]),
              SpaceInputAxis(id=AxisId("y"), size=card.image_size[0]),
              SpaceInputAxis(id=AxisId("x"), size=card.image_size[1])],
        test_tensor=FileDescr(source=folder / "test_images.npy"), data=IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[FixedZeroMeanUnitVarianceDescr(kwargs=FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=[float(m) for m in norm["mean"]], std=[float(s) for s in norm["std"]], axis=channel))])
    logits = OutputTensorDescr(
        id=TensorId("logits"), description="one logit per class; softmax gives the probabilities",
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier(identifier(c)) for c in card.classes])],
        test_tensor=FileDescr(source=folder / "test_logits.npy"))
    width = card.feature_dim or int(np.load(folder / "test_features.npy").shape[1])
    features = OutputTensorDescr(
        id=TensorId("features"), description="penultimate-layer features (the UMAP filter's input)",
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier(f"feature{i}") for i in range(width)])],
        test_tensor=FileDescr(source=folder / "test_features.npy"))
    return ModelDescr(
        name=card.name, description=f"napari-cellsynth classifier: {', '.join(card.classes)}",
        version=Version("0.1.0"), authors=[Author(name=a) for a in authors],
        cite=[CiteEntry(text=f"napari-cellsynth {__version__}: generative data augmentation for rare classes in "
                             "microscopy", url=PROJECT_URL)],
        license=LicenseId(license_id), documentation=FileDescr(source=folder / "README.md"),
        covers=[FileDescr(source=folder / "cover.png")],
        tags=["classification", "napari-cellsynth", "microscopy", "onnx"],
        inputs=[inputs], outputs=[logits, features],
        weights=WeightsDescr(onnx=OnnxWeightsDescr(source=folder / "model.onnx", opset_version=17)),
        config={"napari_cellsynth": {"source": source, "classes": list(card.classes),
                                     "decision": card.decision.to_dict() if card.decision else None}})


def export_bioimageio(bundle: str, out: str | Path, test_data: str | None = None,
                      authors: tuple[str, ...] = ("napari-cellsynth developers",),
                      license_id: str = "BSD-3-Clause") -> Path:
    """Write ``out`` (a .zip) for a classifier bundle, validated with bioimageio.spec; returns its path."""
    from bioimageio.spec import load_description, save_bioimageio_package

    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"--out {out}: a bioimage.io package is a .zip file; give e.g. {out.with_suffix('.zip')}")
    model = OnnxModel(bundle, kind="classifier")
    if model.card.normalization.get("type") != "standardize":
        raise BundleError(f"bundle '{model.card.name}' normalises by {model.card.normalization.get('type')!r}; only "
                          "per-channel standardisation maps onto bioimage.io's preprocessing so far")
    crops = test_crops(model, test_data)
    outputs = model.run(model.card.feeds(prepare(crops, model.card)))
    with tempfile.TemporaryDirectory(prefix="bioimageio-") as tmp:
        folder = Path(tmp)
        shutil.copy2(model.folder / "model.onnx", folder / "model.onnx")
        np.save(folder / "test_images.npy", crops)
        np.save(folder / "test_logits.npy", outputs["logits"].astype(np.float32))
        np.save(folder / "test_features.npy", outputs["features"].astype(np.float32))
        write_cover(crops, folder / "cover.png")
        (folder / "README.md").write_text(readme(model.card, str(bundle)))
        descr = describe(model, folder, crops, list(authors), license_id, str(bundle))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.part.zip")  # beside the target: moved into place only when valid
        try:
            save_bioimageio_package(descr, output_path=partial)
            loaded = load_description(partial)
            status = getattr(getattr(loaded, "validation_summary", None), "status", "failed")
            if status not in ("passed", "valid-format"):
                raise ValueError(f"the bioimage.io package did not validate ({status}); please report it")
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth export bioimageio", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="a classifier bundle folder or zoo:NAME")
    p.add_argument("--out", required=True, help="the package to write (.zip)")
    p.add_argument("--test-data", help="crops the classifier takes, for the test tensors (default: the sample cells)")
    p.add_argument("--author", action="append", help="an author's name (repeat for more)")
    p.add_argument("--license", default="BSD-3-Clause", help="SPDX licence of the weights (default BSD-3-Clause)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import bioimageio.spec  # noqa: F401 - an optional dependency, said in one line when missing
    except ImportError:
        raise ValueError("exporting to bioimage.io needs bioimageio.spec: pip install 'napari-cellsynth[bioimageio]'")
    path = export_bioimageio(args.bundle, args.out, args.test_data, tuple(args.author or ["napari-cellsynth developers"]),
                             args.license)
    print(f"wrote {path}: a bioimage.io model package, validated with bioimageio.spec", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export bioimageio"))
