"""How well a generator's cells carry their class, measured by a classifier that had no part in making or choosing
them.  With ``--keep``, the scorer is a real-only classifier trained on the unthinned training part (it knows the rare
class as well as the data allows, and no filter uses it); otherwise the ``real`` classifier of another seed than the
one whose classifier filtered the cells (with one seed there is no other, and the report says so).

- class fidelity: the share of generated class-c cells that the scoring classifier calls c, beside that classifier's
  recall on the real test cells of c;
- precision, recall, density and coverage of the generated cells against the real training cells of c, on the
  scoring classifier's features (:func:`~napari_cellsynth.core.knn_realism.precision_recall`);
- SSIM-max: each generated cell's SSIM to its nearest real training cell of c, beside the same for the real test cells
  of c, and the share of generated cells closer than 95 % of the real test cells come (memorisation);
- where the data's own labels are finer than the class (Jurkat's Prophase, Metaphase, Anaphase and Telophase inside
  M), the recall of each finer label's real test cells: the share inside the k-NN balls of as many generated cells
  as the class has real training cells, beside the same share for the real training cells themselves (what copies
  of them cover).  A generator that learnt only the common shape covers the rare shapes no better than the copies.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.knn_realism import precision_recall

from .arms import BASELINE
from .plan import StudyPlan


def scorer_of(plan: StudyPlan, seed: int, seeds: list[int]) -> tuple[str, int]:
    """The arm and seed whose classifier scores this seed's cells: the unthinned scorer with ``--keep`` (the
    ``unthinned`` arm's first seed where the study runs that arm), else the next
    seed's ``real`` classifier (itself when the study has one seed)."""
    from .runner import scorer_run

    if plan.settings.keep:
        return scorer_run(plan.settings)
    ordered = sorted(seeds)
    return BASELINE, ordered[(ordered.index(seed) + 1) % len(ordered)]


def generator_fidelity(plan: StudyPlan, generator: str, seed: int, seeds: list[int]) -> dict:
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.runtime import OnnxModel

    from .runner import bundle_of, run_folder

    arm, scorer = scorer_of(plan, seed, seeds)
    path = plan.out / "fidelity" / f"{generator}-seed{seed}-by-{arm}{scorer}.json"
    if path.is_file():
        record = json.loads(path.read_text())
        missing = [name for name in plan.settings.rare if "ssim_max" not in record["classes"][name]]
        if missing:  # written before SSIM-max was measured: add it
            with np.load(plan.generated_pool(generator, seed), allow_pickle=False) as pool:
                images, labels = pool["images"], pool["labels"]
            for name in missing:
                record["classes"][name].update(ssim_max(plan, name, images[labels == name]))
            write_json_atomic(path, record)
        return record
    model = OnnxModel(bundle_of(plan.out, arm, scorer), kind="classifier")
    real_metrics = json.loads((run_folder(plan.out, arm, scorer) / "metrics_test.json").read_text())
    with np.load(plan.generated_pool(generator, seed), allow_pickle=False) as pool:
        images, labels = pool["images"], pool["labels"]
    made = run_to_end(classify_crops(model, images))
    record = {"generator": generator, "seed": seed, "scored_by": f"{arm}-seed{scorer}",
              "independent": arm != BASELINE or scorer != seed, "classes": {}}
    for name in plan.settings.rare:
        rows = labels == name
        real = run_to_end(classify_crops(model, plan.rare_real(name)))
        called = made.probabilities[rows].argmax(1) == plan.classes.index(name)
        record["classes"][name] = {
            "generated": int(rows.sum()), "class_fidelity": float(called.mean()),
            "real_test_recall": float(real_metrics["per_class"][name]["recall"]),
            **precision_recall(real.features, made.features[rows]),
            **ssim_max(plan, name, images[rows]),
            "finer": finer_recall(plan, model, name, made.features[rows], real.features, seed)}
    write_json_atomic(path, record)
    return record


def nearest_ssim(cells: np.ndarray, references: np.ndarray, data_range: float) -> np.ndarray:
    """For each cell, the largest SSIM (all channels) to any of ``references`` (checked among the 32 nearest in
    pixel space, :func:`~napari_cellsynth.training.reports.generator_metrics.ssim_max`)."""
    from napari_cellsynth.training.reports.generator_metrics import ssim_max as largest_ssim

    best, _ = run_to_end(largest_ssim(cells, references, data_range))
    return best


_REAL_TEST_SSIM: dict[tuple[str, str, int], np.ndarray] = {}


