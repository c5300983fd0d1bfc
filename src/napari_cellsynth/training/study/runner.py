"""Arms × seeds, as tasks in three waves: (1) every seed's ``real`` classifier, the fidelity scorer (with ``--keep``)
and every generator's cells, (2) those classifiers exported to bundles (the filters and the fidelity scores read cells
through them), (3) every other arm.  A task skips what is on disk, so a killed study resumes where it stopped; tasks
run in this process, on local processes (``--workers N``) or on a dask cluster (``--scheduler ADDRESS``, as
``cellsynth batch``)."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from functools import partial
from pathlib import Path

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.training.runner import tasks as shared_tasks
from napari_cellsynth.training.runner.tasks import threads_per_task, with_eta

from .arms import BASELINE, UNTHINNED, Arm, all_arms, chosen_arms
from .plan import StudyPlan, read_json
from .settings import StudySettings

Task = tuple[str, str, int]  # ("train", arm, seed) | ("generate", generator, seed) | ("export", "real"/"scorer", seed)


def available_arms(settings: StudySettings) -> dict[str, Arm]:
    """Every arm this study's generators, filters and ``--keep`` allow, by name."""
    return all_arms(list(settings.generators), list(settings.filters), bool(settings.keep))


def study_arms(settings: StudySettings) -> list[Arm]:
    return chosen_arms(available_arms(settings), list(settings.arms))


def run_folder(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / "arms" / arm / f"seed{seed}"


SCORER = "scorer"  # with --keep: a real-only classifier on the unthinned training part, for the fidelity scores only


def scorer_run(settings: StudySettings) -> tuple[str, int]:
    """With ``--keep``, the run whose classifier scores the generators' fidelity: the ``unthinned`` arm's first seed
    where the study runs that arm (the same training: the same split, recipe and seed), else its own ``scorer`` run."""
    name = UNTHINNED if any(arm.name == UNTHINNED for arm in study_arms(settings)) else SCORER
    return name, min(settings.seeds)


def bundle_of(out: Path, name: str, seed: int) -> Path:
    """The exported bundle of a ``real`` run or of the fidelity scorer's (:func:`scorer_run`)."""
    return Path(out) / "classifiers" / f"{name}-seed{seed}"


def real_bundle(out: Path, seed: int) -> Path:
    return bundle_of(out, BASELINE, seed)


def waves(settings: StudySettings) -> list[list[Task]]:
    arms = study_arms(settings)
    generators = sorted({arm.generator for arm in arms if arm.generator})
    scorer = [scorer_run(settings)] if generators and settings.keep else []
    first = ([("train", BASELINE, s) for s in settings.seeds] + [("train", *x) for x in scorer]
             + [("generate", g, s) for g in generators for s in settings.seeds])
    second = [("export", BASELINE, s) for s in settings.seeds] + [("export", *x) for x in scorer] if generators else []
    third = [("train", arm.name, s) for s in settings.seeds for arm in arms
             if arm.name != BASELINE and ("train", arm.name, s) not in first]
    return [first, second, third]


def task_done(out: Path, task: Task) -> bool:
    what, name, seed = task
    if what == "train":
        return (run_folder(out, name, seed) / "metrics_test.json").is_file()
    if what == "export":
        return (bundle_of(out, name, seed) / "card.json").is_file()
    return (Path(out) / "synthetic" / name / f"seed{seed}" / "pool.npz").is_file()


def trainer_line(plan: StudyPlan, arm: Arm, seed: int, threads: int) -> list[str]:
    s, run = plan.settings, run_folder(plan.out, arm.name, seed)
    split = plan.unthinned_split() if arm.split == "unthinned" else plan.out / "split.npz"
    line = ["--data", s.data, "--label-map", s.label_map, "--split", str(split), "--width",
            str(s.width), "--steps", str(s.steps), "--batch-size", str(s.batch_size), "--seed", str(seed),
            "--select-on", s.select_on,
            "--threads", str(threads), "--quiet", "--resume", "--out", str(run)]
    if s.labels_csv:
        line += ["--labels-csv", s.labels_csv]
    if s.size:
        line += ["--size", str(s.size)]
    if arm.sampling != "shuffle":
        line += ["--sampling", arm.sampling]
    if arm.extra == "copies":
        line += ["--extra-train", str(plan.copies(seed))]
    elif arm.extra == "generated":
        classifier = None
        if arm.filter:
            from napari_cellsynth.core.runtime import OnnxModel

            classifier = OnnxModel(real_bundle(plan.out, seed), kind="classifier")
        line += ["--extra-train", str(plan.generated_set(arm.generator, seed, arm.filter, classifier))]
    if arm.focused_parts:
        line += ["--focused", *[f"{name}={n}" for name, n in s.focused().items()], "--focused-parts", *arm.focused_parts]
        if "generated" in arm.focused_parts:
            line += ["--focused-generated", str(plan.generated_set(arm.generator, seed, None, None))]
    return line


def run_task(out: str, threads: int, task: Task) -> Task:
    """One task, in whichever process runs it; its output (the trainer's lines) goes to the run's ``log.txt``."""
    what, name, seed = task
    out = Path(out)
    if task_done(out, task):
        return task
    plan = StudyPlan(StudySettings.from_dict(read_json(out / "settings.json")), out)
    if what == "generate":
        plan.generated_pool(name, seed)
    elif what == "export":
        from napari_cellsynth.export.export_classifier import export_classifier

        export_classifier(run_folder(out, name, seed), bundle_of(out, name, seed), name=f"study-{name}-seed{seed}")
    else:
        from napari_cellsynth.training.trainers import classifier as train_classifier

        arm = Arm(SCORER, split="unthinned") if name == SCORER else available_arms(plan.settings)[name]
        line = trainer_line(plan, arm, seed, threads)
        folder = run_folder(out, name, seed)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            train_classifier.main(line)
    return task


def execute(out: Path, tasks: list[Task], settings: StudySettings) -> Generator[Task | None, None, None]:
    """Run ``tasks`` on the experiments' runner (here, local processes or dask); yield each as it finishes."""
    function = partial(run_task, str(out), threads_per_task(settings.threads, settings.workers))
    yield from shared_tasks.execute(function, tasks, settings.workers, settings.scheduler)


def run_study(settings: StudySettings, out: Path) -> Generator[tuple[int, int, str], None, StudyPlan]:
    """Yields ``(tasks done, tasks, message with ETA)``; returns the plan (the report reads the runs from disk)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings.check_resumes(out)
    plan = StudyPlan(settings, out)
    plan.describe()  # checks the data, the rare classes, --keep and the synthetic counts before anything runs
    for generator in settings.generators:
        plan.generator_models(generator)  # checks each bundle before hours of training
    settings.record(out)  # a refused study leaves no settings behind
    every = [task for wave in waves(settings) for task in wave]
    done = sum(task_done(out, t) for t in every)
    total = len(every)
    yield done, total, f"{done} of {total} tasks on disk"
    for wave in waves(settings):
        todo = [t for t in wave if not task_done(out, t)]
        done = yield from with_eta(execute(out, todo, settings), done, total, lambda t: f"{t[0]} {t[1]} seed {t[2]}")
    write_json_atomic(out / "tasks.json", {"tasks": [list(t) for t in every]})
    return plan
