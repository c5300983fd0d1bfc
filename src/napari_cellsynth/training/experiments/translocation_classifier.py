"""Issue 20: which classifier recipe finds translocations on held-out slides?

    python -m napari_cellsynth.training.experiments.translocation_classifier --data runs/mfish/chromosomes.npz \
        --test-slides A20 V26 A04 V14 P09 --routes rgb six six-balanced six-identity --seeds 0 1 2 \
        --width 16 --out runs/transloc-classifier

Normal vs translocation on the M-FISH chromosome crops of :mod:`training.data.mfish_dataset`, whole
slides held out for the test (:func:`training.data.translocations.slide_split`; validation is a
stratified share of the other slides, for model selection and the decision threshold only).  Every
run is ``cellsynth train classifier`` with the project's default recipe (AdamW, cosine schedule,
flips, turns, brightness, shift) and ``--object-mask object``.  Routes (``ROUTES``):

- ``rgb``: the three fluorophore planes the data set renders as RGB (what §8 trained on);
- ``six``: DAPI plus all five fluorophore planes as six input channels;
- ``…-balanced``: class-balanced sampling (``--sampling balanced``);
- ``…-identity``: the backbone starts from a classifier of chromosome identity (1–22, X, Y) trained on
  every chromosome of the training slides (over 4,000 labels against 53 positives), then fine-tuned
  (``--init-from``).  One identity run (``--identity-seed``) serves every seed;
- ``…-spliced``: ``--spliced`` synthetic translocations (:mod:`training.data.spliced_translocations`:
  the end of a normal chromosome painted from another class's chromosome of the same metaphase), made
  per seed from the training split's negatives only and added to the training crops (``--extra-train``);
  ``six-spliced-bands`` paints a band inside the chromosome instead of its end in 30 % of them;
  ``six-spliced-focused`` feeds them through paper 001's minority-focused sampling instead (each batch
  gets 2 × (2 spliced + 1 mixup + 1 nonlinear mixup) translocation crops, ``--focused``);
- ``six[-spliced]-bbdm`` and ``…-cyclegan`` (paper 004's Tables 4–6 with this classifier): ``--synthetic``
  translocations made by the ``--bbdm`` or ``--cyclegan`` bundle (DAPI → the five planes; train it with
  ``--target fluorophores`` and the test slides excluded) from the DAPI crops of the training split's negatives,
  one set for every seed; ``…-filtered`` keeps those the UMAP filter keeps, fitted on the training split's real
  crops with the features of ``--feature-route``'s first seed (the working classifier, not the one under test).

Each run is scored by P(translocation) on the validation and test crops.  The test is reported at
the network's own decision (argmax) and at the threshold that maximises F1 on validation, with the
threshold-free PR-AUC (average precision) and ROC-AUC, and per test slide.  The colour-heterogeneity
logistic regression (:mod:`colour_baseline`) is scored the same way on the same split.  Everything
on disk is skipped, so the experiment resumes; several processes may share ``--out`` if they run
different ``--routes`` or ``--seeds``.  ``--collect-only`` writes ``summary.json`` and ``summary.md``
from what exists.  ``--confirmed`` (the label check's JSON) adds the same scores on a test whose
unconfirmed positives are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.training.data.chromosome_identity import CLASS_NAMES
from napari_cellsynth.training.data.spliced_translocations import save_spliced, spliced_set
from napari_cellsynth.training.data.translocations import (CLASSES, PLANES, RARE, dapi_and_planes, labelled_task,
                                                             slide_split)
from napari_cellsynth.training.experiments.colour_baseline import colour_features, colour_scores
from napari_cellsynth.training.runner.classifier_arms import ClassifierArm, run_folder, train_arms
from napari_cellsynth.training.trainers.arguments import add_experiment_shift

ROUTES = {
    "rgb": {"input": "rgb"},
    "rgb-balanced": {"input": "rgb", "sampling": "balanced"},
    "six": {"input": "six"},
    "six-balanced": {"input": "six", "sampling": "balanced"},
    "six-identity": {"input": "six", "identity": True},
    "six-identity-balanced": {"input": "six", "identity": True, "sampling": "balanced"},
    "six-spliced": {"input": "six", "spliced": 0.0},
    "six-identity-spliced": {"input": "six", "identity": True, "spliced": 0.0},
    "six-spliced-bands": {"input": "six", "spliced": 0.3},
    "six-spliced-focused": {"input": "six", "spliced": 0.0, "focused": 2},
}
GENERATORS = ("bbdm", "cyclegan")
for _kind in GENERATORS:  # paper 004's Tables 4–6 with this classifier: a generator's translocations, filtered or not
    ROUTES |= {f"six-{_kind}": {"input": "six", "generator": _kind},
               f"six-{_kind}-filtered": {"input": "six", "generator": _kind, "filtered": True},
               f"six-spliced-{_kind}": {"input": "six", "spliced": 0.0, "generator": _kind},
               f"six-spliced-{_kind}-filtered": {"input": "six", "spliced": 0.0, "generator": _kind, "filtered": True}}
KEYS = ("f1_argmax", "precision", "recall", "f1", "pr_auc", "roc_auc")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.translocation_classifier",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="chromosomes.npz of training.data.mfish_dataset")
    p.add_argument("--test-slides", nargs="+", required=True)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--routes", nargs="+", default=["rgb", "six", "six-balanced", "six-identity"], choices=list(ROUTES))
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--width", type=int, default=16)
    add_experiment_shift(p, "§11")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default: the trainer's recipe)")
    p.add_argument("--identity-seed", type=int, default=0)
    p.add_argument("--spliced", type=int, default=1000, help="synthetic translocations per run of a …-spliced route")
    p.add_argument("--bbdm", help="BBDM bundle (DAPI → five planes) for the …-bbdm routes")
    p.add_argument("--cyclegan", help="CycleGAN bundle (DAPI → five planes) for the …-cyclegan routes")
    p.add_argument("--synthetic", type=int, default=600, help="a generator's synthetic translocations")
    p.add_argument("--bridge-steps", type=int, default=50, help="BBDM bridge steps (skip steps of the 1000)")
    p.add_argument("--feature-route", default="six-spliced",
                   help="the route whose first seed's run gives the UMAP filter its features")
    p.add_argument("--ensemble-size", type=int, default=5,
                   help="also score disjoint ensembles of this many seeds' runs (the mean of their scores)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--confirmed", help="JSON with the positives confirmed by eye ({'confirmed': {slide: [rows of --data]}}, "
                   "e.g. docs/data/translocation_label_check.json): also score the test with the unconfirmed positives left out")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--out", required=True)
    return p


def prepare(args, out: Path) -> dict[str, np.ndarray]:
    """``rgb.npz``, ``six.npz`` (the labelled chromosomes), ``split.npz`` and ``identity.npz``."""
    with np.load(args.data, allow_pickle=False) as data:
        missing = {"dapi", "rgb", "fluorophores", "slide", "translocation", "metaphase", "chromosome_class"} - set(data.files)
        if missing:
            raise ValueError(f"{args.data} lacks {sorted(missing)}; build it with python -m "
                             "napari_cellsynth.training.data.mfish_dataset")
        chromosomes = {k: data[k] for k in data.files}
    out.mkdir(parents=True, exist_ok=True)
    split = slide_split(chromosomes, args.test_slides, args.val_fraction, args.split_seed)
    labelled = np.flatnonzero(chromosomes["translocation"] >= 0)
    six = dapi_and_planes(chromosomes)
    common = labelled_task(chromosomes, six, PLANES)
    sets = {"rgb.npz": labelled_task(chromosomes, chromosomes["rgb"], ["R", "G", "B"]), "six.npz": common,
            "split.npz": split}
    training_slides = ~np.isin(chromosomes["slide"], args.test_slides)
    sets["identity.npz"] = {"images": six[training_slides], "channels": np.array(PLANES),
                            "labels": np.array(CLASS_NAMES)[chromosomes["chromosome_class"][training_slides] - 1]}
    for name, arrays in sets.items():
        if not (out / name).is_file():
            with atomic_open(out / name, "wb") as fh:
                np.savez(fh, **arrays)
    return {**split, "slide": common["slide"], "y": (common["labels"] == RARE).astype(int),
            "chromosome_class": chromosomes["chromosome_class"][labelled], "row": labelled}


def confirmed_test(split: dict, path: str) -> dict:
    """``split`` with the test's positives that the label check did not confirm left out (scores keep their order:
    ``keep`` indexes the test scores)."""
    listed = json.loads(Path(path).read_text()).get("confirmed")
    if not isinstance(listed, dict):
        raise ValueError(f"{path}: expected {{'confirmed': {{slide: [row, …]}}}} as label_grids' check writes it")
    rows = {int(r) for slide_rows in listed.values() for r in slide_rows}
    test = split["test"]
    keep = (split["y"][test] == 0) | np.isin(split["row"][test], sorted(rows))
    return {**split, "test": test[keep], "keep": keep}


def restricted(scores: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {"val": scores["val"], "test": scores["test"][keep]}


def spliced_crops(seed: int, interstitial: float, args, out: Path, split: dict) -> Path:
    """``spliced/seed{seed}.npz``: ``--spliced`` synthetic translocations from the training split's negatives
    (``bands{share}-seed{seed}.npz`` with a share of interstitial bands)."""
    path = out / "spliced" / (f"bands{interstitial:g}-seed{seed}.npz" if interstitial else f"seed{seed}.npz")
    if path.is_file():
        with np.load(path, allow_pickle=False) as made:
            if len(made["labels"]) != args.spliced:
                raise ValueError(f"{path} holds {len(made['labels'])} spliced crops, not --spliced {args.spliced}; "
                                 "use another --out for another count")
        return path
    with np.load(out / "six.npz", allow_pickle=False) as crops:
        images, metaphases = crops["images"], crops["metaphase"]
    train = split["train"]
    made = spliced_set(images, split["chromosome_class"], metaphases, train[split["y"][train] == 0], args.spliced, seed,
                       interstitial=interstitial)
    return save_spliced(path, made)


def generated_crops(kind: str, args, out: Path, split: dict) -> Path:
    """``synthetic-{kind}.npz``: ``--synthetic`` translocations, the generator's five planes after the DAPI crops of
    a seeded sample of the training split's negatives on the slides the generator trained on (labelled
    translocation, what ``--extra-train`` reads)."""
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.core.translate import TranslationSettings, provenance, translate_crops

    path = out / f"synthetic-{kind}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as made:
            if len(made["labels"]) != args.synthetic:
                raise ValueError(f"{path} holds {len(made['labels'])} synthetic crops, not --synthetic "
                                 f"{args.synthetic}; use another --out for another count")
        return path
    if not getattr(args, kind):
        raise ValueError(f"the …-{kind} routes need a {kind.upper()} bundle: give --{kind} BUNDLE")
    model = OnnxModel(getattr(args, kind), kind=kind)
    with np.load(out / "six.npz", allow_pickle=False) as crops:
        images = crops["images"]
    if model.card.n_channels != images.shape[1] - 1:
        raise ValueError(f"the {kind.upper()} makes {model.card.n_channels} planes, the classifier reads "
                         f"{images.shape[1] - 1} after DAPI; train it with --target fluorophores")
    train = split["train"]
    # donors from the slides the generator trained on: a plane is another fluorophore in another probe set
    excluded = list(model.card.trained.exclude_slides)
    pool = train[(split["y"][train] == 0) & ~np.isin(split["slide"][train], excluded)]
    if not len(pool):
        raise ValueError(f"no training negatives on the slides the {kind.upper()} trained on (it excluded "
                         f"{' '.join(excluded)})")
    pick = np.sort(np.random.default_rng(args.split_seed).choice(pool, min(args.synthetic, len(pool)), replace=False))
    dapi = images[pick, :1]
    settings = TranslationSettings(steps=args.bridge_steps, seed=args.split_seed, batch_size=32)
    print(f"{kind.upper()}: translating {len(pick)} DAPI crops of training negatives", file=sys.stderr)
    planes = run_to_end(translate_crops(model, dapi, dapi[:, 0] > 0, settings))
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=np.concatenate([dapi, planes.astype(dapi.dtype)], axis=1),
                 labels=np.full(len(pick), RARE), donor=pick,
                 provenance=np.array(json.dumps(provenance(model, settings))))
    return path


def filtered_crops(kind: str, args, out: Path, split: dict) -> Path:
    """``kept-{kind}.npz``: the synthetic crops the UMAP filter keeps (fitted on the training split's real crops with
    the features of ``--feature-route``'s first seed, exported); its counts in ``filter-{kind}.json``."""
    from napari_cellsynth.core.filtering import run_filter
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.core.umap_plot import save_filter_figure
    from napari_cellsynth.export.export_classifier import export_classifier

    path = out / f"kept-{kind}.npz"
    synthetic = generated_crops(kind, args, out, split)
    if path.is_file():
        return path
    bundle = out / f"features-{args.feature_route}-seed{args.seeds[0]}"
    if not (bundle / "card.json").is_file():
        export_classifier(train_route(args.feature_route, args.seeds[0], args, out, split), bundle)
    with np.load(out / "six.npz", allow_pickle=False) as crops:
        real, labels = crops["images"][split["train"]], crops["labels"][split["train"]]
    with np.load(synthetic, allow_pickle=False) as made:
        images = made["images"]
    result = run_to_end(run_filter(OnnxModel(bundle, kind="classifier"), real, labels, images, RARE,
                                   random_state=args.split_seed))
    save_filter_figure(out / f"umap_filter-{kind}.png", result.fitted, result.points, result.keep)
    write_json_atomic(out / f"filter-{kind}.json", {
        "before": int(len(images)), "after": int(result.keep.sum()), "level": float(result.fitted.level_),
        "component_weight": float(result.fitted.weights_[result.fitted.component_]), "features": bundle.name})
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=images[result.keep], labels=np.full(int(result.keep.sum()), RARE))
    return path