def ssim_max(plan: StudyPlan, name: str, generated: np.ndarray, most: int = 256) -> dict:
    """Memorisation: each generated cell's SSIM to its nearest real training cell of the class, beside the same for
    the real test cells (how close a new real cell comes to the training cells).  A generator that copies its training
    cells scores near 1 where real test cells do not.  At most ``most`` cells of each are compared."""
    real = plan.rare_real(name)
    data_range = float(real.max()) - float(real.min()) or 1.0
    generated_max = nearest_ssim(generated[:most], real, data_range)
    key = (str(plan.out), name, most)  # a study's split never changes: its real test cells' values are computed once
    if key not in _REAL_TEST_SSIM:
        test = plan.split["test"]
        test_cells = plan.data.crops.images[test[plan.data.y[test] == plan.classes.index(name)]]
        _REAL_TEST_SSIM[key] = nearest_ssim(test_cells[:most], real, data_range)
    test_max = _REAL_TEST_SSIM[key]
    return {"ssim_max": float(np.mean(generated_max)), "ssim_max_real_test": float(np.mean(test_max)),
            "ssim_max_above_real": float(np.mean(generated_max > np.quantile(test_max, 0.95)))}


def finer_recall(plan: StudyPlan, model, name: str, generated: np.ndarray, real_train: np.ndarray,
                 seed: int, k: int = 3) -> dict:
    """Per finer label of class ``name`` with at least two real test cells: how many there are, and the share of them
    inside the k-NN balls of ``len(real_train)`` generated cells and of the real training cells."""
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.knn_realism import KnnRealism

    test = plan.split["test"]
    test = test[plan.data.y[test] == plan.classes.index(name)]
    labels = np.asarray(plan.data.crops.labels)[test].astype(str)
    finer = [label for label in np.unique(labels) if (labels == label).sum() >= 2]
    if len(finer) < 2 or len(real_train) <= k:
        return {}
    features = run_to_end(classify_crops(model, plan.data.crops.images[test])).features
    pick = np.random.default_rng(seed).choice(len(generated), min(len(generated), len(real_train)), replace=False)
    balls = {"generated": KnnRealism(k, None).fit(generated[pick]), "real": KnnRealism(k, None).fit(real_train)}
    return {label: {"test_cells": int((labels == label).sum()),
                    **{f"recall_{who}": float((fitted.predict(features[labels == label]) == 1).mean())
                       for who, fitted in balls.items()}} for label in finer}


def summarize_fidelity(records: list[dict], rare: list[str]) -> dict:
    """Mean ± std over seeds of every fidelity number, per rare class."""
    keys = ("class_fidelity", "real_test_recall", "precision", "recall", "density", "coverage", "ssim_max",
            "ssim_max_real_test", "ssim_max_above_real")
    summary = {"seeds": [r["seed"] for r in records], "independent": all(r["independent"] for r in records)}
    for name in rare:
        summary[name] = {key: {"mean": float(np.mean([r["classes"][name][key] for r in records])),
                               "std": float(np.std([r["classes"][name][key] for r in records]))} for key in keys}
        labels = sorted({label for r in records for label in r["classes"][name].get("finer", {})})
        summary[name]["finer"] = {
            label: {"test_cells": records[0]["classes"][name]["finer"][label]["test_cells"],
                    **{key: {"mean": float(np.mean([r["classes"][name]["finer"][label][key] for r in records])),
                             "std": float(np.std([r["classes"][name]["finer"][label][key] for r in records]))}
                       for key in ("recall_generated", "recall_real")}}
            for label in labels if all(label in r["classes"][name].get("finer", {}) for r in records)}
    return summary



def write_bundles_with_fidelity(plan: StudyPlan, summary: dict, folder: Path, command: str) -> list[Path]:
    """A copy of each generator bundle whose fidelity this study measured, in ``folder/NAME``, with the fidelity in its
    card (``card.fidelity``; ``cellsynth info`` prints it).  The bundles themselves are never changed."""
    from napari_cellsynth.core.bundle import CARD_NAME, read_card
    from napari_cellsynth.core.card_sections import FidelitySection
    from napari_cellsynth.core.zoo import resolve

    from .report import sampling_text

    written = []
    for generator, record in summary["fidelity"].items():
        bundles = plan.settings.generators[generator]
        for location in bundles:
            source = resolve(location)
            card = read_card(source)
            classes = {name: record[name] for name in plan.settings.rare if name in card.classes}
            if not classes:
                continue
            name = generator if len(bundles) == 1 else f"{generator}-{card.name}"
            card = card.with_sections(fidelity=FidelitySection(
                classes, sampling_text(plan.settings.sampling_of(generator), plan.settings), list(record["seeds"]),
                bool(record["independent"]), command).to_dict())
            target, staging = folder / name, folder / f".{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging)
            write_json_atomic(staging / CARD_NAME, card.to_dict())
            shutil.rmtree(target, ignore_errors=True)  # an earlier copy of this study's output
            os.replace(staging, target)
            written.append(target)
    return written
