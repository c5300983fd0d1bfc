"""A study's ``summary.json`` and ``report.html``: every number in the page comes from the summary, and the summary
from the runs' files (``arms/ARM/seedS/metrics_test.json``, ``fidelity/``, ``synthetic/``)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.training.records.classifier_run import SELECTION_SCORES

from .arms import BASELINE, Arm
from .comparisons import collect, verdict
from .fidelity import generator_fidelity, scorer_of, summarize_fidelity
from .plan import StudyPlan
from .runner import bundle_of


def summarize(plan: StudyPlan, arms: list[Arm], command: str) -> dict:
    s = plan.settings
    seeds, rare = list(s.seeds), list(s.rare)
    rows, unranked = collect(plan.out, arms, seeds, rare)
    ranked = bool(rows) and not unranked
    summary = {"command": command, "data": plan.describe(), "settings": s.to_dict(), "arms": rows,
               "verdict": verdict(rows, rare), "fidelity": {}, "kept": {}, "ranked": ranked,
               "verdict_pr_auc": verdict(rows, rare, on="rare_pr_auc") if ranked else None,
               "unranked_note": unranked_note(unranked)}
    for generator in sorted({a.generator for a in arms if a.generator}):
        ready = [seed for seed in seeds if (plan.out / "synthetic" / generator / f"seed{seed}" / "pool.npz").is_file()
                 and (bundle_of(plan.out, *scorer_of(plan, seed, seeds)) / "card.json").is_file()]
        if ready:
            records = [generator_fidelity(plan, generator, seed, seeds) for seed in ready]
            summary["fidelity"][generator] = summarize_fidelity(records, rare)
        for f in s.filters:
            kept = [json.loads(p.read_text()) for p in sorted((plan.out / "synthetic" / generator).glob(
                f"seed*/kept-{f}.json"))]
            if kept:
                summary["kept"][f"{generator}-{f}"] = {
                    name: {"kept": int(sum(k[name]["kept"] for k in kept)),
                           "generated": int(sum(k[name]["generated"] for k in kept))} for name in rare}
    write_json_atomic(plan.out / "summary.json", summary)
    return summary


def checkpoint_rule(settings: dict) -> str:
    """The validation score that chose the study's checkpoints (``--select-on``), as the report names it."""
    return SELECTION_SCORES[settings.get("select_on") or "macro-f1"][1]


def unranked_note(unranked: list[str]) -> str | None:
    """The line that says why the report has no PR-AUC, and how to get it without training again."""
    if not unranked:
        return None
    shown = ", ".join(unranked[:6]) + (f" and {len(unranked) - 6} more" if len(unranked) > 6 else "")
    return (f"PR-AUC is left out: {len(unranked)} run(s) ({shown}) were scored by a trainer that did not record it. "
            "Delete their metrics_test.json (arms/ARM/seedS/) and run the same study command again: they are scored "
            "again from their checkpoints, not trained again.")


def sampling_text(options, settings) -> str:
    """``DPM-Solver++(2M), 20 steps, guidance 2 at 0.28 < σ ≤ 5.42, reference: the guide bundle``."""
    text = f"{settings.sampler}, {settings.sample_steps} steps"
    if options.guidance == 1.0:
        return text + ", plain conditioning"
    text += f", guidance {options.guidance:g}"
    if options.guidance_interval:
        text += f" at {options.guidance_interval[0]:g} < σ ≤ {options.guidance_interval[1]:g}"
    return text + (f", autoguidance by {options.guide}" if options.guide else ", classifier-free")


