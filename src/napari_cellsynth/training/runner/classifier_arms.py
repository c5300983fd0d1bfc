"""Arms × seeds of classifier trainings: the one runner of experiments.

An experiment declares its arms (a name and the classifier trainer's options that make the arm what it is) and its
seeds; the runner trains every (arm, seed) into ``OUT/ARM/seedSEED`` (``cellsynth train classifier`` with ``--seed``,
``--threads``, ``--quiet``, ``--resume`` and ``--out`` added), skips what is on disk (``metrics_test.json`` is the
done-marker, so a killed experiment resumes with the same command), runs in this process, on local processes
(``workers``) or on a dask cluster (``scheduler``, as ``cellsynth batch``), and yields progress with an ETA.
:func:`summarise_arms` then reads the runs back: per arm the mean ± std of per-class PPV, recall and F1, macro-F1
and accuracy (:func:`~napari_cellsynth.training.reports.summaries.summarize_runs`), and each arm paired seed by
seed with a reference arm (:func:`~napari_cellsynth.training.reports.summaries.paired_test`: Wilcoxon p and a
bootstrap CI), for the experiment's ``summary.json``; :func:`markdown` makes its table."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from napari_cellsynth.training.reports.summaries import paired_test, summarize_runs

from .tasks import execute, threads_per_task, with_eta

DONE = "metrics_test.json"


@dataclass(frozen=True)
class ClassifierArm:
    """One arm: its name (a folder under the experiment's OUT; ``/`` nests, e.g. ``jurkat4-300/adamw-1000``) and
    the trainer's options that define it, without ``--seed``, ``--threads``, ``--out``.  ``{seed}`` in an option
    becomes the run's seed (e.g. a synthetic set drawn once per seed: ``--extra-train OUT/standard-seed{seed}.npz``)."""

    name: str
    options: tuple[str, ...]

    def __post_init__(self):
        owned = {"--seed", "--threads", "--out"} & {option.split("=")[0] for option in self.options}
        if owned:
            raise ValueError(f"arm {self.name}: {sorted(owned)} are set by the runner, not by the arm")


def add_runner_options(p: argparse.ArgumentParser) -> None:
    """Where an experiment's trainings run: ``--workers``, ``--scheduler``, ``--threads`` (for :func:`run_arms`)."""
    p.add_argument("--workers", type=int, default=1, help="trainings at once on local processes")
    p.add_argument("--scheduler", help="processes (local, --workers of them) or a dask scheduler address "
                                       "(tcp://host:8786), as cellsynth batch")
    p.add_argument("--threads", type=int, default=0, help="torch threads per training (0: torch's threads / workers)")


def run_folder(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / arm / f"seed{seed}"


def is_done(out: Path, arm: str, seed: int) -> bool:
    return (run_folder(out, arm, seed) / DONE).is_file()


def train_arm(out: str, arms: dict[str, tuple[str, ...]], threads: int, task: tuple[str, int]) -> tuple[str, int]:
    """One (arm, seed), in whichever process runs it; the trainer's output goes to the run's ``log.txt``."""
    from napari_cellsynth.training.trainers import classifier as train_classifier

    arm, seed = task
    if is_done(Path(out), arm, seed):
        return task
    folder = run_folder(Path(out), arm, seed)
    folder.mkdir(parents=True, exist_ok=True)
    options = [option.replace("{seed}", str(seed)) for option in arms[arm]]
    line = [*options, "--seed", str(seed), "--threads", str(threads), "--quiet", "--resume", "--out", str(folder)]
    with open(folder / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        train_classifier.main(line)
    return task


def run_arms(arms: Sequence[ClassifierArm], seeds: Sequence[int], out: Path, workers: int = 1, threads: int = 0,
             scheduler: str | None = None) -> Generator[tuple[int, int, str], None, None]:
    """Train every (arm, seed) not on disk, seed by seed (a cut-short experiment has every arm of its first seeds);
    yields ``(runs done, runs, message)``."""
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"two arms share a name: {names}")
    out = Path(out)
    tasks = [(arm.name, int(seed)) for seed in seeds for arm in arms]
    done = sum(is_done(out, *t) for t in tasks)
    yield done, len(tasks), f"{done} of {len(tasks)} runs on disk"
    todo = [t for t in tasks if not is_done(out, *t)]
    function = partial(train_arm, str(out), {arm.name: arm.options for arm in arms}, threads_per_task(threads, workers))
    yield from with_eta(execute(function, todo, workers, scheduler), done, len(tasks),
                        lambda task: f"{task[0]} seed {task[1]}")


def train_arms(arms: Sequence[ClassifierArm], seeds: Sequence[int], out: Path, workers: int = 1, threads: int = 0,
               scheduler: str | None = None) -> None:
    """:func:`run_arms` for a command line: each progress message on stderr, one line each."""
    for _, _, message in run_arms(arms, seeds, out, workers, threads, scheduler):
        print(f"  {message}", file=sys.stderr)


def arm_metrics(out: Path, arm: str, seeds: Sequence[int]) -> dict[int, dict]:
    """The test metrics of an arm's finished seeds."""
    return {int(s): json.loads((run_folder(out, arm, s) / DONE).read_text()) for s in seeds if is_done(out, arm, s)}


def measure(metrics: dict, name: str) -> float:
    """``macro_f1``, ``accuracy`` or ``f1:CLASS`` (one class's F1) of a run's test metrics."""
    if name.startswith("f1:"):
        return float(metrics["per_class"][name[3:]]["f1"])
    return float(metrics[name])


def paired_on_shared_seeds(ours: dict[int, dict], theirs: dict[int, dict], value: Callable[[dict], float]) -> dict | None:
    """``value(ours) − value(theirs)`` on the seeds both arms finished (:func:`paired_test`); None without one."""
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        return None
    return paired_test(seeds, np.array([value(ours[s]) - value(theirs[s]) for s in seeds]))


def summary_rows(runs: dict[str, dict[int, dict]], measures: dict[str, Callable[[dict], float]],
                 references: Sequence[str]) -> dict:
    """Per arm with a finished seed (``runs``: arm → seed → test metrics): :func:`summarize_runs` of its runs, each
    measure per seed and its mean ± std, and ``vs_REFERENCE``: each measure paired with a reference arm's (for every
    reference that has runs, but not with itself)."""
    rows = {}
    for arm, found in runs.items():
        if not found:
            continue
        seeds = sorted(found)
        row = {"seeds": seeds, **summarize_runs([found[s] for s in seeds]),
               "per_seed": {m: {str(s): value(found[s]) for s in seeds} for m, value in measures.items()}}
        for m in measures:
            values = list(row["per_seed"][m].values())
            row[m] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        for reference in references:
            if reference != arm and runs.get(reference):
                row[f"vs_{reference}"] = {m: paired_on_shared_seeds(found, runs[reference], value)
                                          for m, value in measures.items()}
        rows[arm] = row
    return rows


def summarise_arms(arms: Sequence[ClassifierArm], seeds: Sequence[int], out: Path, reference: str | None = None,
                   measures: Sequence[str] = ("macro_f1",)) -> dict:
    """:func:`summary_rows` of the arms' finished runs, each measure (:func:`measure`) paired with ``reference``'s
    (default: the first arm's) under ``vs_REFERENCE``."""
    reference = reference or arms[0].name
    runs = {arm.name: arm_metrics(out, arm.name, seeds) for arm in arms}
    rows = summary_rows(runs, {m: partial(measure, name=m) for m in measures}, [reference])
    return {"reference": reference, "measures": list(measures), "arms": rows}


def markdown(summary: dict) -> str:
    """One row per arm: each measure's mean ± std, and its paired difference with the reference arm (mean,
    95 % bootstrap CI, seeds higher, Wilcoxon p)."""
    measures, reference = summary["measures"], summary["reference"]
    header = ["arm", "seeds"] + measures + [f"{m} − {reference}: mean [95 % CI], higher in, p" for m in measures]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in summary["arms"].items():
        cells = [name, str(len(row["seeds"]))]
        for m in measures:
            values = list(row["per_seed"][m].values())
            cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        for m in measures:
            paired = row.get(f"vs_{reference}", {}).get(m)
            if paired is None:
                cells.append("–")
                continue
            ci = "" if paired["ci95"] is None else f" [{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}]"
            p = "–" if paired["p_wilcoxon"] is None else f"{paired['p_wilcoxon']:.3g}"
            cells.append(f"{paired['mean']:+.3f}{ci}, {paired['higher_in']} of {len(paired['seeds'])}, {p}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
