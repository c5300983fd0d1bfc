"""What the quality-over-training experiments share (``kid_curve`` for a DDPM, ``bridge_curve`` for a BBDM): score
each EMA snapshot of a run once, resumably, and plot the scores against the step.

The record (a JSON file) holds the settings and one row per scored step; a rerun with the same settings scores
only the snapshots not in it yet, and one with other settings is refused.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.export.common import snapshot_steps


def run_snapshots(run: Path, trainer: str) -> list[int]:
    """The run's snapshot steps (a GAN's generator snapshots for ``trainer == "gan"``); none is an error that says
    how to get them."""
    steps = snapshot_steps(run, "G" if trainer == "gan" else "ema")
    if not steps:
        raise ValueError(f"{run} has no snapshots; train with cellsynth train {trainer} --snapshot-every N")
    return steps


def earlier_rows(out: Path, settings: dict) -> list[dict]:
    """The rows of an earlier curve with the same settings in ``out`` (none when there is no file)."""
    if not out.is_file():
        return []
    done = json.loads(out.read_text())
    if any(done.get(k) != v for k, v in settings.items()):
        raise ValueError(f"{out} holds a curve with other settings; choose another --out")
    return done["rows"]


def score_snapshots(out: Path, record: dict, steps: list[int], score: Callable[[int, Path], dict],
                    line: Callable[[dict], str]) -> dict:
    """``score(step, scratch folder)`` for every step without a row in ``record['rows']``; the record is written
    after each one, and ``line(row)`` printed."""
    with tempfile.TemporaryDirectory() as scratch:
        for step in steps:
            if any(r["step"] == step for r in record["rows"]):
                continue
            row = score(step, Path(scratch))
            record["rows"] = sorted([*record["rows"], row], key=lambda r: r["step"])
            write_json_atomic(out, record)
            print(f"step {step:6d}: {line(row)}", file=sys.stderr)
    write_json_atomic(out, record)
    return record


def plot_curves(rows: list[dict], path: Path, title: str, panels: list[tuple[str, str]],
                levels: dict[str, dict] | None = None) -> None:
    """One panel per ``(key, label)``: the rows' ``key`` (± ``key_std``) against the training step.  Rows with a
    ``bundle`` (exported elsewhere, e.g. a longer run of the recipe) are drawn apart and named; ``levels`` (``{name:
    {key: value}}``, e.g. real cells through the same measure) are drawn as dashed lines.  The step axis is
    logarithmic when the steps span more than a decade."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(panels), 3.8))
    curve = [r for r in rows if "bundle" not in r]
    apart = [r for r in rows if "bundle" in r]
    steps = [r["step"] for r in rows]
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.errorbar([r["step"] for r in curve], [r[key] for r in curve],
                    yerr=[r.get(f"{key}_std", 0) for r in curve], marker="o", capsize=3, label="snapshots")
        for row in apart:
            ax.errorbar([row["step"]], [row[key]], yerr=[row.get(f"{key}_std", 0)], marker="*", markersize=10,
                        capsize=3, linestyle="none", label=row["bundle"])
        for (name, values), style in zip((levels or {}).items(), ("--", ":", "-.")):
            ax.axhline(values[key], color="grey", linestyle=style, label=name)
        if steps and min(steps) > 0 and max(steps) > 10 * min(steps):
            ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        if apart or levels:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
