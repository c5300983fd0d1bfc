"""Paper 000's experiment: does adding DDPM-generated rare-class cells help the classifier?

    python -m napari_cellsynth.training.experiments.ddpm --data ../shared/data/jurkat/jurkat_cells.npz --rare M \
        --seeds 0 1 2 --ddpm-base 32 --ddpm-batch 32 --ddpm-steps 2000 --finetune-steps 300 \
        --epochs 15 --width 32 --out runs/exp-ddpm

Two settings: ``full`` (all real M cells of the training split) and ``cut10`` (M cut to 10 % of its
training cells before anything is trained).  The train/val/test split is fixed (``--split-seed``) so
that no generator ever sees a test cell; the seeds vary the classifier's initialisation and batch
order and the generator's noise.

1. one DDPM base model on the training split with the rare class already cut to 10 % (so it is valid
   for both settings), fine-tuned per setting on that setting's real rare cells (paper 003's
   procedure), exported to a bundle;
2. per seed (or once per setting with ``--reuse-generated``): generated rare cells raising the rare class to
   ``--balance-to`` (default: the median training count of the other classes — here G1 is inflated by a second
   acquisition, and paper 000 also cut G1 to the size of the others before balancing),
   ``SETTING/generated-seedN.npz``; with ``--control duplicates`` as many copies of the setting's real rare cells
   (drawn with replacement), the oversampling a user would otherwise reach for, ``SETTING/duplicated-seedN.npz``;
3. the arms on the experiments' runner (``training.runner.classifier_arms``), per setting and seed: the classifier
   on real data only (``SETTING/real/seedN``), on real + generated cells (``SETTING/real+ddpm``) and on real +
   copies (``SETTING/real+duplicates``).

``--bundles full=BUNDLE cut10=BUNDLE`` skips step 1's training and uses generators trained elsewhere (e.g. the
zoo's v-prediction ones, trained on a GPU on the same split): each must record the setting's training counts.

Every step skips what is already on disk (the runner's done-markers for the classifiers), so the experiment
resumes (folders of the layout before the runner, ``SETTING/seedN/classifier-*``, are not found: their runs train
again).  Test metrics are always on the real test split.  Writes ``summary.json`` and ``summary.md``, with each
setting's seeds paired (real + DDPM against real only on the same seed) and a one-sided Wilcoxon signed-rank test.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.samplers import SAMPLERS
from napari_cellsynth.training.experiments.baseline import markdown_table
from napari_cellsynth.training.records.classifier_run import ClassifierRun
from napari_cellsynth.training.reports.summaries import paired_markdown, paired_seeds, summarize_runs
from napari_cellsynth.training.runner.classifier_arms import (ClassifierArm, add_runner_options, arm_metrics, run_folder,
                                                              train_arms)
from napari_cellsynth.training.trainers import ddpm as train_ddpm
from napari_cellsynth.training.trainers.arguments import add_experiment_shift

KEEP = {"full": [], "cut10": ["{rare}=0.1"]}


def keep_specs(setting: str, rare: str) -> list[str]:
    return [spec.format(rare=rare) for spec in KEEP[setting]]


def classifier_options(args, keep: list[str]) -> tuple[str, ...]:
    """The classifier trainer's options that every arm of a setting shares (the runner adds the seed, threads,
    output folder, ``--quiet`` and ``--resume``)."""
    options = ["--data", args.data, "--label-map", args.label_map, "--split-seed", str(args.split_seed),
               "--epochs", str(args.epochs), "--width", str(args.width), "--shift", str(args.shift)]
    return tuple(options + (["--keep-fraction", *keep] if keep else []))


def ddpm_common(args) -> dict:
    return {"data": args.data, "label_map": args.label_map, "split_seed": args.split_seed, "seed": args.split_seed,
            "base": args.ddpm_base, "batch_size": args.ddpm_batch, "prediction": args.ddpm_prediction,
            "quiet": True, "resume": True}


def ddpm_base(out: Path, args) -> Path:
    base = out / "ddpm-base"
    train_ddpm.train(train_ddpm.config(**ddpm_common(args), keep_fraction=keep_specs("cut10", args.rare),
                                       steps=args.ddpm_steps, sample_every=500, out=str(base)))
    return base


def ddpm_bundle(root: Path, base: Path, args, keep: list[str]) -> Path:
    from napari_cellsynth.export.export_ddpm import export_ddpm

    bundle = root / "ddpm-bundle"
    if (bundle / "card.json").is_file():
        return bundle
    train_ddpm.train(train_ddpm.config(**ddpm_common(args), keep_fraction=list(keep), steps=args.finetune_steps,
                                       sample_every=args.finetune_steps, init_from=str(base),
                                       only_classes=[args.rare], out=str(root / "ddpm-rare")))
    return export_ddpm(root / "ddpm-rare", bundle)


def given_bundles(specs: list[str]) -> dict[str, str]:
    bundles = {}
    for spec in specs:
        setting, sep, bundle = spec.partition("=")
        if not sep or setting not in KEEP or not bundle:
            raise ValueError(f"--bundles {spec!r}: write SETTING=BUNDLE with a setting of {list(KEEP)}")
        bundles[setting] = bundle
    return bundles


def check_bundle_counts(bundle: str, counts: dict[str, int]) -> None:
    """A generator from elsewhere must have learnt from this setting's training crops (``counts``: the same counts
    for every class it learnt; a fine-tuned generator records 0 for the classes it left out)."""
    card = OnnxModel(bundle, kind="ddpm").card
    recorded = card.trained.counts
    if recorded is not None and any(counts.get(name) != n for name, n in recorded.items() if n):
        raise ValueError(f"generator '{card.name}' learnt from {recorded} training crops, but this setting's "
                         f"classifier trains on {counts}: it was trained on another split or cut; give the bundle of "
                         "this setting, or train one here (leave out --bundles)")


def target_count(counts: dict[str, int], rare: str, rule: str) -> int:
    others = [n for name, n in counts.items() if name != rare]
    if rule == "median":
        return int(np.median(others))
    if rule == "max":
        return max(others)
    return int(rule)


def needed_count(counts: dict[str, int], args) -> int:
    """How many generated cells raise the rare class's training ``counts`` to ``--balance-to``; a target it already
    reaches is refused."""
    target = target_count(counts, args.rare, args.balance_to)
    if target <= counts[args.rare]:
        raise ValueError(f"{args.rare} already has {counts[args.rare]} training crops, not fewer than the target "
                         f"{target} of --balance-to {args.balance_to}; choose a larger target")
    return target - counts[args.rare]


def sampling(args, class_name: str, count: int, seed: int, batch_size: int) -> GenerationSettings:
    """The experiment's sampler settings (``--sampler``, ``--sample-steps``, ``--eta``, ``--clip-x0``, ``--guidance``)."""
    return GenerationSettings(class_name, count, args.sampler, args.sample_steps, args.guidance, seed, eta=args.eta,
                              batch_size=batch_size, clip_x0=args.clip_x0)