def base_options(data: Path, args) -> list[str]:
    line = ["--data", str(data), "--object-mask", "object", "--object-crop", "window", "--width", str(args.width),
            "--shift", str(args.shift)]
    return line + (["--steps", str(args.steps)] if args.steps else [])


def identity_run(args, out: Path) -> Path:
    """The chromosome-identity classifier the ``…-identity`` routes start from (trained once)."""
    train_arms([ClassifierArm("identity", tuple(base_options(out / "identity.npz", args)))], [args.identity_seed],
               out, threads=args.threads)
    return run_folder(out, "identity", args.identity_seed)


def route_arm(route: str, seeds: list[int], args, out: Path, split: dict) -> ClassifierArm:
    """The route as the runner trains it; what it needs first (the identity run, each seed's spliced set, a
    generator's crops) is made here."""
    spec = ROUTES[route]
    extra = ["--split", str(out / "split.npz")]
    if spec.get("sampling"):
        extra += ["--sampling", spec["sampling"]]
    if spec.get("identity"):
        extra += ["--init-from", str(identity_run(args, out))]
    added = []
    if "spliced" in spec:
        paths = {seed: str(spliced_crops(seed, spec["spliced"], args, out, split)) for seed in seeds}
        spliced = paths[seeds[0]].replace(f"seed{seeds[0]}.npz", "seed{seed}.npz")  # each seed's own draw
        if spec.get("focused"):
            extra += [f"--focused={RARE}={spec['focused']}", "--focused-generated", spliced]
        else:
            added.append(spliced)
    if spec.get("generator"):
        made = filtered_crops if spec.get("filtered") else generated_crops
        added.append(str(made(spec["generator"], args, out, split)))
    if added:
        extra += ["--extra-train", *added]
    return ClassifierArm(route, (*base_options(out / f"{spec['input']}.npz", args), *extra))


