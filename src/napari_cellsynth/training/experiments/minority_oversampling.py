"""Paper 001's Tables 1–2: generated, mixup and nonlinear-mixup minority crops, fed by minority-focused sampling.

    python -m napari_cellsynth.training.experiments.minority_oversampling \
        --data ../shared/data/jurkat/jurkat_cells.npz --label-map jurkat7 \
        --focused Prophase=1 Metaphase=2 Anaphase=2 Telophase=1 \
        --generator wgan-div=runs/bundles/gan-div-{Prophase,Metaphase,Anaphase,Telophase-1000} \
        --generator wgan-gp=runs/bundles/gan-gp-{Prophase,Metaphase,Anaphase,Telophase} \
        --seeds 0 1 2 3 4 --out runs/oversampling-jurkat7

Every run is ``cellsynth train classifier`` with the project's default recipe, on one fixed stratified split
(``--split-seed``: the split the generators were trained on, so that no generator saw a validation or test crop);
the seeds change the initialisation, the batch order and the synthetic draws.  Arms (:func:`arms`; 001's ablation):

- ``base``: the real crops alone;
- ``balanced``: the real crops alone, drawn with class-balanced sampling (``--sampling balanced``: the cheap
  alternative that repeats the rare crops instead of making new ones);
- ``standard-<first generator>``: 001's "standard sampling": the same synthetic mix as the full method (2
  generated : 1 mixup : 1 nonlinear mixup per unit of n), drawn once per seed and merged into the training crops
  (``--extra-train``), as many as give the training set the synthetic share of a focused batch;
- ``focused-<generator>``: minority-focused sampling with that generator in the generated slots (the full method
  with the first generator, e.g. WGAN-div);
- ``focused-<first generator>-no-mixup``, ``…-no-nonlinear``: the full method without one part (its slots go back
  to original crops); ``focused-no-generator``: mixup and nonlinear mixup of the real minority crops alone.

001's batch on Jurkat is the default: 32 crops, of which 8 original with n = 2, 2, 1, 1 (24 synthetic).  Synthetic
crops get the originals' flips, turns, brightness and shift; nonlinear mixup turns pixels in per-channel standard
units (:mod:`training.data.mixing`).  ``OUT/settings.json`` records what the files depend on, and a rerun with other
settings is refused.

``--generator KIND=BUNDLE …`` names the bundles that fill the generated slots: one-class GAN bundles (one per
minority class, as 001 trains them) or one class-conditional DDPM bundle; the first kind is the full method's.
Each makes ``--generated-count`` crops per minority class once (DPM-Solver++(2M)-20 for a DDPM), kept as TIFFs in
``OUT/generated/`` with their provenance; ``OUT/generated-<kind>.png`` shows them beside real training crops, and
``OUT/mixing.png`` mixup and nonlinear-mixup crops beside them.

Scored on the split's test part, which neither the generators nor the checkpoint choice (validation macro-F1)
touched: macro-F1 and per-class F1 (mean ± std over seeds), and 001's Wilcoxon rank-sum test of each arm against
the full method on the per-crop probability of the true class (averaged over seeds), for all test crops and for
the minority classes' ones; and the rank-sum test of the seeds' macro-F1 (:func:`collect`).  A generator whose card
records another number of training crops of a class than this split's training part holds was not trained on it
(it may have seen test crops) and is refused.  Everything on disk is skipped, so the experiment resumes; several
processes may share ``--out`` with different ``--arms`` or ``--seeds``.
``--collect-only`` writes ``summary.json`` and ``summary.md`` from what exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.generate import GENERATOR_KINDS, GenerationSettings
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.outputs import generate_into, read_generated
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.training.data.focused_sampling import (PARTS, MinorityPool, channel_ranges, supplementary_batch,
                                                             supplementary_size)
from napari_cellsynth.training.data.labelled_crops import load_labelled, stratification, stratified_split
from napari_cellsynth.training.data.split_provenance import TrainingSplit, check_learnt_from_split
from napari_cellsynth.training.reports.summaries import write_summary
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, train_arms
from napari_cellsynth.training.trainers.arguments import add_experiment_shift

ALL_PARTS = tuple(PARTS)
ABLATIONS = {"no-mixup": ("generated", "nonlinear"), "no-nonlinear": ("generated", "mixup")}
SETTINGS = ("data", "label_map", "focused", "generator", "generated_count", "split_seed", "stratify_by", "width",
            "steps", "batch_size")  # what the files under --out depend on (not --seeds, --arms, --threads)


def arms(kinds: list[str]) -> dict[str, dict]:
    """The ablation's arms for the given generator kinds; the first kind is the full method's, and every arm that
    uses a generator names it."""
    full = kinds[0]
    table = {"base": {}, "balanced": {"sampling": "balanced"}, f"standard-{full}": {"standard": full}}
    table |= {f"focused-{kind}": {"generator": kind, "parts": ALL_PARTS} for kind in kinds}
    table |= {f"focused-{full}-{name}": {"generator": full, "parts": parts} for name, parts in ABLATIONS.items()}
    table["focused-no-generator"] = {"generator": None, "parts": ("mixup", "nonlinear")}
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.minority_oversampling",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="labelled crops (npz, TIFF stack + labels, or folder per class)")
    p.add_argument("--label-map", help="label map name or JSON (as cellsynth train classifier)")
    p.add_argument("--focused", nargs="+", required=True, metavar="CLASS=N",
                   help="the minority classes and their n (001 on Jurkat: Prophase=1 Metaphase=2 Anaphase=2 "
                        "Telophase=1)")
    p.add_argument("--generator", nargs="+", action="append", required=True, metavar="KIND=BUNDLE",
                   help="generator bundles for the generated slots (e.g. wgan-div=runs/bundles/gan-div-Metaphase), "
                        "one item per bundle; the first kind named is the full method's")
    p.add_argument("--generated-count", type=int, default=2000, help="generated crops per minority class")
    p.add_argument("--arms", nargs="+", help="arms to run (default: all of them)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--split-seed", type=int, default=0, help="the split the generators were trained on")
    p.add_argument("--stratify-by", metavar="LABEL_MAP",
                   help="stratify the split by another label map's classes, as the generators' was (e.g. jurkat4: the "
                        "split of the zoo's 4-class DDPMs, fine-tuned on these classes with the same option)")
    p.add_argument("--width", type=int, default=16)
    add_experiment_shift(p, "§12")
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps per run (the same for every arm)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="the whole batch, original plus supplementary (001: 32, of which 8 original on Jurkat)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--out", required=True)
    return p


def parse_generators(groups: list[list[str]]) -> dict[str, list[str]]:
    """``[["wgan-div=A", "wgan-div=B"], ["wgan-gp=C"]]`` → ``{"wgan-div": ["A", "B"], "wgan-gp": ["C"]}`` (kinds in
    the order they first appear)."""
    kinds: dict[str, list[str]] = {}
    for item in (item for group in groups for item in group):
        kind, sep, bundle = item.partition("=")
        if not sep or not kind or not bundle:
            raise ValueError(f"--generator {item!r}: write KIND=BUNDLE, e.g. wgan-div=runs/bundles/gan-div-Metaphase")
        kinds.setdefault(kind, []).append(bundle)
    return kinds


def parse_focused(specs: list[str], classes: list[str]) -> dict[str, int]:
    focused = {}
    for spec in specs:
        name, _, n = spec.partition("=")
        if name not in classes or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--focused {spec!r}: use CLASS=N with a class of {classes} and N ≥ 1")
        focused[name] = int(n)
    return focused


class Experiment:
    """The data, the fixed split and the files every arm shares, under ``out``."""

    def __init__(self, args, out: Path):
        self.args, self.out = args, out
        data = load_labelled(args.data, args.label_map)
        self.y, self.classes, self.images = data.y, data.classes, data.crops.images
        self.focused = parse_focused(args.focused, self.classes)
        self.generators = parse_generators(args.generator)
        self.arms = arms(list(self.generators))
        unknown = set(args.arms or []) - set(self.arms)
        if unknown:
            raise ValueError(f"--arms {sorted(unknown)}: choose from {list(self.arms)}")
        stratify, self.split_classes = stratification(data, args.stratify_by)
        self.split = stratified_split(stratify, args.split_seed)
        self.split_y = stratify
        out.mkdir(parents=True, exist_ok=True)
        settings = {key: getattr(args, key) for key in SETTINGS}
        if (out / "settings.json").is_file():
            earlier = json.loads((out / "settings.json").read_text())
            changed = sorted(k for k in SETTINGS if earlier.get(k) != json.loads(json.dumps(settings[k])))
            if changed:
                raise ValueError(f"{out} holds an experiment with other {', '.join(changed)}; choose another --out "
                                 "(only --seeds, --arms and --threads may change between runs)")
        else:
            write_json_atomic(out / "settings.json", settings)
        if not (out / "split.npz").is_file():
            with atomic_open(out / "split.npz", "wb") as fh:
                np.savez(fh, **self.split)
        train = self.split["train"]
        self.train_images, self.train_y = self.images[train], self.y[train]
        self.value_range, self.channel_scale = channel_ranges(self.train_images)

    def generated(self, kind: str) -> Path:
        """``generated-<kind>.npz``: ``--generated-count`` crops of every minority class from the kind's bundles."""
        path = self.out / f"generated-{kind}.npz"
        if path.is_file():
            return path
        images, labels, rows = [], [], {}
        for bundle in self.generators[kind]:
            model = OnnxModel(bundle, kind=GENERATOR_KINDS)
            for name in [c for c in model.card.classes if c in self.focused]:
                self.check_trained_on_split(model.card, name)
                settings = GenerationSettings(name, self.args.generated_count, "dpm_solver_pp_2m", 20,
                                              batch_size=64)
                settings.check(model)
                folder = self.out / "generated" / kind / name
                record = run_to_end(generate_into(folder, model, settings))
                made = read_generated(folder, record, settings.count)
                images.append(made)
                labels += [name] * len(made)
                rows[name] = (self.train_images[self.train_y == self.classes.index(name)], made)
        missing = set(self.focused) - set(labels)
        if missing:
            raise ValueError(f"--generator {kind}: no bundle makes {sorted(missing)}; give one bundle per minority "
                             "class (or a class-conditional one with all of them)")
        from napari_cellsynth.training.reports.generator_report import real_vs_generated_grid

        real_vs_generated_grid(rows, self.out / f"generated-{kind}.png")
        with atomic_open(path, "wb") as fh:
            np.savez(fh, images=np.concatenate(images), labels=np.array(labels))
        return path

    def check_trained_on_split(self, card, name: str) -> None:
        """The generator, and each start it was fine-tuned from, learnt from this split's training part
        (:mod:`training.data.split_provenance`)."""
        split = TrainingSplit.of(self.args.split_seed, self.split_classes, self.split_y[self.split["train"]],
                                 "this experiment")
        here = int((self.train_y == self.classes.index(name)).sum())
        check_learnt_from_split(card, name, here, split, "train it with the same --split-seed and data, or pass its "
                                                         "--split-seed")

    def pools(self, kind: str | None) -> list[MinorityPool]:
        """One pool per minority class: its real training crops and the ``kind`` generator's crops (none without)."""
        images, labels = self.train_images[:0], np.array([], dtype=str)
        if kind is not None:
            with np.load(self.generated(kind), allow_pickle=False) as generated:
                images, labels = generated["images"], generated["labels"]
        return [MinorityPool(self.classes.index(name), n, self.train_images[self.train_y == self.classes.index(name)],
                             images[labels == name]) for name, n in self.focused.items()]

    def mixing_examples(self) -> Path:
        """``mixing.png``: per minority class, real training crops beside mixup and nonlinear-mixup crops of them
        (as the supplementary batches make them, real pairs only)."""
        from napari_cellsynth.training.data.mixing import mixup, nonlinear_mixup, to_range
        from napari_cellsynth.training.reports.generator_report import real_vs_generated_grid

        path, rng, rows = self.out / "mixing.png", np.random.default_rng(0), {}
        for name in self.focused:
            real = self.train_images[self.train_y == self.classes.index(name)]
            a, b = (real[rng.integers(len(real), size=6)] for _ in range(2))
            rows[f"{name} mixup"] = (real, to_range(mixup(a, b, rng)[0], self.value_range, a.dtype))
            rows[f"{name} nonlinear"] = (real, nonlinear_mixup(a, b, rng, self.value_range, self.channel_scale))
        real_vs_generated_grid(rows, path)
        return path

    def standard_set(self, kind: str, seed: int) -> Path:
        """001's standard sampling: the full method's synthetic mix, drawn once, as many crops as give the training
        set the synthetic share of a focused batch."""
        path = self.out / f"standard-{kind}-seed{seed}.npz"
        if path.is_file():
            return path
        pools = self.pools(kind)
        per_batch = supplementary_size(pools, ALL_PARTS)
        original = self.args.batch_size - per_batch
        target = int(round(len(self.train_y) * per_batch / original))
        rng = np.random.default_rng(seed)
        images, labels = [], []
        while sum(len(x) for x in images) < target:
            batch, y = supplementary_batch(pools, ALL_PARTS, rng, self.value_range, self.channel_scale)
            images.append(batch)
            labels.append(y)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, images=np.concatenate(images)[:target],
                     labels=np.array(self.classes)[np.concatenate(labels)[:target]])
        return path

    def classifier_arm(self, arm: str, seeds: list[int]) -> ClassifierArm:
        """The arm as the experiments' runner trains it: the trainer's options on the fixed split (the synthetic
        sets it needs are made first; a standard set is drawn once per seed)."""
        spec = self.arms[arm]
        line = ["--data", self.args.data, "--split", str(self.out / "split.npz"), "--width", str(self.args.width),
                "--steps", str(self.args.steps), "--batch-size", str(self.args.batch_size),
                "--shift", str(self.args.shift)]
        if self.args.label_map:
            line += ["--label-map", self.args.label_map]
        if spec.get("sampling"):
            line += ["--sampling", spec["sampling"]]
        if spec.get("standard"):
            for seed in seeds:
                self.standard_set(spec["standard"], seed)
            line += ["--extra-train", str(self.out / f"standard-{spec['standard']}-seed{{seed}}.npz")]
        if spec.get("parts"):
            line += ["--focused", *[f"{name}={n}" for name, n in self.focused.items()],
                     "--focused-parts", *spec["parts"]]
            if spec.get("generator"):
                line += ["--focused-generated", str(self.generated(spec["generator"]))]
        return ClassifierArm(arm, tuple(line))

    def train(self, arms: list[str], seeds: list[int]) -> None:
        """Every (arm, seed) not on disk, seed by seed, on the experiments' one runner."""
        declared = [self.classifier_arm(arm, seeds) for arm in arms]
        train_arms(declared, seeds, self.out, threads=self.args.threads)

    def probabilities(self, run: Path) -> np.ndarray:
        """Softmax of the run's best checkpoint on the test crops (``test_probabilities.npy``)."""
        path = run / "test_probabilities.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
        import torch

        from napari_cellsynth.export.export_classifier import load_run
        from napari_cellsynth.training.data.labelled_crops import CropBatches

        record, model = load_run(run)
        test = self.split["test"]
        batches = CropBatches(self.images[test], self.y[test], record.normalization, 256, False, 0)
        with torch.inference_mode():
            probabilities = np.concatenate([model(x)[0].softmax(1).numpy() for x, _ in batches])
        with atomic_open(path, "wb") as fh:
            np.save(fh, probabilities)
        return probabilities


