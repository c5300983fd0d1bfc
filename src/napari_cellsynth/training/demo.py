"""The main job: the whole product on the plugin's sample data, from the model zoo, in a few minutes.

    python -m napari_cellsynth.training.demo             # napari with every layer (the HTML report without a display)
    python -m napari_cellsynth.training.demo --headless  # only the report: results/demo/report.html and its PNGs

1. **Classify** the 226 shipped Jurkat sample cells (never trained on) with the zoo's 4-class classifier.
2. **Generate** rare-class (M) cells with the zoo's v-prediction DDPM and DPM-Solver++(2M), 20 network calls.
3. **Filter** them with the UMAP filter on the classifier's features (paper 004's ellipse), fitted on real
   Jurkat cells (``--data``; the sample cells when the data set is not there).
4. **Segment** the shipped M-FISH metaphase's DAPI plane with the zoo's Cellpose chromosome model, and
   **classify** each chromosome's identity (1–22, X, Y) from its five fluorophore planes; both are scored
   against the metaphase's karyotype, which neither model saw (its slide was held out).

Nothing is trained: every model comes from ``models/`` (``cellsynth zoo list``), checked by sha256.
The report ends with the verdict and table of the ``cellsynth study`` in ``docs/results.md`` (§13: the zoo's
generator beside copies of the real rare cells, class-balanced sampling and mixup) and the command that regenerates
it.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from napari_cellsynth._sample_data import JURKAT_SAMPLE, MFISH_SAMPLE, load_jurkat_sample
from napari_cellsynth.core.atomic import atomic_open, write_csv_atomic, write_json_atomic
from napari_cellsynth.core.classify import classify_crops, classify_objects
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.filtering import real_class_names, run_filter
from napari_cellsynth.core.generate import GENERATOR_KINDS, GenerationSettings, generate, provenance
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.label_maps import apply_bundle_label_map
from napari_cellsynth.core.metrics import classification_metrics, format_table
from napari_cellsynth.core.outputs import write_filter_outputs, write_tiff
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.segment import SegmentSettings, segment
from napari_cellsynth.training.reports.plots import plot_confusion

REPO = Path(__file__).resolve().parents[3]  # the checkout (src/napari_cellsynth/training/demo.py)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "jurkat" / "jurkat_cells.npz"
RESULTS = REPO / "docs" / "results.md"
ZOO = {"classifier": "zoo:classifier-jurkat4", "generator": "zoo:ddpm-jurkat4-cut10-v",
       "segmenter": "zoo:cellpose-chromosomes", "chromosomes": "zoo:classifier-chromosomes-vysis"}
KARYOTYPE_NAMES = [f"{k:02d}" for k in range(1, 23)] + ["X", "Y"]


def channel_index(channels, wanted: str = "DNA") -> int:
    return list(channels).index(wanted) if wanted in channels else 0


def show(ax, crop: np.ndarray) -> None:
    crop = crop.astype(float)
    ax.imshow(crop, cmap="gray", vmin=np.percentile(crop, 1), vmax=np.percentile(crop, 99.5))
    ax.axis("off")


def gallery(images: np.ndarray, truth: list[str], predicted: list[str], confidence: np.ndarray, path: Path,
            classes: list[str], channel: int, per_class: int = 8) -> None:
    """Up to ``per_class`` crops of every true class: the chosen channel, titled with the prediction."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.3 * per_class, 1.45 * len(classes)))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, name in enumerate(classes):
        picks = [i for i, t in enumerate(truth) if t == name][:per_class]
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(picks):
                continue
            i = picks[col]
            show(ax, images[i, channel])
            ax.set_title(f"{predicted[i]} {confidence[i]:.2f}", fontsize=7,
                         color="green" if predicted[i] == name else "red")
        axes[row][0].text(-0.15, 0.5, name, transform=axes[row][0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle("sample cells by true class; title = prediction (green right, red wrong)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def real_vs_generated(rows: dict[str, np.ndarray], channel: int, path: Path, per_row: int = 10) -> None:
    """One row of crops (one channel) per named group: real cells, generated cells kept, dropped."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 * per_row, 1.35 * len(rows)))
    axes = fig.subplots(len(rows), per_row, squeeze=False)
    for row, (name, images) in enumerate(rows.items()):
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(images):
                show(ax, images[col, channel])
        axes[row][0].text(-0.1, 0.5, f"{name} ({len(images)})", transform=axes[row][0].transAxes, ha="right",
                          va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def classify_sample(out: Path, classifier: str) -> dict:
    sample = load_jurkat_sample()
    model = OnnxModel(classifier, kind="classifier")
    result = run_to_end(classify_crops(model, sample["images"]))
    truth, classes = apply_bundle_label_map(sample["labels"], model.card.trained.label_map, model.card.classes)
    metrics = classification_metrics(truth, result.predicted, classes)
    write_csv_atomic(out / "results.csv", {"true_phase": sample["labels"].tolist(),
                                           "true_class": [classes[t] for t in truth], **result.table()})
    write_json_atomic(out / "metrics.json", metrics)
    plot_confusion(metrics, out / "confusion.png", title="sample cells (never trained on)")
    gallery(sample["images"], [classes[t] for t in truth], result.predicted_names, result.confidence,
            out / "gallery.png", classes, channel_index(model.card.channels))
    return {"metrics": metrics, "card": model.card}


def real_reference(data: Path | None, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Labelled real cells for the UMAP filter: up to ``per_class`` of each phase of the data set (the sample
    cells left out), or the sample cells when the data set is not there."""
    if data is None or not data.is_file():
        sample = load_jurkat_sample()
        return sample["images"], sample["labels"], f"the {len(sample['labels'])} sample cells"
    with np.load(data, allow_pickle=False) as d, np.load(JURKAT_SAMPLE, allow_pickle=False) as s:
        labels = d["labels"]
        allowed = np.setdiff1d(np.arange(len(labels)), s["source_index"])
        rng = np.random.default_rng(seed)
        picks = np.concatenate([rng.permutation(allowed[labels[allowed] == c])[:per_class] for c in np.unique(labels)])
        picks.sort()
        return d["images"][picks], labels[picks], f"{len(picks)} real cells of {data.name} (≤ {per_class} per phase)"


def generate_and_filter(out: Path, classifier: str, generator: str, data: Path | None, count: int, steps: int,
                        seed: int, per_class: int) -> dict:
    model = OnnxModel(generator, kind=GENERATOR_KINDS)
    rare = "M" if "M" in model.card.classes else model.card.classes[-1]
    settings = GenerationSettings(rare, count, "dpm_solver_pp_2m", steps, seed=seed, batch_size=32)
    started = time.perf_counter()
    generated = run_to_end(generate(model, settings))
    seconds = time.perf_counter() - started
    images, record = generated.images, provenance(model, settings)
    classes_model = OnnxModel(classifier, kind="classifier")
    real_images, real_labels, reference = real_reference(data, per_class, seed)
    result = run_to_end(run_filter(classes_model, real_images, real_labels, images, rare, random_state=seed))
    names = [f"{rare}_{i:04d}" for i in range(len(images))]
    summary, _ = write_filter_outputs(out / "umap_filter", images, names, result, None,
                                      {"generator": record, "real": reference})
    sample = load_jurkat_sample()
    real_rows = sample["images"][real_class_names(classes_model, sample["labels"]) == rare]
    keep = result.keep
    real_vs_generated({"real (sample)": real_rows, "generated, kept": images[keep], "generated, dropped": images[~keep]},
                      channel_index(model.card.channels), out / "real_vs_generated.png")
    return {"class": rare, "count": count, "sampler": f"DPM-Solver++(2M), {steps} network calls",
            "seconds": seconds, "images_per_second": count / seconds, "kept": int(keep.sum()),
            "dropped": int((~keep).sum()), "level": summary["level"], "reference": reference,
            "generator": model.card.name}


def segment_and_classify_chromosomes(out: Path, segmenter: str, classifier: str) -> dict:
    """The sample metaphase: Cellpose on DAPI, then the identity classifier on each object's fluorophore planes;
    AP@0.5 of the masks and accuracy of the identities, both against the karyotype."""
    import tifffile

    from napari_cellsynth.core.numba_cached import import_cellpose

    cellpose_metrics = import_cellpose().metrics

    from napari_cellsynth.training.data.chromosome_masks import chromosome_instances

    planes = tifffile.imread(MFISH_SAMPLE)
    karyotype = tifffile.imread(MFISH_SAMPLE.with_name(MFISH_SAMPLE.stem + "_K.tif"))
    started = time.perf_counter()
    labels = run_to_end(segment(planes[0], SegmentSettings(segmenter)))
    seconds = time.perf_counter() - started
    truth = chromosome_instances(karyotype)
    ap = float(cellpose_metrics.average_precision([truth], [labels], threshold=[0.5])[0][0, 0])
    model = OnnxModel(classifier, kind="classifier")
    objects, result = run_to_end(classify_objects(model, planes[1:], labels))
    rows = {"label": [], "predicted": [], "confidence": [], "karyotype": []}
    for label, name, confidence in zip(objects.labels, result.predicted_names, result.confidence):
        under = karyotype[(labels == label) & (karyotype > 0) & (karyotype <= 24)]
        rows["label"].append(int(label))
        rows["predicted"].append(name)
        rows["confidence"].append(round(float(confidence), 4))
        rows["karyotype"].append(KARYOTYPE_NAMES[np.bincount(under).argmax() - 1] if under.size else "")
    write_csv_atomic(out / "chromosomes.csv", rows)
    write_tiff(out / "chromosome_labels.tif", labels.astype(np.int32), {"segmenter": segmenter, "image": MFISH_SAMPLE.name})
    scored = [p == k for p, k in zip(rows["predicted"], rows["karyotype"]) if k]
    chromosome_overlay(planes[0], labels, rows, out / "segmentation.png")
    return {"objects": len(objects.labels), "karyotype_chromosomes": int(truth.max()),
            "ap50": ap, "identity_accuracy": float(np.mean(scored)) if scored else float("nan"),
            "scored": len(scored), "seconds": seconds, "segmenter": segmenter, "classifier": model.card.name}


def chromosome_overlay(dapi: np.ndarray, labels: np.ndarray, rows: dict, path: Path) -> None:
    from matplotlib.figure import Figure
    from skimage.measure import regionprops
    from skimage.segmentation import find_boundaries

    fig = Figure(figsize=(9, 7.5))
    ax = fig.add_subplot()
    ax.imshow(dapi, cmap="gray")
    edges = np.ma.masked_where(~find_boundaries(labels), labels)
    ax.imshow(edges, cmap="tab20", interpolation="nearest")
    by_label = dict(zip(rows["label"], zip(rows["predicted"], rows["karyotype"])))
    for region in regionprops(labels):
        predicted, karyotype = by_label.get(region.label, ("", ""))
        ax.text(region.centroid[1], region.centroid[0], predicted, fontsize=7, ha="center", va="center",
                color="lime" if predicted == karyotype else ("red" if karyotype else "yellow"))
    ax.set_title("Cellpose chromosomes on DAPI; text = predicted identity (green = karyotype, red = not)", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def results_table(marker: str = "demo-table") -> str:
    """The table of docs/results.md between ``<!-- demo-table -->`` and ``<!-- /demo-table -->`` as HTML, with
    its section's title, the command before it that produced it and the verdict between ``<!-- demo-verdict -->``
    and ``<!-- /demo-verdict -->``."""
    if not RESULTS.is_file():
        return "<p>docs/results.md is not in this installation.</p>"
    text = RESULTS.read_text()
    found = re.search(rf"<!-- {marker} -->(.*?)<!-- /{marker} -->", text, re.S)
    if not found:
        return "<p>(no marked table in docs/results.md)</p>"
    before = text[:found.start()]
    title = re.findall(r"^## (.+)$", before, re.M)
    command = re.findall(r"```bash\n(.*?)```", before, re.S)
    rows = [[html.escape(c.strip().replace("**", "")) for c in line.strip().strip("|").split("|")]
            for line in found.group(1).strip().splitlines() if line.startswith("|")]
    body = [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
    verdict = re.search(r"<!-- demo-verdict -->(.*?)<!-- /demo-verdict -->", text, re.S)
    return (f"<p>From docs/results.md, section <em>{html.escape(title[-1] if title else '')}</em>; the command:</p>"
            f"<pre>{html.escape(command[-1].strip() if command else '')}</pre>"
            + (f"<p><strong>{html.escape(verdict.group(1).strip().replace('**', ''))}</strong></p>" if verdict else "")
            + "<table><tr>" + "".join(f"<th>{c}</th>" for c in rows[0]) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body) + "</table>")


def write_report(out: Path, cells: dict, synthetic: dict, chromosomes: dict) -> Path:
    metrics, card = cells["metrics"], cells["card"]
    rows = "".join(f"<tr><td>{c}</td><td>{m['ppv']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td>"
                   f"<td>{m['support']}</td></tr>" for c, m in metrics["per_class"].items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>napari-cellsynth demo</title>
<style>body{{font-family:sans-serif;max-width:62em;margin:2em auto}}td,th{{padding:.2em .8em;text-align:right}}
pre{{background:#f4f4f4;padding:.4em;white-space:pre-wrap}}img{{max-width:100%}}</style></head><body>
<h1>napari-cellsynth on the sample data</h1>
<p>Every model comes from the model zoo (<code>cellsynth zoo list</code>), checked by sha256; nothing was trained.</p>
<h2>1. Cell-cycle classification of the sample cells</h2>
<p><code>{card.name}</code> ({card.trained.arch}, width {card.trained.width}, classes
{', '.join(card.classes)}), trained on real Jurkat cells with the {metrics['n']} sample cells left out, run through
ONNX Runtime.</p>
<table><tr><th>class</th><th>PPV</th><th>recall</th><th>F1</th><th>n</th></tr>{rows}
<tr><th>macro-F1</th><td></td><td></td><td>{metrics['macro_f1']:.3f}</td><td>{metrics['n']}</td></tr>
<tr><th>accuracy</th><td>{metrics['accuracy']:.3f}</td></tr></table>
<img src="confusion.png"><img src="gallery.png">
<h2>2. Rare-class cells generated, 3. kept or dropped by the UMAP filter</h2>
<p>{synthetic['count']} {synthetic['class']} cells from <code>{synthetic['generator']}</code> with {synthetic['sampler']}:
{synthetic['seconds']:.1f} s, {synthetic['images_per_second']:.1f} images/s on this machine. The UMAP filter, fitted on
{synthetic['reference']}, kept {synthetic['kept']} and dropped {synthetic['dropped']} (level {synthetic['level']:.2f});
files in <a href="umap_filter/">umap_filter/</a> (decisions.csv, kept TIFFs with provenance).</p>
<img src="real_vs_generated.png"><img src="umap_filter/umap_filter.png">
<h2>4. Chromosomes: Cellpose segmentation and identity</h2>
<p>The sample metaphase (46,XX,t(X;4), slide V26, held out from both models): <code>{chromosomes['segmenter']}</code>
found {chromosomes['objects']} objects ({chromosomes['karyotype_chromosomes']} chromosomes in the karyotype) in
{chromosomes['seconds']:.1f} s, AP@0.5 {chromosomes['ap50']:.3f}. <code>{chromosomes['classifier']}</code> named
{chromosomes['identity_accuracy']:.0%} of the {chromosomes['scored']} objects that lie on a karyotyped chromosome
correctly (<a href="chromosomes.csv">chromosomes.csv</a>).</p>
<img src="segmentation.png">
<h2>Does synthetic data help? (cellsynth study, docs/results.md)</h2>
{results_table()}
</body></html>"""
    with atomic_open(out / "report.html") as fh:
        fh.write(page)
    return out / "report.html"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("CELLSYNTH_JURKAT", str(DEFAULT_DATA)),
                        help="jurkat_cells.npz, the UMAP filter's real cells (default ../shared/data/jurkat/"
                             "jurkat_cells.npz; without it, the sample cells)")
    for key, value in ZOO.items():
        parser.add_argument(f"--{key}", default=value, help=f"bundle (default {value})")
    parser.add_argument("--count", type=int, default=64, help="rare-class cells to generate")
    parser.add_argument("--steps", type=int, default=20, help="network calls of the sampler")
    parser.add_argument("--per-class", type=int, default=200, help="real cells per phase for the UMAP filter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "results" / "demo"), help="report folder")
    parser.add_argument("--headless", action="store_true", help="write the report only, do not open napari")
    args = parser.parse_args(argv)
    if args.count < 1 or args.steps < 1:
        parser.error("--count and --steps must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("1/4 classifying the sample cells", file=sys.stderr)
    cells = classify_sample(out, args.classifier)
    print(format_table(cells["metrics"]))
    print(f"2-3/4 generating {args.count} rare cells and filtering them", file=sys.stderr)
    synthetic = generate_and_filter(out, args.classifier, args.generator, Path(args.data), args.count, args.steps,
                                    args.seed, args.per_class)
    print(f"  {synthetic['images_per_second']:.1f} images/s; the UMAP filter kept {synthetic['kept']} of "
          f"{args.count}", file=sys.stderr)
    print("4/4 segmenting the sample metaphase and classifying its chromosomes", file=sys.stderr)
    chromosomes = segment_and_classify_chromosomes(out, args.segmenter, args.chromosomes)
    print(f"  {chromosomes['objects']} objects, AP@0.5 {chromosomes['ap50']:.3f}, identity right for "
          f"{chromosomes['identity_accuracy']:.0%}", file=sys.stderr)
    summary = {"cells": cells["metrics"], "synthetic": synthetic, "chromosomes": chromosomes}
    write_json_atomic(out / "summary.json", summary)
    report = write_report(out, cells, synthetic, chromosomes)
    print(f"report: {report}")
    if not args.headless:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            print("no display found: open the report above, or run on a desktop to see napari", file=sys.stderr)
        else:
            import napari

            show_in_viewer(napari.Viewer(title="napari-cellsynth demo"), out, args.classifier)
            napari.run()
    return summary


def show_in_viewer(viewer, out: Path, classifier: str):
    """Every layer of a demo report folder ``out`` in ``viewer``: the sample data, the generated cells the UMAP
    filter kept, the Cellpose chromosomes; and the Classify widget from the Plugins menu, run on the sample cells
    with the zoo classifier.  Returns that widget."""
    import tifffile

    from napari_cellsynth._sample_data import jurkat_cells, mfish_metaphase

    for data, kwargs, kind in mfish_metaphase() + jurkat_cells():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.add_labels(tifffile.imread(out / "chromosome_labels.tif"), name="Cellpose chromosomes", visible=False)
    with np.load(out / "umap_filter" / "kept.npz", allow_pickle=False) as kept:
        if len(kept["images"]):
            viewer.add_image(kept["images"], name="generated, kept by the UMAP filter", visible=False,
                             axis_labels=("cell", "channel", "y", "x"))
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellsynth", "Classify")
    widget.image_layer.value = viewer.layers["Jurkat cells"]
    widget.zoo.value = classifier if classifier in widget.zoo.choices else widget.zoo.value
    if not classifier.startswith("zoo:"):
        widget.bundle.value = classifier
    widget.start()
    return widget


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.demo"))