def generated_path(root: Path, args, seed: int | str) -> Path:
    """A setting's generated cells for ``seed`` (``"{seed}"``: the arm option the runner fills in); with
    ``--reuse-generated`` every seed's classifier takes the first seed's."""
    return root / f"generated-seed{args.seeds[0] if args.reuse_generated else seed}.npz"


def generated(root: Path, bundle: Path, counts: dict[str, int], args, seed: int) -> Path:
    """``root/generated-seedSEED.npz``: generated cells of the rare class raising the setting's training ``counts``
    of it to ``--balance-to``, drawn with the seed's noise (skipped when on disk)."""
    if args.reuse_generated:
        seed = args.seeds[0]
    path = generated_path(root, args, seed)
    if path.is_file():
        return path
    needed = needed_count(counts, args)
    settings = sampling(args, args.rare, needed, seed, batch_size=64)
    print(f"generating {needed} {args.rare} cells", file=sys.stderr)
    result = run_to_end(generate(OnnxModel(bundle, kind="ddpm"), settings))
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=result.images, labels=np.array([args.rare] * len(result.images)),
                 provenance=np.array(json.dumps(result.provenance)))
    return path


@dataclass(frozen=True)
class SettingCrops:
    """A setting's training part, as the classifier trainer cuts it (``--split-seed``'s split, the setting's
    ``--keep-fraction``): its count of each class, and the rare class's crops (indices into ``--data`` and images)."""

    counts: dict[str, int]
    rare_index: np.ndarray
    rare_images: np.ndarray

    @classmethod
    def of(cls, args, keep: list[str]) -> "SettingCrops":
        from napari_cellsynth.training.data.labelled_crops import load_labelled, stratified_split, thin_classes

        data = load_labelled(args.data, args.label_map, report=lambda line: None)
        index = thin_classes(stratified_split(data.y, args.split_seed)["train"], data.y, data.classes, keep,
                             args.split_seed)
        own = index[data.y[index] == data.classes.index(args.rare)]
        return cls({c: int((data.y[index] == k).sum()) for k, c in enumerate(data.classes)}, own,
                   data.crops.images[own])

    def check_trained_on(self, run: Path) -> None:
        """The classifier run of this setting trained on these counts, or the experiment's arithmetic is wrong."""
        trained = {c: n for c, n in ClassifierRun.read(run).counts["train"].items() if n}
        if trained != {c: n for c, n in self.counts.items() if n}:
            raise ValueError(f"{run} trained on {trained} crops, but the setting's split holds {self.counts}: "
                             "the split does not match the classifier trainer's")