def collect(experiment: Experiment, seeds: list[int]) -> dict:
    """Per arm: mean ± std over its seeds; against the full method, on the seeds both have, 001's one-sided rank-sum
    test (is the full method's probability of the true class larger?) with the test crop as the unit, P(true)
    averaged over those seeds, for all test crops and for the minority classes' ones; and the one-sided rank-sum
    test of the seeds' macro-F1 (the seed as the unit: with 5 seeds a side, p < 0.01 needs complete separation)."""
    from scipy.stats import mannwhitneyu

    from napari_cellsynth.training.reports.summaries import summarize_runs

    out, y = experiment.out, experiment.y[experiment.split["test"]]
    minority = np.isin(y, [experiment.classes.index(c) for c in experiment.focused])

    def done_seeds(arm: str) -> list[int]:
        return [s for s in seeds if (out / arm / f"seed{s}" / "metrics_test.json").is_file()]

    def p_true(arm: str, chosen: list[int]) -> np.ndarray:
        return np.mean([experiment.probabilities(out / arm / f"seed{s}")[np.arange(len(y)), y] for s in chosen], axis=0)

    def metrics(arm: str, chosen: list[int]) -> list[dict]:
        return [json.loads((out / arm / f"seed{s}" / "metrics_test.json").read_text()) for s in chosen]

    full = f"focused-{next(iter(experiment.generators))}"
    rows: dict[str, dict] = {}
    for arm in experiment.arms:
        chosen = done_seeds(arm)
        if not chosen:
            continue
        runs, probability = metrics(arm, chosen), p_true(arm, chosen)
        rows[arm] = {"seeds": chosen, **summarize_runs(runs), "macro_f1_per_seed": [m["macro_f1"] for m in runs],
                     "mean_p_true": {"all": float(probability.mean()), "minority": float(probability[minority].mean())}}
        shared = sorted(set(chosen) & set(done_seeds(full)))
        if arm == full or not shared:
            continue
        ours, theirs = p_true(full, shared), p_true(arm, shared)
        f1_full = [m["macro_f1"] for m in metrics(full, shared)]
        f1_arm = [m["macro_f1"] for m in metrics(arm, shared)]
        rows[arm]["vs_full"] = {
            "seeds": shared,
            "p_crops_all": float(mannwhitneyu(ours, theirs, alternative="greater").pvalue),
            "p_crops_minority": float(mannwhitneyu(ours[minority], theirs[minority], alternative="greater").pvalue),
            "p_seeds_macro_f1": float(mannwhitneyu(f1_full, f1_arm, alternative="greater").pvalue),
            "macro_f1_difference": float(np.mean(f1_full) - np.mean(f1_arm))}
    return {"classes": experiment.classes, "focused": experiment.focused, "full_method": full,
            "test_counts": {c: int((y == k).sum()) for k, c in enumerate(experiment.classes)},
            "generators": experiment.generators, "arms": rows}