def per_seed_plot(summary: dict, path: Path) -> None:
    """Each arm's rare-class F1 per seed, one line per seed across the arms (paired by seed)."""
    from matplotlib.figure import Figure

    rows = summary["arms"]
    names = list(rows)
    fig = Figure(figsize=(max(5.0, 0.9 * len(names) + 1.5), 3.6))
    ax = fig.subplots()
    seeds = sorted({seed for row in rows.values() for seed in row["per_seed"]["rare_f1"]}, key=int)
    for seed in seeds:
        values = [rows[n]["per_seed"]["rare_f1"].get(seed, np.nan) for n in names]
        ax.plot(range(len(names)), values, marker="o", alpha=0.7, label=f"seed {seed}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(" and ".join(summary["data"]["rare"]) + " F1")
    ax.legend(fontsize=7, ncols=min(5, len(seeds)))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def sample_grid(plan: StudyPlan, arms: list[Arm], path: Path) -> bool:
    """Per rare class and synthetic arm (copies too): real training cells beside the cells the arm adds (first seed)."""
    from napari_cellsynth.training.reports.generator_report import real_vs_generated_grid

    seed, rows = plan.settings.seeds[0], {}
    for arm in arms:
        if arm.extra == "copies":
            source = plan.out / "synthetic" / "copies" / f"seed{seed}.npz"
        elif arm.extra == "generated":
            source = plan.out / "synthetic" / arm.generator / f"seed{seed}" / f"{arm.filter or 'all'}.npz"
        else:
            continue
        if not source.is_file():
            continue
        with np.load(source, allow_pickle=False) as saved:
            images, labels = saved["images"], saved["labels"]
        for name in plan.settings.rare:
            if (labels == name).any():
                rows[f"{name}: {arm.name}"] = (plan.rare_real(name), images[labels == name])
    if not rows:
        return False
    real_vs_generated_grid(rows, path)
    return True


def fmt(stat: dict | None) -> str:
    return "–" if not stat else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def called(row: dict) -> str:
    """The rare classes' F1 as `cellsynth classify` calls them, and in how many runs it applies thresholds."""
    if "rare_f1_classify" not in row:  # a summary written before the study measured it
        return "–"
    return f"{fmt(row['rare_f1_classify'])} ({row['thresholds_kept']} of {len(row['seeds'])})"


def fmt_test(test: dict | None) -> str:
    if not test:
        return "–"
    text = f"{test['mean']:+.3f}"
    if test["ci95"] is not None:
        text += f" [{test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}], p {test['p_wilcoxon']:.2g}"
    return text + f" ({test['higher_in']}/{len(test['seeds'])} higher)"


def table(header: list[str], body: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
            + "</table>")


def markdown(summary: dict) -> str:
    rare = summary["data"]["rare"]
    ranked, named = summary["ranked"], " and ".join(rare)
    lines = [f"| arm | seeds | {named} F1 | macro-F1 | vs real (rare F1) | vs copies (rare F1) | {named} F1 as "
             "classify calls it (runs with thresholds) |"
             + (f" {named} PR-AUC | vs copies (rare PR-AUC) |" if ranked else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if ranked else "")]
    for arm, row in summary["arms"].items():
        lines.append(f"| {arm} | {len(row['seeds'])} | {fmt(row['rare_f1'])} | {fmt(row['macro_f1'])} | "
                     f"{fmt_test((row.get('vs_real') or {}).get('rare_f1'))} | "
                     f"{fmt_test((row.get('vs_copies') or {}).get('rare_f1'))} | {called(row)} |"
                     + (f" {fmt(row['rare_pr_auc'])} | {fmt_test((row.get('vs_copies') or {}).get('rare_pr_auc'))} |"
                        if ranked else ""))
    text = (f"Each classifier's checkpoint chosen on validation {checkpoint_rule(summary['settings'])} (--select-on)."
            " F1 as classify calls it: at the decision thresholds the trainer chose on validation and kept (the card "
            "carries them), else at argmax."
            "\n\n" + "\n".join(lines)
            + f"\n\n{summary['verdict']}\n")
    if ranked:
        text += f"\nRanked by PR-AUC (no threshold): {summary['verdict_pr_auc']}\n"
    if summary["unranked_note"]:
        text += f"\n{summary['unranked_note']}\n"
    if summary["fidelity"]:
        rows = ["| generator | class | class fidelity | scorer's real test recall | precision | recall | coverage | "
                "SSIM-max generated / real test | finer labels: generated cover / real cover |",
                "|---|---|---|---|---|---|---|---|---|"]
        for generator, record in summary["fidelity"].items():
            for c in rare:
                f = record[c]
                finer = "; ".join(f"{label} {fmt(x['recall_generated'])} / {fmt(x['recall_real'])}"
                                  for label, x in f.get("finer", {}).items())
                rows.append(f"| {generator} | {c} | {fmt(f['class_fidelity'])} | {fmt(f['real_test_recall'])} | "
                            f"{fmt(f['precision'])} | {fmt(f['recall'])} | {fmt(f['coverage'])} | "
                            f"{fmt(f['ssim_max'])} / {fmt(f['ssim_max_real_test'])} | {finer} |")
        text += "\n" + "\n".join(rows) + "\n"
    return text


def write_report(plan: StudyPlan, arms: list[Arm], command: str) -> Path:
    out = plan.out
    summary = summarize(plan, arms, command)
    rare, classes, data = summary["data"]["rare"], summary["data"]["classes"], summary["data"]
    (out / "summary.md").write_text(markdown(summary))
    if summary["arms"]:
        per_seed_plot(summary, out / "per_seed.png")
    grid = sample_grid(plan, arms, out / "samples.png")
    ranked = summary["ranked"]
    arm_rows = []
    for name, row in summary["arms"].items():
        cells = [name, str(len(row["seeds"])), fmt(row["rare_f1"]), fmt(row["macro_f1"])]
        for c in rare:
            cells += [fmt(row["per_class"][c][k]) for k in ("ppv", "recall", "f1")]
        arm_rows.append(cells + ([fmt(row["rare_pr_auc"])] if ranked else []) + [called(row)])
    header = (["arm", "seeds", " and ".join(rare) + " F1", "macro-F1"]
              + [f"{c} {k}" for c in rare for k in ("PPV", "recall", "F1")]
              + ([" and ".join(rare) + " PR-AUC"] if ranked else [])
              + [" and ".join(rare) + " F1 as classify calls it (runs with thresholds)"])
    all_f1 = table(["arm", *classes], [[n, *(fmt(r["per_class"][c]["f1"]) for c in classes)]
                                       for n, r in summary["arms"].items()])
    tests = []
    for name, row in summary["arms"].items():
        for reference in (BASELINE, "copies"):
            test = row.get(f"vs_{reference}")
            if test:
                tests.append([name, reference, fmt_test(test["rare_f1"]), fmt_test(test["macro_f1"])]
                             + ([fmt_test(test["rare_pr_auc"])] if ranked else [])
                             + [fmt_test(test.get("rare_f1_classify"))])
    fidelity_rows = []
    for generator, record in summary["fidelity"].items():
        for c in rare:
            f = record[c]
            fidelity_rows.append([generator, c, fmt(f["class_fidelity"]), fmt(f["real_test_recall"]),
                                  fmt(f["precision"]), fmt(f["recall"]), fmt(f["density"]), fmt(f["coverage"]),
                                  fmt(f["ssim_max"]), fmt(f["ssim_max_real_test"]), fmt(f["ssim_max_above_real"]),
                                  "yes" if record["independent"] else "no (one seed)"])
    finer_rows = [[generator, c, label, str(f["test_cells"]), fmt(f["recall_generated"]), fmt(f["recall_real"])]
                  for generator, record in summary["fidelity"].items() for c in rare
                  for label, f in record[c].get("finer", {}).items()]
    finer_html = ("<h3>Coverage of the finer labels inside a rare class</h3><p>The share of each finer label's real "
                  "test cells inside the k-NN balls (k = 3) of as many generated cells as the class has real training "
                  "cells, and inside the real training cells' own balls (what copies of them cover).</p>"
                  + table(["generator", "class", "label", "test cells", "generated cover", "real training cells cover"],
                          finer_rows)) if finer_rows else ""
    kept_rows = [[arm, c, f"{k[c]['kept']} of {k[c]['generated']}"] for arm, k in summary["kept"].items() for c in rare]
    settings = plan.settings
    generator_rows = [[name, ", ".join(bundles), sampling_text(settings.sampling_of(name), settings)]
                      for name, bundles in settings.generators.items()]
    counts = ", ".join(f"{c} {data['train_counts'][c]}/{data['validation_counts'][c]}/{data['test_counts'][c]}"
                       for c in classes)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>cellsynth study</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}td,th{{padding:.2em .7em;text-align:right}}
