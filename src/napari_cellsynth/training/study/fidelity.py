"""How well a generator's cells carry their class, measured by a classifier that had no part in making or choosing
them: the ``real`` classifier of another seed than the one whose classifier filtered them (with one seed there is no
other, and the report says so).

- class fidelity: the share of generated class-c cells that the scoring classifier calls c, beside that classifier's
  recall on the real test cells of c;
- precision, recall, density and coverage of the generated cells against the real training cells of c, on the
  scoring classifier's features (:func:`~napari_cellsynth.core.knn_realism.precision_recall`).
"""

from __future__ import annotations

import json

import numpy as np

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.knn_realism import precision_recall

from .arms import BASELINE
from .plan import StudyPlan


def scoring_seed(seeds: list[int], seed: int) -> int:
    """The next seed's ``real`` classifier scores this seed's cells (itself when the study has one seed)."""
    ordered = sorted(seeds)
    return ordered[(ordered.index(seed) + 1) % len(ordered)]


def generator_fidelity(plan: StudyPlan, generator: str, seed: int, seeds: list[int]) -> dict:
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.runtime import OnnxModel

    from .runner import real_bundle, run_folder

    path = plan.out / "fidelity" / f"{generator}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    scorer = scoring_seed(seeds, seed)
    model = OnnxModel(real_bundle(plan.out, scorer), kind="classifier")
    real_metrics = json.loads((run_folder(plan.out, BASELINE, scorer) / "metrics_test.json").read_text())
    with np.load(plan.generated_pool(generator, seed), allow_pickle=False) as pool:
        images, labels = pool["images"], pool["labels"]
    made = run_to_end(classify_crops(model, images))
    record = {"generator": generator, "seed": seed, "scored_by": f"real-seed{scorer}",
              "independent": scorer != seed, "classes": {}}
    for name in plan.settings.rare:
        rows = labels == name
        real = run_to_end(classify_crops(model, plan.rare_real(name)))
        called = made.probabilities[rows].argmax(1) == plan.classes.index(name)
        record["classes"][name] = {
            "generated": int(rows.sum()), "class_fidelity": float(called.mean()),
            "real_test_recall": float(real_metrics["per_class"][name]["recall"]),
            **precision_recall(real.features, made.features[rows])}
    write_json_atomic(path, record)
    return record


def summarize_fidelity(records: list[dict], rare: list[str]) -> dict:
    """Mean ± std over seeds of every fidelity number, per rare class."""
    keys = ("class_fidelity", "real_test_recall", "precision", "recall", "density", "coverage")
    summary = {"seeds": [r["seed"] for r in records], "independent": all(r["independent"] for r in records)}
    for name in rare:
        summary[name] = {key: {"mean": float(np.mean([r["classes"][name][key] for r in records])),
                               "std": float(np.std([r["classes"][name][key] for r in records]))} for key in keys}
    return summary