def train_route(route: str, seed: int, args, out: Path, split: dict) -> Path:
    train_arms([route_arm(route, [seed], args, out, split)], [seed], out, threads=args.threads)
    return run_folder(out, route, seed)


def run_scores(run: Path, split: dict) -> dict[str, np.ndarray]:
    """P(translocation) of the validation and test crops under the run's best checkpoint (``scores.npz``)."""
    if (run / "scores.npz").is_file():
        with np.load(run / "scores.npz") as saved:
            return {k: saved[k] for k in saved.files}
    import torch

    from napari_cellsynth.export.export_classifier import load_run
    from napari_cellsynth.training.data.labelled_crops import CropBatches

    record, model = load_run(run)
    with np.load(record.data, allow_pickle=False) as data:
        images = data["images"]
    rare = record.classes.index(RARE)
    scores = {}
    for part in ("val", "test"):
        batches = CropBatches(images[split[part]], split["y"][split[part]], record.normalization, 256, False, 0)
        with torch.inference_mode():
            scores[part] = np.concatenate([model(x)[0].softmax(1)[:, rare].numpy() for x, _ in batches])
    with atomic_open(run / "scores.npz", "wb") as fh:
        np.savez(fh, **scores)
    return scores


def val_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold with the best F1 on validation (the midpoint to the next lower score)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    lower = score[score < thresholds[best]]
    return float((thresholds[best] + lower.max()) / 2) if lower.size else float(thresholds[best])


