"""The main job: train (once, cached) a cell-cycle classifier on the real Jurkat data, export it to a
bundle, and classify the sample cells shipped with the plugin, which training never saw.

    python -m napari_cellsynth.training.demo            # opens napari with the results (headless report without a display)
    python -m napari_cellsynth.training.demo --headless # only the report: results/demo/report.html and PNGs

The trained run and bundle are cached in ``$CELLSYNTH_CACHE`` (default
``~/.cache/napari-cellsynth``); a second call reuses them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth._sample_data import JURKAT_SAMPLE, load_jurkat_sample
from napari_cellsynth.core.atomic import atomic_open, write_csv_atomic, write_json_atomic
from napari_cellsynth.core.bundle import BundleError, read_card, verify_files
from napari_cellsynth.core.classify import classify_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.label_maps import apply_label_map
from napari_cellsynth.core.metrics import classification_metrics, format_table
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.training.reports.plots import plot_confusion

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "jurkat" / "jurkat_cells.npz"


def cache_dir() -> Path:
    root = os.environ.get("CELLSYNTH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(root) / ("" if os.environ.get("CELLSYNTH_CACHE") else "napari-cellsynth")


def ensure_bundle(data: Path, label_map: str, epochs: int, width: int, seed: int, quiet: bool) -> Path:
    """The cached bundle for these settings, trained and exported first if it is missing or broken."""
    from napari_cellsynth.export.export_classifier import export_classifier
    from napari_cellsynth.training.trainers import classifier as train_classifier

    name = f"jurkat-{label_map}-resnet18w{width}-e{epochs}-s{seed}"
    bundle = cache_dir() / "bundles" / name
    try:
        verify_files(bundle, read_card(bundle))
        print(f"using cached bundle {bundle}", file=sys.stderr)
        return bundle
    except BundleError:
        pass
    run = cache_dir() / "runs" / name
    print(f"training {name} on {data} (the sample cells are left out) → {run}", file=sys.stderr)
    train_classifier.train(train_classifier.config(
        data=str(data), label_map=label_map, exclude=str(JURKAT_SAMPLE), epochs=epochs, width=width, seed=seed,
        out=str(run), resume=True, quiet=quiet))
    return export_classifier(run, bundle, name)


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
            crop = images[i, channel].astype(float)
            ax.imshow(crop, cmap="gray", vmin=np.percentile(crop, 1), vmax=np.percentile(crop, 99.5))
            ax.set_title(f"{predicted[i]} {confidence[i]:.2f}", fontsize=7,
                         color="green" if predicted[i] == name else "red")
        axes[row][0].text(-0.15, 0.5, name, transform=axes[row][0].transAxes, ha="right", va="center",
                          fontsize=9)
    fig.suptitle("sample cells by true class; title = prediction (green right, red wrong)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(out: Path, bundle: Path, metrics: dict) -> Path:
    card = read_card(bundle)
    rows = "".join(f"<tr><td>{c}</td><td>{m['ppv']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td>"
                   f"<td>{m['support']}</td></tr>" for c, m in metrics["per_class"].items())
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>napari-cellsynth demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .8em;text-align:right}}
</style></head><body>
<h1>Cell-cycle classification of the sample cells</h1>
<p>Bundle <code>{bundle}</code> ({card.training.get('arch')}, width {card.training.get('width')},
{card.training.get('epochs')} epochs, classes {', '.join(card.classes)}), trained on real Jurkat cells with the
{metrics['n']} sample cells left out, run through ONNX Runtime.</p>
<table><tr><th>class</th><th>PPV</th><th>recall</th><th>F1</th><th>n</th></tr>{rows}
<tr><th>macro-F1</th><td></td><td></td><td>{metrics['macro_f1']:.3f}</td><td>{metrics['n']}</td></tr>
<tr><th>accuracy</th><td>{metrics['accuracy']:.3f}</td></tr></table>
<h2>Confusion matrix</h2><img src="confusion.png">
<h2>Sample cells (DNA channel)</h2><img src="gallery.png">
<h2>Training</h2><img src="curves.png">
<p>Per-cell results: <a href="results.csv">results.csv</a>.</p></body></html>"""
    with atomic_open(out / "report.html") as fh:
        fh.write(html)
    return out / "report.html"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("CELLSYNTH_JURKAT", str(DEFAULT_DATA)),
                        help="jurkat_cells.npz (default ../shared/data/jurkat/jurkat_cells.npz)")
    parser.add_argument("--label-map", default="jurkat4", help="jurkat4 or jurkat7")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "results" / "demo"), help="report folder")
    parser.add_argument("--headless", action="store_true", help="write the report only, do not open napari")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_file():
        parser.error(f"training data {data} not found; pass --data path/to/jurkat_cells.npz")
    bundle = ensure_bundle(data, args.label_map, args.epochs, args.width, args.seed, args.quiet)
    sample = load_jurkat_sample()
    model = OnnxModel(bundle, kind="classifier")
    result = run_to_end(classify_crops(model, sample["images"]))
    truth, classes = apply_label_map(sample["labels"], model.card.training["data"]["label_map"])
    metrics = classification_metrics(truth, result.predicted, classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(out / "results.csv", {"true_phase": sample["labels"].tolist(),
                                           "true_class": [classes[t] for t in truth], **result.table()})
    write_json_atomic(out / "metrics.json", metrics)
    plot_confusion(metrics, out / "confusion.png", title="sample cells (never trained on)")
    gallery(sample["images"], [classes[t] for t in truth], result.predicted_names, result.confidence,
            out / "gallery.png", classes, channel=list(model.card.channels).index("DNA") if "DNA" in model.card.channels
            else 0)
    run_curves = cache_dir() / "runs" / bundle.name / "curves.png"
    if run_curves.is_file():
        (out / "curves.png").write_bytes(run_curves.read_bytes())
    report = write_report(out, bundle, metrics)
    print(format_table(metrics))
    print(f"report: {report}")
    if not args.headless:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            print("no display found: open the report above, or run on a desktop to see napari", file=sys.stderr)
        else:
            open_viewer(bundle)
    return metrics


def open_viewer(bundle: Path) -> None:
    """napari with the sample cells and the Classify widget, already run on them."""
    import napari

    from napari_cellsynth._sample_data import jurkat_cells
    from napari_cellsynth._widgets.classify import ClassifyWidget

    viewer = napari.Viewer(title="napari-cellsynth demo")
    for data, kwargs, _ in jurkat_cells():
        viewer.add_image(data, **kwargs)
    widget = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Classify")
    widget.bundle.value = str(bundle)
    widget.start()
    napari.run()


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.demo"))