def markdown(summary: dict) -> str:
    classes = summary["classes"]
    lines = ["| arm | seeds | macro-F1 | " + " | ".join(f"{c} F1" for c in classes)
             + " | P(true), minority crops | p, all crops | p, minority crops | p, seeds' macro-F1 |",
             "|---" * (len(classes) + 7) + "|"]
    for arm, row in summary["arms"].items():
        f1 = [f"{row['per_class'][c]['f1']['mean']:.3f} ± {row['per_class'][c]['f1']['std']:.3f}" for c in classes]
        test = row.get("vs_full")
        p = [f"{test[k]:.2g}" for k in ("p_crops_all", "p_crops_minority", "p_seeds_macro_f1")] if test else ["–"] * 3
        lines.append(f"| {arm} | {len(row['seeds'])} | {row['macro_f1']['mean']:.3f} ± {row['macro_f1']['std']:.3f} | "
                     + " | ".join(f1) + f" | {row['mean_p_true']['minority']:.3f} | " + " | ".join(p) + " |")
    counts = ", ".join(f"{c} {n}" for c, n in summary["test_counts"].items())
    return ("\n".join(lines) + f"\n\nTest crops: {counts}. p: one-sided rank-sum tests that the full method "
            f"({summary['full_method']}) beats the arm, on the seeds both have.\n")


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    experiment = Experiment(args, out)
    experiment.mixing_examples()
    if not args.collect_only:
        experiment.train(list(args.arms or experiment.arms), args.seeds)
    summary = collect(experiment, args.seeds)
    return write_summary(out, summary, markdown(summary), __spec__.name, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.minority_oversampling"))
