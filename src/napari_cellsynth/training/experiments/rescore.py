"""Re-score a zoo bundle on the data its card names, in minutes, and compare with the numbers it shipped with.

    python -m napari_cellsynth.training.experiments.rescore zoo:classifier-jurkat4
    python -m napari_cellsynth.training.experiments.rescore zoo:cellpose-chromosomes --root ../shared/data/mfish

* A **classifier** is run through ONNX Runtime on its own test split (``arrays.npz``'s ``test_source_index``:
  crops of the training data file that training and model selection never used) and scored there; the card's
  test metrics (measured in torch at training time) are printed beside the new ones.
* A **cellpose** bundle segments the metaphases of the slides its card says were held out, and AP@0.5
  against their karyotypes is printed beside the card's.
* A **ddpm** bundle generates ``--count`` cells of ``--class`` with DPM-Solver++(2M), ``--steps`` calls, and
  KID×10³ on the features of ``--classifier`` (default the zoo's 4-class classifier) is measured against real
  cells of that class that neither model trained on: the generator's held-out split (``--split-seed``) ∩ the
  classifier's test split.  Two real-data rows give the scale: two halves of those real cells (the floor),
  and the same cells against another class's (``--other``).

``--data`` / ``--root`` point at the data where the card's recorded path does not hold (another machine).
Writes ``--out`` (JSON) when given; exits 1 when the new macro-F1 or AP differs from the card's by more
than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.bundle import load_arrays, read_card
from napari_cellsynth.core.classify import classify_crops
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.label_maps import apply_bundle_label_map, apply_label_map
from napari_cellsynth.core.metrics import classification_metrics, format_table
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.core.zoo import resolve

REPO = Path(__file__).resolve().parents[4]  # the checkout
SHARED = REPO.parent / "shared" / "data"


def data_path(recorded: str | None, given: str | None, fallback: Path) -> Path:
    """The data file: ``given``, else the recorded path, else the same file name under ``fallback``."""
    known = [Path(recorded), fallback / Path(recorded).name] if recorded else []
    for candidate in ([Path(given)] if given else []) + known:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"the bundle's data {recorded or '(not recorded in its card)'} is not here; pass --data "
                            "(or --root) with its location")


def rescore_classifier(bundle: Path, data: str | None) -> dict:
    model = OnnxModel(bundle, kind="classifier")
    arrays = load_arrays(bundle, model.card)
    if "test_source_index" not in arrays:
        raise ValueError(f"bundle {bundle} does not record its test split (exported before rescoring existed); "
                         "re-export it from its run")
    source = data_path(model.card.trained.source, data, SHARED / "jurkat")
    with np.load(source, allow_pickle=False) as d:
        index = arrays["test_source_index"]
        images, labels = d["images"][index], d["labels"][index]
    result = run_to_end(classify_crops(model, images))
    truth, classes = apply_bundle_label_map(labels, model.card.trained.label_map, model.card.classes)
    metrics = classification_metrics(truth, result.predicted, classes)
    shipped = model.card.trained.test_metrics or {}
    return {"kind": "classifier", "data": str(source), "test_crops": len(index), "metrics": metrics,
            "macro_f1": metrics["macro_f1"], "card_macro_f1": shipped.get("macro_f1"),
            "table": format_table(metrics)}


def rescore_cellpose(bundle: Path, root: str | None) -> dict:
    from napari_cellsynth.core.segment import load_bundle_model
    from napari_cellsynth.training.data.chromosome_masks import average_precision, load_split

    card = read_card(bundle)
    folder = Path(root) if root else SHARED / "mfish"
    if not folder.is_dir():
        raise FileNotFoundError(f"M-FISH folder {folder} not found; pass --root path/to/mfish")
    if not card.trained.held_out_slides or card.trained.test_ap50 is None:
        raise ValueError(f"{bundle}: its card records no held-out slides and AP@0.5 to rescore against; re-export it "
                         "with cellsynth export cellpose")
    _, held_out, slides = load_split(str(folder), list(card.trained.held_out_slides), None)
    scores = average_precision(load_bundle_model(bundle), held_out)
    return {"kind": "cellpose", "data": str(folder), "held_out_slides": slides, "metaphases": len(held_out),
            "ap50": scores["ap50_mean"], "ap50_std": scores["ap50_std"], "per_image": scores["per_image"],
            "card_ap50": card.trained.test_ap50,
            "table": f"AP@0.5 {scores['ap50_mean']:.3f} ± {scores['ap50_std']:.3f} over {len(held_out)} metaphases "
                     f"of {', '.join(slides)}"}


def rescore_ddpm(bundle: Path, data: str | None, classifier: str, class_name: str, other: str, count: int,
                 steps: int, split_seed: int, seed: int) -> dict:
    from napari_cellsynth.core.classify import bundle_features
    from napari_cellsynth.core.generate import GenerationSettings, generate
    from napari_cellsynth.training.data.labelled_crops import stratified_split
    from napari_cellsynth.training.reports.generator_metrics import kernel_inception_distance

    generator = OnnxModel(bundle, kind="ddpm")
    features_model = OnnxModel(classifier, kind="classifier")
    tested = load_arrays(features_model.folder, features_model.card).get("test_source_index")
    if tested is None:
        raise ValueError(f"classifier {classifier} does not record its test split; choose a zoo classifier")
    source = data_path(generator.card.trained.source, data, SHARED / "jurkat")
    with np.load(source, allow_pickle=False) as d:
        labels = d["labels"]
        y, classes = apply_label_map(labels, generator.card.trained.label_map)
        split = stratified_split(y, split_seed)
        unseen = np.intersect1d(np.concatenate([split["val"], split["test"]]), tested)
        pick = {name: unseen[y[unseen] == classes.index(name)] for name in (class_name, other)}
        real = {name: d["images"][index] for name, index in pick.items()}
    settings = GenerationSettings(class_name, count, "dpm_solver_pp_2m", steps, seed=seed, batch_size=32)
    fake = run_to_end(generate(generator, settings)).images
    feats = {name: run_to_end(bundle_features(features_model, images)) for name, images in real.items()}
    fake_feats = run_to_end(bundle_features(features_model, fake))
    half = len(feats[class_name]) // 2
    generated = f"generated {class_name} ({count}, DPM-Solver++(2M)-{steps})"
    rows = {generated: kernel_inception_distance(feats[class_name], fake_feats),
            f"real {class_name}, one half vs the other (floor)": kernel_inception_distance(feats[class_name][:half],
                                                                                    feats[class_name][half:]),
            f"real {other} (another class)": kernel_inception_distance(feats[class_name], feats[other])}
    table = "\n".join(f"{name:<48} KID×10³ {1e3 * m:8.2f} ± {1e3 * s:.2f}" for name, (m, s) in rows.items())
    return {"kind": "ddpm", "data": str(source), "reference": f"{len(feats[class_name])} real {class_name} cells",
            "classifier": classifier, "kid": {k: [1e3 * m, 1e3 * s] for k, (m, s) in rows.items()},
            "kid_generated": 1e3 * next(iter(rows.values()))[0], "table": table}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m napari_cellsynth.training.experiments.rescore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="zoo:NAME or a bundle folder")
    p.add_argument("--data", help="classifiers: the training data file, where the card's path does not hold")
    p.add_argument("--root", help="cellpose: the mfish folder (default ../shared/data/mfish)")
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--classifier", default="zoo:classifier-jurkat4", help="ddpm: the feature classifier of KID")
    p.add_argument("--class", dest="class_name", default="M", help="ddpm: the class to generate")
    p.add_argument("--other", default="G2", help="ddpm: the other real class of the scale row")
    p.add_argument("--count", type=int, default=128, help="ddpm: cells to generate")
    p.add_argument("--steps", type=int, default=20, help="ddpm: network calls")
    p.add_argument("--split-seed", type=int, default=0, help="ddpm: the generator's split seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON file to write")
    args = p.parse_args(argv)
    bundle = resolve(args.bundle)
    kind = read_card(bundle).kind
    if kind == "classifier":
        result = rescore_classifier(bundle, args.data)
        new, old, what = result["macro_f1"], result["card_macro_f1"], "test macro-F1"
    elif kind == "cellpose":
        result = rescore_cellpose(bundle, args.root)
        new, old, what = result["ap50"], result["card_ap50"], "AP@0.5"
    elif kind == "ddpm":  # its card holds no KID on these features: nothing to compare with
        result = rescore_ddpm(bundle, args.data, args.classifier, args.class_name, args.other, args.count, args.steps,
                              args.split_seed, args.seed)
        new, old, what = result["kid_generated"], None, "KID×10³"
    else:
        raise ValueError(f"rescoring covers classifier, cellpose and ddpm bundles; {args.bundle} is a {kind} bundle")
    print(result["table"])
    print(f"{args.bundle}: {what} {new:.3f} now" + (f", {old:.3f} in its card" if old is not None else ""))
    if args.out:
        write_json_atomic(args.out, {k: v for k, v in result.items() if k != "table"} | {"bundle": args.bundle})
    if old is not None and abs(new - old) > args.tolerance:
        print(f"{what} differs from the card's by {abs(new - old):.3f} (more than --tolerance {args.tolerance})",
              file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    sys.exit(run_entry(main, "python -m napari_cellsynth.training.experiments.rescore"))
