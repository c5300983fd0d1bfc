"""cellsynth study: does synthetic data help on my data?

    cellsynth study --data ../shared/data/jurkat/jurkat_cells.npz --label-map jurkat4 --rare M --keep M=34 \
        --generator zoo:ddpm-jurkat4-cut10-v --filters umap confidence knn --seeds 0 1 2 3 4 --out runs/study-m34

Every arm trains the same classifier (``cellsynth train classifier`` with --width, --steps and --batch-size) on one
split (whole groups held out for the test with ``--group-by`` and ``--test-groups``, else a ``--split-seed`` share
stratified by the classes or by ``--stratify-by``'s; the rare classes thinned in its
training part by ``--keep CLASS=N`` to simulate scarcity) and is scored on the same real test cells, once per seed;
the seeds pair the arms. Arms (``--arms``; default all): ``real``, ``balanced`` (class-balanced sampling), ``copies``
(copies of the real rare cells, as many as the generated arms add), ``mixup`` (minority-focused mixup and nonlinear
mixup), ``unthinned`` with ``--keep`` (the real cells before the thinning: the room any way of adding cells has), and
per generator G: ``generated-G``, ``generated-G-FILTER`` for each ``--filters`` (umap, confidence, knn) and
``generated-G-mixup``.

A generator is a DDPM or GAN bundle (cells sampled from noise), or a BBDM or CycleGAN translator (paper 004, per
object: the rare class painted onto the condition channel, DAPI, of training cells of the other classes).  A
translator records the slides it left out, so its study holds whole slides out for the test: ``--group-by slide
--test-groups A20 V26 …`` (``--config paper004``).

Each rare class gets ``--count`` synthetic cells (default: up to the median training count of the other classes).
A DDPM or GAN bundle must have learnt from this study's training cells (its card's split seed and its count of the
class's training cells are checked): give the ``--keep`` it was trained with.  A translator must have left out every
test slide (its card's excluded slides are checked) and make the rare class.

Writes ``OUT/report.html`` (per-class PPV, recall and F1, paired differences against real and against copies with
Wilcoxon p and bootstrap CIs, a per-seed plot, the cells each arm adds, the generators' fidelity and a verdict),
``summary.json`` and ``summary.md``.  Everything on disk is skipped, so a killed study resumes with the same command;
``--seeds`` and ``--arms`` may grow between runs.  ``--workers N`` runs N trainings at once on local processes and
``--scheduler ADDRESS`` on a dask cluster.  ``--report-only`` writes the report from the runs on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_cellsynth.core.denoisers import Guidance
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_with_bar
from napari_cellsynth.core.samplers import SAMPLERS
from napari_cellsynth.training.records.classifier_run import SELECTION_SCORES
from napari_cellsynth.training.runner.classifier_arms import add_runner_options

from .arms import UNTHINNED, all_arms
from .configuration import CONFIGS, parse_with_config
from .realism_filters import FILTERS
from .settings import SamplingOptions, StudySettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help=".npz, TIFF stack (with --labels-csv) or folder per class")
    p.add_argument("--labels-csv", help="labels for a TIFF stack: a 'label' column, one row per slice")
    p.add_argument("--label-map", default="identity", help="label map name or JSON (as cellsynth train classifier)")
    p.add_argument("--size", type=int, help="bring every crop to SIZE×SIZE (mixed sizes)")
    p.add_argument("--config", metavar="NAME|FILE",
                   help="a study configuration: a paper's experiment shipped with the package (" + ", ".join(CONFIGS)
                        + ") or a JSON file of options; options given here override it (--generator adds to its)")
    p.add_argument("--rare", nargs="+", metavar="CLASS", help="the rare class(es) to help")
    p.add_argument("--keep", nargs="+", default=[], metavar="CLASS=N",
                   help="keep only N (or a fraction, 0.1) of a class's training cells: simulate scarcity")
    p.add_argument("--keep-validation", action="store_true",
                   help="thin the validation part too, to the share --keep left of each class's training cells (at "
                        "least 1), so that checkpoints and thresholds are chosen on as few cells as a user with that "
                        "few would have; the test part stays whole")
    p.add_argument("--generator", nargs="+", action="append", default=[], metavar="[NAME=]BUNDLE",
                   help="generator bundles (DDPM or GAN; zoo:NAME or a folder); one-class bundles of one generator "
                        "share a NAME.  A BBDM or CycleGAN translator paints the rare class onto the other classes' "
                        "training cells (with --test-groups the slides it left out).  DDPM options after commas: "
                        "guidance=W, interval=LOW:HIGH (the noise levels σ where guidance acts), guide=BUNDLE "
                        "(autoguidance), e.g. g2=zoo:ddpm-a,guidance=2,interval=0.28:5.42")
    p.add_argument("--filters", nargs="*", default=[], choices=list(FILTERS),
                   help="realism filters, each an arm per generator")
    p.add_argument("--count", type=int, help="synthetic cells per rare class (default: up to the median training "
                                             "count of the other classes)")
    p.add_argument("--pool-factor", type=float, default=2.0,
                   help="generated cells per needed one when filters choose among them")
    p.add_argument("--sampler", default="dpm_solver_pp_2m", choices=list(SAMPLERS))
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--arms", nargs="+", default=[], help="arms to run (default: all; real always runs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--stratify-by", metavar="LABEL_MAP",
                   help="stratify the split by another label map's classes, e.g. jurkat4 for a 7-class study whose "
                        "generator was fine-tuned from one that learnt the 4-class split (as its trainer's option)")
    p.add_argument("--group-by", metavar="COLUMN|path:K|path:REGEX",
                   help="what groups the crops (e.g. slide: an .npz array or a labels-CSV column; or a part of each "
                        "crop's path, as cellsynth classify --group-by); with --test-groups")
    p.add_argument("--test-groups", nargs="+", default=[], metavar="GROUP",
                   help="hold these whole groups out for the test (e.g. slides: no test cell shares a slide with a "
                        "training one; validation is a stratified 20 %% of the rest); a translator generator "
                        "(BBDM, CycleGAN) needs them")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per classifier (the same for every arm)")
    p.add_argument("--width", type=int, default=16, help="classifier width")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--select-on", default="macro-f1", choices=list(SELECTION_SCORES),
                   help="the validation score that picks every classifier's checkpoint (cellsynth train classifier "
                        "--select-on): pr-auc for a class too rare to be the argmax early on (docs/results.md §13g)")
    p.add_argument("--focused-n", nargs="+", default=["2"], metavar="N|CLASS=N",
                   help="mixup arms: N slots per batch for each rare class, or CLASS=N for each (paper 001: "
                        "Prophase=1 Metaphase=2 Anaphase=2 Telophase=1)")
    add_runner_options(p)
    p.add_argument("--report-only", action="store_true", help="write the report from the runs on disk")
    p.add_argument("--bundles-out", metavar="DIR",
                   help="write a copy of each generator bundle with its measured fidelity in the card to DIR/NAME "
                        "(cellsynth info shows it; the bundles given are not changed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True)
    return p


SAMPLING_KEYS = ("guidance", "interval", "guide")


def bundle_location(item: str, bundle: str) -> str:
    if bundle.startswith("zoo:"):
        return bundle
    if not Path(bundle).is_dir():
        raise ValueError(f"--generator {item!r}: {bundle} is not a bundle folder; give a folder or zoo:NAME")
    return str(Path(bundle).resolve())


def sampling_options(item: str, options: list[str]) -> SamplingOptions:
    """``["guidance=1.5", "interval=0.28:5.42", "guide=BUNDLE"]`` → :class:`SamplingOptions`."""
    values: dict = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in SAMPLING_KEYS:
            raise ValueError(f"--generator {item!r}: unknown option {option!r}; write NAME=BUNDLE,KEY=VALUE with KEY "
                             f"one of {', '.join(SAMPLING_KEYS)} (e.g. guidance=1.5,interval=0.28:5.42)")
        try:
            if key == "guidance":
                values["guidance"] = float(value)
            elif key == "interval":
                low, high = value.split(":")
                values["guidance_interval"] = (float(low), float(high))
            else:
                values["guide"] = bundle_location(item, value)
        except ValueError as error:
            if "bundle folder" in str(error):
                raise
            raise ValueError(f"--generator {item!r}: {key}={value!r} is not a number{' pair LOW:HIGH' * (key == 'interval')}"
                             ) from None
    options = SamplingOptions(**values)
    Guidance(options.guidance, options.guidance_interval)  # the scale and interval are checked here, in one line
    if (options.guide or options.guidance_interval) and options.guidance == 1.0:
        raise ValueError(f"--generator {item!r}: an interval or a guide needs guidance other than 1 (e.g. guidance=1.5)")
    return options


def generator_names(groups: list[list[str]]) -> tuple[dict[str, tuple[str, ...]], dict[str, SamplingOptions]]:
    """``[["zoo:ddpm-a"], ["gan=B", "gan=C"], ["g15=zoo:ddpm-a,guidance=1.5"]]`` → bundles by name
    ``{"ddpm-a": ("zoo:ddpm-a",), "gan": ("B", "C"), "g15": ("zoo:ddpm-a",)}`` and sampling options by name (only
    where given: ``{"g15": SamplingOptions(guidance=1.5)}``)."""
    named: dict[str, list[str]] = {}
    sampling: dict[str, SamplingOptions] = {}
    for item in (item for group in groups for item in group):
        head, *options = item.split(",")
        name, sep, bundle = head.partition("=")
        if not sep:
            name, bundle = Path(head.removeprefix("zoo:")).name, head
        if not name or not bundle or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"--generator {item!r}: write BUNDLE or NAME=BUNDLE[,KEY=VALUE...], NAME of letters, "
                             "digits, - and _")
        named.setdefault(name, []).append(bundle_location(item, bundle))
        if options:
            chosen = sampling_options(item, options)
            if name in sampling and sampling[name] != chosen:
                raise ValueError(f"--generator {item!r}: the bundles of {name} must share their options")
            if chosen != SamplingOptions():
                sampling[name] = chosen
    return {name: tuple(bundles) for name, bundles in named.items()}, sampling


def focused_slots(given: list[str], rare: list[str]) -> int | dict[str, int]:
    """``["2"]`` → 2 (every rare class); ``["Prophase=1", "Metaphase=2"]`` → per class (every rare class named)."""
    def count(text: str, item: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"--focused-n {item}: write N or CLASS=N with N ≥ 1")
        return int(text)

    given = [str(item) for item in given]  # a configuration may give a number
    if len(given) == 1 and "=" not in given[0]:
        return count(given[0], given[0])
    slots = {}
    for item in given:
        name, sep, n = item.partition("=")
        if not sep or name not in rare:
            raise ValueError(f"--focused-n {item}: write N, or CLASS=N for each rare class ({', '.join(rare)})")
        slots[name] = count(n, item)
    missing = [name for name in rare if name not in slots]
    if missing:
        raise ValueError(f"--focused-n: no slots given for {', '.join(missing)}; give CLASS=N for every rare class")
    return slots


def settings_from(args) -> StudySettings:
    if not Path(args.data).exists():
        raise ValueError(f"--data {args.data}: no such file or folder")
    for flag, value in (("--steps", args.steps), ("--width", args.width), ("--batch-size", args.batch_size),
                        ("--workers", args.workers)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if not args.rare:
        raise ValueError("give the rare class(es) with --rare CLASS (or a --config that names them)")
    focused_n = focused_slots(args.focused_n, args.rare)
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    if args.pool_factor < 1:
        raise ValueError(f"--pool-factor must be at least 1, got {args.pool_factor}")
    if args.scheduler == "threads":
        raise ValueError("--scheduler threads: trainings run in processes; use --workers N (local processes) or a dask "
                         "scheduler address")
    if bool(args.group_by) != bool(args.test_groups):
        raise ValueError("--group-by and --test-groups go together: name what groups the crops and the groups to test "
                         "on (e.g. --group-by slide --test-groups A20 V26)")
    if args.keep_validation and not args.keep:
        raise ValueError("--keep-validation thins validation by --keep's share: thin the rare classes with --keep "
                         "CLASS=N, or leave it out")
    generators, sampling = generator_names(args.generator)
    if args.arms:
        known = all_arms(list(generators), list(args.filters), bool(args.keep))
        unknown = [a for a in args.arms if a not in known]
        if UNTHINNED in unknown and not args.keep:
            raise ValueError(f"--arms {UNTHINNED}: it trains on the real cells before --keep thinned them; thin the "
                             "rare classes with --keep CLASS=N, or leave it out")
        if unknown:
            raise ValueError(f"--arms {unknown}: choose from {list(known)}")
    return StudySettings(
        data=str(Path(args.data).resolve()), rare=tuple(args.rare), label_map=args.label_map,
        labels_csv=str(Path(args.labels_csv).resolve()) if args.labels_csv else None, size=args.size,
        keep=tuple(args.keep), keep_validation=args.keep_validation, generators=generators, sampling=sampling,
        filters=tuple(args.filters), count=args.count,
        pool_factor=args.pool_factor, sampler=args.sampler, sample_steps=args.sample_steps, split_seed=args.split_seed,
        stratify_by=args.stratify_by, group_by=args.group_by, test_groups=tuple(dict.fromkeys(args.test_groups)),
        steps=args.steps, width=args.width, batch_size=args.batch_size, select_on=args.select_on,
        focused_n=focused_n, seeds=tuple(dict.fromkeys(args.seeds)), arms=tuple(args.arms), workers=args.workers,
        scheduler=args.scheduler, threads=args.threads)


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_with_config(build_parser(), argv)
    settings, out = settings_from(args), Path(args.out)
    # the study's machinery (torch, scikit-learn) once the options are known good: a refused option costs no import
    from napari_cellsynth.core.progress_bars import progress_bar

    from .plan import StudyPlan
    from .report import write_report
    from .runner import run_study, study_arms

    if args.report_only:
        if not (out / "settings.json").is_file():
            raise ValueError(f"{out} holds no study (no settings.json); run it first without --report-only")
        settings.record(out)
        plan = StudyPlan(settings, out)
    else:
        with progress_bar(desc="study", unit="task", disable=args.quiet, delay=1) as bar:  # a refusal prints no bar
            plan = run_with_bar(run_study(settings, out), bar)
    command = "cellsynth study " + " ".join(argv)
    report = write_report(plan, study_arms(settings), command)
    if args.bundles_out:
        from .fidelity import write_bundles_with_fidelity

        summary = json.loads((out / "summary.json").read_text())
        for folder in write_bundles_with_fidelity(plan, summary, Path(args.bundles_out), command):
            print(f"bundle with its fidelity in the card: {folder}")
    print((out / "summary.md").read_text())
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth study"))