pre{{background:#f4f4f4;padding:.4em;white-space:pre-wrap}}img{{max-width:100%}}.verdict{{font-size:1.15em;
background:#eef6ee;padding:.6em}}</style></head><body>
<h1>Does synthetic data help on this data?</h1>
<p class="verdict">{html.escape(summary['verdict'])}</p>
{f"<p>Ranked by PR-AUC, which needs no threshold (it moves where argmax finds no rare cell at all): "
 f"{html.escape(summary['verdict_pr_auc'])}</p>" if ranked else ""}
{f"<p>{html.escape(summary['unranked_note'])}</p>" if summary["unranked_note"] else ""}
<p>Rare classes: {html.escape(', '.join(rare))}. Training / validation / test cells: {html.escape(counts)}. Synthetic
cells per rare class and seed: {html.escape(', '.join(f'{c} {n}' for c, n in data['needed'].items()))}. Every arm trains the same
classifier recipe on the same split (its checkpoint chosen on validation {checkpoint_rule(summary['settings'])},
--select-on) and is scored on the same real test cells; arms are paired by seed.</p>
<pre>{html.escape(summary['command'])}</pre>
<h2>Arms (mean ± std over seeds)</h2>{table(header, arm_rows)}
<p>F1 at argmax, except the last column: as <code>cellsynth classify</code>, the widget and batch call the cells, at the
decision thresholds each trainer chose on validation where it kept them (they travel in the card), else at argmax.</p>
<h3>F1 of every class</h3>{all_f1}
<h2>Paired differences</h2>
<p>Arm minus reference, per seed: mean [95 % bootstrap CI], two-sided Wilcoxon signed-rank p, and in how many seeds
the arm was higher.</p>{table(["arm", "against", " and ".join(rare) + " F1", "macro-F1"]
                               + ([" and ".join(rare) + " PR-AUC"] if ranked else [])
                               + [" and ".join(rare) + " F1 as classify calls it"], tests)}
{'<img src="per_seed.png">' if summary['arms'] else ''}
<h2>Generators</h2>{table(["generator", "bundles", "sampling"], generator_rows) if generator_rows else '<p>None.</p>'}
<h2>Generator fidelity</h2>
<p>Class fidelity: the share of generated cells that a classifier trained on real cells only calls their class, beside
that classifier's recall on real test cells of the class. The classifier had no part in making or choosing the cells:
with --keep it learnt from the unthinned training part, otherwise it is another seed's real-only classifier.
Precision, recall, density and coverage: generated against real training cells of the class on that classifier's
features (k = 3). SSIM-max: each cell's SSIM to its nearest real training cell of the class, for the generated cells
and for the real test cells, and the share of generated cells closer to a training cell than 95 % of the real test
cells come (memorisation shows as SSIM-max near 1 and a large share).</p>
{table(["generator", "class", "class fidelity", "real test recall", "precision", "recall", "density", "coverage",
        "SSIM-max", "SSIM-max of real test cells", "closer than 95 % of real", "independent scorer"], fidelity_rows)
 if fidelity_rows else '<p>No generator in this study.</p>'}
{finer_html}
{('<h3>Kept by the filters (all seeds)</h3>' + table(["arm", "class", "kept"], kept_rows)) if kept_rows else ''}
<h2>Cells each arm adds (first seed): real on the left, added on the right</h2>
{'<img src="samples.png">' if grid else '<p>No arm adds cells.</p>'}
</body></html>"""
    with atomic_open(out / "report.html") as fh:
        fh.write(page)
    return out / "report.html"