def test_metrics(scores: dict[str, np.ndarray], split: dict) -> dict:
    """Test precision/recall/F1 at the validation threshold, F1 at 0.5, PR-AUC, ROC-AUC, per slide."""
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support, roc_auc_score

    y_val, y_test = split["y"][split["val"]], split["y"][split["test"]]
    threshold = val_threshold(y_val, scores["val"])
    called = scores["test"] >= threshold
    precision, recall, f1, _ = precision_recall_fscore_support(y_test, called, average="binary", zero_division=0)
    result = {"threshold": threshold, "f1_argmax": float(f1_score(y_test, scores["test"] >= 0.5, zero_division=0)),
              "precision": float(precision), "recall": float(recall), "f1": float(f1),
              "pr_auc": float(average_precision_score(y_test, scores["test"])),
              "roc_auc": float(roc_auc_score(y_test, scores["test"])), "per_slide": {}}
    slides = split["slide"][split["test"]]
    for slide in sorted(set(slides.tolist())):
        here = slides == slide
        positives = int(y_test[here].sum())
        row = {"positives": positives, "negatives": int((~y_test[here].astype(bool)).sum()),
               "true_positives": int((called & here & (y_test == 1)).sum()),
               "false_positives": int((called & here & (y_test == 0)).sum())}
        if positives:
            row["recall"] = row["true_positives"] / positives
        result["per_slide"][slide] = row
    return result