def duplicated(root: Path, generated_cells: Path, crops: SettingCrops, rare: str, seed: int) -> Path:
    """The control a user would otherwise pick: as many extra rare-class crops as the generator adds, drawn with
    replacement from the setting's own real training crops of that class (``--control duplicates``).  Same count,
    same augmentation, same training; only the content differs (copies instead of new cells)."""
    path = root / f"duplicated-seed{seed}.npz"
    if path.is_file():
        return path
    with np.load(generated_cells, allow_pickle=False) as saved:
        needed = len(saved["images"])
    own, images = crops.rare_index, crops.rare_images
    pick = np.random.default_rng(seed).choice(len(own), size=needed, replace=True)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=images[pick], labels=np.array([rare] * needed), index=own[pick])
    return path


def report(out: Path, base: Path | None, args, given: dict[str, str]) -> dict:
    """FID/KID (ResNet features of the full-data real-only classifier), SSIM-max and the real-vs-generated grid."""
    from napari_cellsynth.export.export_classifier import export_classifier
    from napari_cellsynth.export.export_ddpm import export_ddpm
    from napari_cellsynth.training.data.labelled_crops import load_labelled, stratified_split, thin_classes
    from napari_cellsynth.training.reports.generator_report import quality, real_vs_generated_grid

    features = out / "feature-classifier"
    if not (features / "card.json").is_file():
        export_classifier(run_folder(out, arm_name("full", "real"), args.seeds[0]), features)
    classifier = OnnxModel(features, kind="classifier")
    data = load_labelled(args.data, args.label_map)
    split = stratified_split(data.y, args.split_seed)
    images, rare = data.crops.images, data.classes.index(args.rare)
    of_class = {name: images[split["train"][data.y[split["train"]] == k]] for k, name in enumerate(data.classes)}
    held_out = images[split["val"][data.y[split["val"]] == rare]]
    results, grid = {}, {}
    base_bundle = out / "ddpm-base-bundle"
    if base is None:  # generators from elsewhere: the first one draws the other classes' grid rows
        base_bundle = Path(given[args.settings[0]])
    elif not (base_bundle / "card.json").is_file():
        export_ddpm(base, base_bundle)
    base_model = OnnxModel(base_bundle, kind="ddpm")
    for name in data.classes:
        if name != args.rare:
            settings = sampling(args, name, 6, 0, batch_size=6)
            grid[name] = (of_class[name], run_to_end(generate(base_model, settings)).images)
    for setting in args.settings:
        index = thin_classes(split["train"], data.y, data.classes, keep_specs(setting, args.rare), args.split_seed)
        seen = images[index[data.y[index] == rare]]
        with np.load(generated_path(out / setting, args, args.seeds[0]), allow_pickle=False) as saved:
            fake = saved["images"]
        results[setting] = quality(classifier, of_class[args.rare], seen, {"held-out real": held_out, "DDPM": fake},
                                   out / setting / "ssim_max.png")
        grid[f"{args.rare} ({setting})"] = (of_class[args.rare], fake)
    real_vs_generated_grid(grid, out / "real_vs_generated.png")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.ddpm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map", default="jurkat4")
    parser.add_argument("--rare", default="M")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(KEEP), choices=list(KEEP))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=32)
    add_experiment_shift(parser, "§6 and §6c")
    parser.add_argument("--ddpm-base", type=int, default=32)
    parser.add_argument("--ddpm-batch", type=int, default=32)
    parser.add_argument("--ddpm-steps", type=int, default=2000)
    parser.add_argument("--ddpm-prediction", default="epsilon", choices=["epsilon", "v"],
                        help="what the DDPM predicts (v is stable at high noise; see docs/results.md §6)")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--balance-to", default="median", help="median | max | a count")
    parser.add_argument("--sampler", default="ddim", choices=list(SAMPLERS))
    parser.add_argument("--sample-steps", type=int, default=50, help="sampler steps (DDPM always runs all of them)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM η (1: ancestral noise, as DDPM)")
    parser.add_argument("--clip-x0", type=float, help="clip every x0 estimate to ±this (see docs/results.md §6)")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--reuse-generated", action="store_true",
                        help="generate once per setting (first seed) and train every seed's classifier on that set")
    parser.add_argument("--skip-report", action="store_true",
                        help="no quality report (when settings run as separate processes; report once at the end)")
    parser.add_argument("--bundles", nargs="+", default=[], metavar="SETTING=BUNDLE",
                        help="use these generator bundles (e.g. full=zoo:ddpm-jurkat4-full-v) instead of training them")
    parser.add_argument("--control", choices=["duplicates"],
                        help="also train with as many extra rare crops as the generator adds, drawn with replacement "
                             "from the real ones (oversampling by copies: what synthesis has to beat)")
    add_runner_options(parser)
    parser.add_argument("--out", required=True)
    return parser


