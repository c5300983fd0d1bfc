"""The UMAP manifold filter (paper 004 §2.4, Table 4) on the DDPM experiment's generated rare cells.

    python -m napari_cellsynth.training.experiments.umap_filter --data ../shared/data/jurkat/jurkat_cells.npz --rare M \
        --seeds 0 1 2 --epochs 15 --width 32 --out runs/exp-ddpm [--classify]

Run after ``training.experiments.ddpm`` with the same ``--out``, ``--data``, ``--seeds`` and classifier settings.  Per
setting (``full``, ``cut10``) the filter is fitted on the features of that setting's real training crops (the
experiment's feature classifier: the full-data real-only classifier of the first seed), then each seed's generated
cells are filtered (the first seed's where the experiment ran with ``--reuse-generated``): counts before and after
(Table 4), the kept cells (``SETTING/kept-seedN.npz``) and the UMAP figure (Figure 6).  With ``--classify`` the
classifier is also trained on real + kept cells per seed (the arm ``SETTING/real+ddpm-kept`` on the experiments'
runner), to set beside real + all generated cells, seed by seed (one-sided Wilcoxon signed-rank); ``--scheduler
processes`` trains them in another process (classifier epochs ran several times slower in the process that has just
fitted UMAP, §7).  Writes ``filter_summary.json`` and ``filter_summary.md`` in ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.filtering import run_filter
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.umap_plot import save_filter_figure
from napari_cellsynth.training.data.labelled_crops import load_labelled, stratified_split, thin_classes
from napari_cellsynth.training.experiments.baseline import markdown_table
from napari_cellsynth.training.experiments.ddpm import arm_name, build_parser, classifier_options, keep_specs
from napari_cellsynth.training.reports.summaries import paired_markdown, paired_seeds, summarize_runs
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, arm_metrics, run_folder, train_arms

KEPT_ARM = "real+ddpm-kept"


def all_generated(out: Path, setting: str, seeds: list[int]) -> list[dict]:
    """Each seed's test metrics with every generated cell (the ``ddpm`` experiment's runs), to pair with the kept ones."""
    found = arm_metrics(out, arm_name(setting, "real+ddpm"), seeds)
    missing = [str(run_folder(out, arm_name(setting, "real+ddpm"), seed)) for seed in seeds if seed not in found]
    if missing:
        raise ValueError(f"{', '.join(missing)} not found: run training.experiments.ddpm with the same --out and "
                         "--seeds first")
    return [found[seed] for seed in seeds]


def generated_file(out: Path, setting: str, seed: int, first_seed: int) -> Path:
    """This seed's generated cells, or the first seed's when the ``ddpm`` experiment ran with ``--reuse-generated``
    (read off the disk: this pass need not be told)."""
    own = out / setting / f"generated-seed{seed}.npz"
    return own if own.is_file() else out / setting / f"generated-seed{first_seed}.npz"


def kept_path(out: Path, setting: str, seed: int | str) -> Path:
    """A seed's cells kept by the filter (``"{seed}"``: the arm option the runner fills in)."""
    return out / setting / f"kept-seed{seed}.npz"


def filter_seed(fitted_result, source: Path, kept: Path) -> dict:
    """Write ``kept`` (images and labels of the kept cells); return counts."""
    with np.load(source, allow_pickle=False) as saved:
        images, labels = saved["images"], saved["labels"]
    keep = fitted_result.keep
    with atomic_open(kept, "wb") as fh:
        np.savez(fh, images=images[keep], labels=labels[keep])
    return {"before": int(len(keep)), "after": int(keep.sum())}


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    parser.add_argument("--classify", action="store_true", help="also train on real + kept cells per seed")
    parser.add_argument("--confidence", default="weight", help="'weight' (the paper's rule) or a level in (0, 1)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    model = OnnxModel(out / "feature-classifier", kind="classifier")
    data = load_labelled(args.data, args.label_map)
    split = stratified_split(data.y, args.split_seed)
    summary, arms = {}, []
    for setting in args.settings:
        keep = keep_specs(setting, args.rare)
        index = thin_classes(split["train"], data.y, data.classes, keep, args.split_seed)
        real_images, real_labels = data.crops.images[index], data.crops.labels[index]  # raw: the bundle maps them
        counts, fitted = {}, None
        for seed in args.seeds:
            source = generated_file(out, setting, seed, args.seeds[0])
            with np.load(source, allow_pickle=False) as saved:
                synthetic = saved["images"]
            level = args.confidence if args.confidence == "weight" else float(args.confidence)
            result = run_to_end(run_filter(model, real_images, real_labels, synthetic, args.rare, fitted,
                                           random_state=args.split_seed, confidence=level))
            fitted = result.fitted  # one filter per setting, every seed's cells through it
            counts[f"seed{seed}"] = filter_seed(result, source, kept_path(out, setting, seed))
            if seed == args.seeds[0]:
                save_filter_figure(out / setting / "umap_filter.png", fitted, result.points, result.keep)
        arms.append(ClassifierArm(arm_name(setting, KEPT_ARM), (*classifier_options(args, keep), "--extra-train",
                                                                  str(kept_path(out, setting, "{seed}")))))
        summary[setting] = {"counts": counts, "level": float(fitted.level_),
                            "component_weight": float(fitted.weights_[fitted.component_]),
                            "real_minority_points": int((data.y[index] == data.classes.index(args.rare)).sum())}
        print(f"{setting}: {counts}", file=sys.stderr)
    runs = {}
    if args.classify:
        train_arms(arms, args.seeds, out, args.workers, args.threads, args.scheduler)
        runs = {f"{arm.name.partition('/')[0]}: real + DDPM kept by the UMAP filter":
                list(arm_metrics(out, arm.name, args.seeds).values()) for arm in arms}
    summary["classification"] = {name: summarize_runs(metrics) for name, metrics in runs.items()}
    summary["paired"] = {setting: paired_seeds(all_generated(out, setting, args.seeds),
                                               runs[f"{setting}: real + DDPM kept by the UMAP filter"], args.rare)
                         for setting in args.settings if args.classify}
    summary["command"] = "python -m napari_cellsynth.training.experiments.umap_filter " + " ".join(argv or sys.argv[1:])
    write_json_atomic(out / "filter_summary.json", summary)
    lines = ["| setting | seed | generated | kept by the filter |", "|---|---|---|---|"]
    for setting in args.settings:
        for seed, c in summary[setting]["counts"].items():
            lines.append(f"| {setting} | {seed} | {c['before']} | {c['after']} |")
    tables = "\n".join([*lines, "", *(markdown_table(s, name) for name, s in summary["classification"].items()),
                        *(paired_markdown(f"{setting}: real + kept cells against real + all generated cells", result)
                          for setting, result in summary["paired"].items())])
    (out / "filter_summary.md").write_text(tables)
    print(tables)
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.umap_filter"))