def baseline_scores(out: Path, split: dict) -> dict[str, np.ndarray]:
    """The colour-heterogeneity logistic regression of :mod:`colour_baseline` on the RGB crops, fitted on the
    training split, scored on validation and test."""
    with np.load(out / "rgb.npz", allow_pickle=False) as crops:
        features = colour_features(crops["images"])
    return colour_scores(features, split["y"], split["train"], {part: split[part] for part in ("val", "test")})


def ensemble_scores(scores: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Runs as one ensemble: their mean P(translocation) on each part (what ``export classifier --ensemble`` gives)."""
    return {part: np.mean([score[part] for score in scores], axis=0) for part in ("val", "test")}


def disjoint_ensembles(scores: list[dict[str, np.ndarray]], seeds: list[str], k: int, split: dict) -> dict:
    """Test metrics of consecutive disjoint groups of ``k`` runs, each as one ensemble (as a zoo bundle holds
    one), with their mean ± std; runs left over after the last full group are not used."""
    groups = [range(g * k, (g + 1) * k) for g in range(len(scores) // k)]
    metrics = [test_metrics(ensemble_scores([scores[i] for i in group]), split) for group in groups]
    return {"size": k, "n": len(groups), **mean_std(metrics), "members": [[seeds[i] for i in group] for group in groups],
            "groups": metrics}


def mean_std(rows: list[dict]) -> dict:
    return {key: {"mean": float(np.mean([r[key] for r in rows])), "std": float(np.std([r[key] for r in rows]))}
            for key in KEYS}


def collect(args, out: Path, split: dict) -> dict:
    counts = {part: {name: int((split["y"][split[part]] == k).sum()) for k, name in enumerate(CLASSES)}
              for part in ("train", "val", "test")}
    summary = {"test_slides": args.test_slides, "steps": args.steps, "width": args.width, "spliced": args.spliced,
               "counts": counts, "colour_baseline": test_metrics(baseline_scores(out, split), split), "routes": {}}
    clean = confirmed_test(split, args.confirmed) if args.confirmed else None
    if clean is not None:
        summary["confirmed"] = {"test_positives": int(clean["y"][clean["test"]].sum()), "routes": {},
                                "colour_baseline": test_metrics(restricted(baseline_scores(out, split), clean["keep"]),
                                                                clean)}
    for route in args.routes:
        runs = sorted((out / route).glob("seed*/metrics_test.json"), key=lambda path: int(path.parent.name[4:]))
        scores = [run_scores(path.parent, split) for path in runs]
        rows = [{**test_metrics(score, split), "seed": path.parent.name} for path, score in zip(runs, scores)]
        if rows:
            summary["routes"][route] = {"n_seeds": len(rows), **mean_std(rows), "runs": rows}
        if len(rows) > 1:  # the seeds' runs as one ensemble: their mean P(translocation)
            summary["routes"][route]["ensemble"] = test_metrics(ensemble_scores(scores), split)
        grouped = args.ensemble_size > 1 and len(rows) >= 2 * args.ensemble_size
        if grouped:
            summary["routes"][route]["ensembles"] = disjoint_ensembles(scores, [r["seed"] for r in rows],
                                                                       args.ensemble_size, split)
        if rows and clean is not None:
            kept = [restricted(score, clean["keep"]) for score in scores]
            summary["confirmed"]["routes"][route] = mean_std([test_metrics(score, clean) for score in kept])
            if grouped:
                summary["confirmed"]["routes"][route]["ensembles"] = disjoint_ensembles(
                    kept, [r["seed"] for r in rows], args.ensemble_size, clean)
    for kind in GENERATORS:
        if (out / f"filter-{kind}.json").is_file():
            summary.setdefault("umap_filter", {})[kind] = json.loads((out / f"filter-{kind}.json").read_text())
    write_json_atomic(out / "summary.json", summary)
    (out / "summary.md").write_text(markdown(summary))
    return summary


def plus_minus(stats: dict, keys) -> str:
    """Table cells "mean ± std" of ``keys`` in a :func:`mean_std` result."""
    return " | ".join(f"{stats[k]['mean']:.3f} ± {stats[k]['std']:.3f}" for k in keys)


def markdown(summary: dict) -> str:
    lines = ["| classifier | seeds | F1 (argmax) | precision | recall | F1 (val threshold) | PR-AUC | ROC-AUC |",
             "|---|---|---|---|---|---|---|---|"]
    base = summary["colour_baseline"]
    lines.append("| colour-heterogeneity logistic regression | – | " + " | ".join(f"{base[k]:.3f}" for k in KEYS) + " |")
    for route, row in summary["routes"].items():
        lines.append(f"| {route} | {row['n_seeds']} | " + plus_minus(row, KEYS) + " |")
    for route, row in summary["routes"].items():
        if "ensembles" in row:
            e = row["ensembles"]
            lines.append(f"| {route}, {e['n']} disjoint ensembles of {e['size']} runs | {e['n']} | "
                         + plus_minus(e, KEYS) + " |")
        if "ensemble" in row:
            lines.append(f"| {route}, the {row['n_seeds']} runs' mean score | – | "
                         + " | ".join(f"{row['ensemble'][k]:.3f}" for k in KEYS) + " |")
    slides = [s for s, v in base["per_slide"].items() if v["positives"]]
    others = [s for s in base["per_slide"] if s not in slides]
    lines += ["", "Per test slide at the validation threshold (mean over seeds): recall on the slides with "
              "translocations, false positives on each slide.", "",
              "| classifier | " + " | ".join(f"{s} recall ({base['per_slide'][s]['positives']})" for s in slides)
              + " | " + " | ".join(f"{s} FP (of {base['per_slide'][s]['negatives']})" for s in slides + others) + " |",
              "|---|" + "---|" * (2 * len(slides) + len(others))]

    def per_slide(rows: list[dict]) -> str:
        recall = [f"{np.mean([r['per_slide'][s]['recall'] for r in rows]):.2f}" for s in slides]
        fp = [f"{np.mean([r['per_slide'][s]['false_positives'] for r in rows]):.1f}" for s in slides + others]
        return " | ".join(recall + fp)

    lines.append(f"| colour-heterogeneity logistic regression | {per_slide([base])} |")
    for route, row in summary["routes"].items():
        lines.append(f"| {route} | {per_slide(row['runs'])} |")
    if "confirmed" in summary:
        clean = summary["confirmed"]
        lines += ["", f"The test with only the {clean['test_positives']} positives confirmed by eye (the others left out; "
                  "the threshold is still validation's):", "",
                  "| classifier | precision | recall | F1 (val threshold) | PR-AUC | ROC-AUC |", "|---|---|---|---|---|---|",
                  "| colour-heterogeneity logistic regression | "
                  + " | ".join(f"{clean['colour_baseline'][k]:.3f}" for k in KEYS[1:]) + " |"]
        for route, row in clean["routes"].items():
            lines.append(f"| {route} | " + plus_minus(row, KEYS[1:]) + " |")
        for route, row in clean["routes"].items():
            if "ensembles" in row:
                e = row["ensembles"]
                lines.append(f"| {route}, {e['n']} disjoint ensembles of {e['size']} runs | "
                             + plus_minus(e, KEYS[1:]) + " |")
    for kind, counts in summary.get("umap_filter", {}).items():
        lines += ["", f"UMAP filter on the {kind.upper()}'s translocations: kept {counts['after']} of {counts['before']} "
                  f"(level {counts['level']:.3f}, features of {counts['features']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    split = prepare(args, out)
    if not args.collect_only:
        train_arms([route_arm(route, args.seeds, args, out, split) for route in args.routes], args.seeds, out,
                   threads=args.threads)
    summary = collect(args, out, split)
    print((out / "summary.md").read_text())
    return summary


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.translocation_classifier"))