ARMS = {"real": "real only", "real+ddpm": "real + DDPM", "real+duplicates": "real + duplicated real {rare}"}


def arm_name(setting: str, arm: str) -> str:
    """An arm's folder under OUT (``full/real+ddpm``); its runs are ``OUT/SETTING/ARM/seedN``."""
    return f"{setting}/{arm}"


def arm_label(setting: str, arm: str, rare: str) -> str:
    """An arm as the summary names it (``full: real + DDPM``)."""
    return f"{setting}: {ARMS[arm].format(rare=rare)}"


def prepare_setting(out: Path, args, setting: str, crops: SettingCrops, given: dict[str, str],
                    base: Path | None) -> list[ClassifierArm]:
    """A setting's generator (trained and fine-tuned here, or given), each seed's generated cells (and copies), and
    its arms for the runner.  The first seed's real-only classifier trains first: the sets are sized from the
    setting's split, and that run's counts must be the same."""
    keep = keep_specs(setting, args.rare)
    common = classifier_options(args, keep)
    real = ClassifierArm(arm_name(setting, "real"), common)
    train_arms([real], args.seeds[:1], out, args.workers, args.threads, args.scheduler)
    crops.check_trained_on(run_folder(out, real.name, args.seeds[0]))
    bundle = given.get(setting) or ddpm_bundle(out / setting, base, args, keep)
    if setting in given:
        check_bundle_counts(bundle, crops.counts)
    arms = [real, ClassifierArm(arm_name(setting, "real+ddpm"),
                                (*common, "--extra-train", str(generated_path(out / setting, args, "{seed}"))))]
    for seed in args.seeds:
        made = generated(out / setting, bundle, crops.counts, args, seed)
        if args.control == "duplicates":
            duplicated(out / setting, made, crops, args.rare, seed)
    if args.control == "duplicates":
        arms.append(ClassifierArm(arm_name(setting, "real+duplicates"),
                                  (*common, "--extra-train", str(out / setting / "duplicated-seed{seed}.npz"))))
    return arms


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    given = given_bundles(args.bundles)
    crops = {setting: SettingCrops.of(args, keep_specs(setting, args.rare)) for setting in args.settings}
    for setting in args.settings:  # a target a setting already reaches is refused before anything trains
        needed_count(crops[setting].counts, args)
    base = None if all(setting in given for setting in args.settings) else ddpm_base(out, args)
    arms = [arm for setting in args.settings for arm in prepare_setting(out, args, setting, crops[setting], given, base)]
    train_arms(arms, args.seeds, out, args.workers, args.threads, args.scheduler)
    runs: dict[str, list] = {}
    for arm in arms:
        setting, _, kind = arm.name.partition("/")
        found = arm_metrics(out, arm.name, args.seeds)
        runs[arm_label(setting, kind, args.rare)] = [found[seed] for seed in args.seeds]
    summary = {name: summarize_runs(metrics) for name, metrics in runs.items()}
    paired = {f"{setting}: real + DDPM against real only":
              paired_seeds(runs[arm_label(setting, "real", args.rare)], runs[arm_label(setting, "real+ddpm", args.rare)],
                           args.rare)
              for setting in args.settings}
    if args.control == "duplicates":
        copies = ARMS["real+duplicates"].format(rare=args.rare)
        paired |= {f"{setting}: real + DDPM against {copies}":
                   paired_seeds(runs[arm_label(setting, "real+duplicates", args.rare)],
                                runs[arm_label(setting, "real+ddpm", args.rare)], args.rare)
                   for setting in args.settings}
    summary["paired"] = paired
    if not args.skip_report:
        summary["generator_quality"] = report(out, base, args, given)
    summary["command"] = "python -m napari_cellsynth.training.experiments.ddpm " + " ".join(argv or sys.argv[1:])
    write_json_atomic(out / ("summary.json" if not args.skip_report else f"summary-{'-'.join(args.settings)}.json"),
                      summary)
    tables = "\n".join([*(markdown_table(s, name) for name, s in summary.items()
                          if name not in ("command", "generator_quality", "paired")),
                        *(paired_markdown(name, result) for name, result in paired.items())])
    if not args.skip_report:
        (out / "summary.md").write_text(tables)
    print(tables)
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.ddpm"))
