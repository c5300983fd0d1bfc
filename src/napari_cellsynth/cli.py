"""``cellsynth``: the plugin's functions in batch, over files and folders.

    cellsynth classify INPUT --model BUNDLE --out RESULTS.csv
    cellsynth generate --model DDPM_OR_GAN_BUNDLE --class M --count 100 --out FOLDER
    cellsynth filter --classifier BUNDLE --real DATA --synthetic DATA --minority M --out FOLDER
    cellsynth segment IMAGE.tif --model zoo:cellpose-chromosomes|cyto3|MODEL_FILE --out LABELS.tif
    cellsynth batch STACK.tif|STACK.ome.zarr|FOLDER --segment-model MODEL_FILE [--classifier BUNDLE] --out RUN
    cellsynth translate --model BBDM_OR_CYCLEGAN_BUNDLE --dapi D.tif [...] --labels L.tif [...] --out FOLDER
    cellsynth info BUNDLE
    cellsynth zoo list            (then --model zoo:NAME wherever a bundle is asked for)
    cellsynth zoo pull NAME|--all (download into the cache ahead of time, for a machine without internet)
    cellsynth train classifier|pretrain|ddpm|gan|bbdm|cyclegan|cellpose [OPTIONS]   (needs the [train] extra)
    cellsynth export classifier|ddpm|gan|bbdm|cyclegan RUN --out BUNDLE
    cellsynth export int8 BUNDLE --out BUNDLE_INT8          (an int8 variant, used where the CPU makes it pay)

``cellsynth train NAME --help`` and ``cellsynth export NAME --help`` list each one's options.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .core.atomic import write_csv_atomic
from .core.bundle import read_card, verify_files
from .core.classify import classify_crops
from .core.datasets import crop_groups, read_crops, read_image
from .core.decisions import parse_thresholds
from .core.entry import USER_ERRORS, quiet_readers, user_message
from .core.generate import DEFAULT_SAMPLER, DEFAULT_STEPS, GENERATOR_KINDS, THRESHOLDS, GenerationSettings
from .core.images import ImageInputError
from .core.jobs import default_of, run_with_bar
from .core.label_maps import label_lookup
from .core.metrics import format_table
from .core.runtime import OnnxModel
from .core.samplers import SAMPLERS, SPACINGS
from .core.translate import TranslationSettings


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def cmd_classify(args) -> int:
    from .core.progress_bars import progress_bar

    out = Path(args.out)
    if _same_file(out, Path(args.input)) or (args.objects and _same_file(out, Path(args.objects))):
        raise ImageInputError(f"--out {out} is an input file; choose another output path")
    model = OnnxModel(args.model, kind="classifier", precision=args.precision)
    decision = parse_thresholds(args.threshold, model.card.classes) if args.threshold else None
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: give a number of resamples (e.g. 1000), or leave it out")
    if args.objects:
        if args.group_by or args.bootstrap:
            raise ValueError("--group-by and --bootstrap score labelled crops; --objects input has no labels")
        return classify_objects_command(args, model, out, decision)
    fit = model.card.size_fit  # crops of other sizes are fitted as the bundle's training crops were
    crops = read_crops(args.input, args.labels_csv, fit.size if fit else None, fit.fit if fit else None,
                       skip_unreadable=True)
    for note in crops.notes:
        print(note, file=sys.stderr)
    skipped_csv = out.with_suffix(".skipped.csv")
    if crops.skipped:  # one unreadable crop in a large folder does not stop the others
        write_csv_atomic(skipped_csv, {"source": [n for n, _ in crops.skipped], "error": [e for _, e in crops.skipped]})
    else:
        skipped_csv.unlink(missing_ok=True)  # a rerun leaves no stale list
    if (args.group_by or args.bootstrap) and crops.labels is None:
        raise ImageInputError(f"{args.input} has no labels: --group-by and --bootstrap score labelled crops (give "
                              "an .npz with labels, a folder per class, or --labels-csv)")
    groups = crop_groups(crops, args.group_by, args.labels_csv) if args.group_by else None
    job = classify_crops(model, crops.images, args.batch_size, decision)
    with progress_bar(total=len(crops), unit="crop", disable=args.quiet, desc="classify") as bar:
        result = run_with_bar(job, bar)
    columns = {"source": crops.names}
    if crops.labels is not None:
        columns["true_label"] = crops.labels.tolist()
    if groups is not None:
        columns["group"] = groups.tolist()
    columns.update(result.table())
    write_csv_atomic(out, columns)
    write_classify_provenance(out, model, args.input, len(crops))
    skipped = f"; {len(crops.skipped)} unreadable skipped, listed in {skipped_csv}" if crops.skipped else ""
    print(f"wrote {out} ({len(crops)} crops{skipped}{runs_as_note(model)})", file=sys.stderr)
    if result.decision is not None:
        print(f"calls by the thresholds {result.decision.thresholds} ({result.decision.chosen_on}); "
              "--threshold none for the most probable class", file=sys.stderr)
    if crops.labels is not None:
        _score(crops.labels, result, model.card.trained.label_map, out, groups, args.bootstrap)
    return 0


def write_classify_provenance(out: Path, model: OnnxModel, source: str, n: int, **extra) -> None:
    """``OUT.provenance.json``: the bundle, the weights that ran (fp32 or int8) and why, the input."""
    from .core.atomic import write_json_atomic
    from .core.provenance import model_provenance

    write_json_atomic(out.with_suffix(".provenance.json"),
                      model_provenance(model) | {"input": str(source), "crops": n, **extra})


def runs_as_note(model: OnnxModel) -> str:
    return f"; int8 weights: {model.runs_as.why}" if model.runs_as.weights == "int8" else ""


def classify_objects_command(args, model: OnnxModel, out: Path, decision) -> int:
    """``--objects LABELS.tif``: INPUT is an image (C×H×W or H×W[×C]); one row per object, cut as the bundle's
    training crops were (its card) unless ``--object-crop`` says otherwise."""
    from .core.batch.table import object_columns
    from .core.classify import classify_objects
    from .core.progress_bars import progress_bar

    image, labels = read_image(args.input, "an image"), read_image(args.objects, "a labels image", labels=True)
    crop = args.object_crop or model.card.object_crop
    job = classify_objects(model, image, labels, args.batch_size, margin=args.margin, crop=crop, decision=decision)
    with progress_bar(unit="object", disable=args.quiet, desc="classify") as bar:
        objects, result = run_with_bar(job, bar)
    columns = object_columns(np.asarray(labels))  # as batch's table: centroid, the object's own box, area
    row_of = {label: i for i, label in enumerate(columns["label"])}
    rows = [row_of[int(label)] for label in objects.labels]
    write_csv_atomic(out, {**{name: [values[i] for i in rows] for name, values in columns.items()}, **result.table()})
    write_classify_provenance(out, model, args.input, len(objects.labels), objects=args.objects, object_crop=crop)
    print(f"wrote {out} ({len(objects.labels)} objects, crops cut by {crop}{runs_as_note(model)})", file=sys.stderr)
    return 0


def _score(labels, result, label_map, out: Path, groups=None, bootstrap: int = 0) -> None:
    """Metrics against the input's labels: the original labels the bundle's label map covers, or the bundle's own
    class names (a folder per class named G1, S, G2, M): per-class PPV, recall and F1 of the calls, PR-AUC and
    ROC-AUC of the probabilities, and per-group counts and bootstrap intervals when asked for; all in
    OUT.metrics.json."""
    names = np.asarray(labels).astype(str)
    classes = list(result.classes)
    # the bundle's class names, and its map's original labels (in the classes' order)
    lookup = {name: k for k, name in enumerate(classes)} | label_lookup(
        {name: (label_map or {}).get(name, []) for name in classes})
    known = np.array([name in lookup for name in names])
    unknown = sorted({str(name) for name in names[~known]})
    if not known.any():
        print(f"not scored: its labels ({', '.join(unknown[:5])}) are neither the bundle's classes "
              f"({', '.join(classes)}) nor in its label map; name them as those classes", file=sys.stderr)
        return
    if unknown:
        print(f"scored on {int(known.sum())} of {len(names)} crops: {int((~known).sum())} labelled "
              f"{', '.join(unknown[:5])} are neither the bundle's classes nor in its label map", file=sys.stderr)
    truth = np.array([lookup[name] for name in names[known]])
    groups = None if groups is None else np.asarray(groups)[known]
    from .core.atomic import write_json_atomic
    from .core.scoring import format_scores, score_labelled

    scores = score_labelled(truth, result.probabilities[known], result.predicted[known], classes, groups, bootstrap)
    scores["decision"] = result.decision.to_dict() if result.decision else None
    print(format_table(scores))
    print(format_scores(scores))
    write_json_atomic(out.with_suffix(".metrics.json"), scores)


def cmd_generate(args) -> int:
    """One TIFF per image with its provenance; batches already on disk are skipped (resume)."""
    from .core.progress_bars import progress_bar

    from .core.outputs import generate_into

    model = OnnxModel(args.model, kind=GENERATOR_KINDS)
    settings = GenerationSettings(args.class_name, args.count, args.sampler, args.steps, args.guidance, args.seed,
                                  args.eta, args.spacing, args.batch_size, args.clip_x0, args.threshold,
                                  args.dynamic_percentile, tuple(args.guidance_interval) if args.guidance_interval else None,
                                  args.guide)
    settings.check(model)
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before any image is made
        raise NotADirectoryError(20, "Not a directory", str(out))
    with progress_bar(unit="step", disable=args.quiet, desc=f"generate {args.class_name}") as bar:
        record = run_with_bar(generate_into(out, model, settings), bar)
    from .core.atomic import write_json_atomic

    write_json_atomic(out / f"{args.class_name}_seed{args.seed}.json", {**record, "count": args.count})
    print(f"wrote {args.count} images of {args.class_name} to {out}", file=sys.stderr)
    return 0


def cmd_filter(args) -> int:
    """UMAP filter: the files of :func:`core.outputs.write_filter_outputs` (the widget's *Export kept* too)."""
    from .core.filtering import run_filter
    from .core.jobs import run_to_end
    from .core.outputs import write_filter_outputs
    from .core.umap_filter import UmapGmmFilter

    out = Path(args.out)
    model = OnnxModel(args.classifier, kind="classifier")
    real = read_crops(args.real, args.real_labels_csv)
    if real.labels is None:
        raise ImageInputError(f"{args.real} has no labels; the filter needs labelled real crops")
    synthetic = read_crops(args.synthetic)
    params = {"n_components": args.components, "random_state": args.seed,
              "confidence": args.confidence if args.confidence == "weight" else float(args.confidence)}
    fitted = UmapGmmFilter.load(args.load) if args.load else None
    print("features, UMAP and mixture (UMAP takes a while on a CPU)…", file=sys.stderr)
    result = run_to_end(run_filter(model, real.images, real.labels, synthetic.images, args.minority, fitted, **params))
    record = {"classifier": model.card.name, "classifier_sha256": model.card.model_sha256,
              "real": str(args.real), "synthetic_source": str(args.synthetic)}
    summary, _ = write_filter_outputs(  # makes the folder only now: a refused input leaves none behind
        out, synthetic.images, synthetic.names, result, None, record)
    print(f"kept {summary['kept']} of {summary['synthetic']} synthetic samples (level {summary['level']:.3f}); "
          f"wrote {out}", file=sys.stderr)
    return 0


def cmd_segment(args) -> int:
    """Cellpose labels for a 2-D image or each frame of a T×Y×X stack, written as one TIFF."""
    import io

    import tifffile
    from .core.progress_bars import progress_bar

    from .core.atomic import atomic_open
    from .core.segment import SegmentSettings, estimate_diameter, load_model, segment

    out = Path(args.out)
    if _same_file(out, Path(args.image)):
        raise ImageInputError(f"--out {out} is the input image; choose another output path")
    image = read_image(args.image, "an image")
    settings = SegmentSettings(args.model, args.diameter, tuple(args.channels), args.flow_threshold,
                               args.cellprob_threshold)
    model = load_model(args.model)
    if args.estimate_diameter:
        settings.diameter = estimate_diameter(image, settings, args.channel_axis, model)
        print(f"estimated diameter: {settings.diameter:.1f} px", file=sys.stderr)
    with progress_bar(unit="frame", disable=args.quiet, desc="segment") as bar:
        labels = run_with_bar(segment(image, settings, args.channel_axis, model), bar)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, labels, compression="zlib")
    with atomic_open(out, "wb") as fh:
        fh.write(buffer.getvalue())
    counts = [int(len(np.unique(f)) - 1) for f in (labels if labels.ndim == 3 else labels[None])]
    print(f"wrote {out}: {counts} objects per frame", file=sys.stderr)
    return 0


def add_threshold_options(p) -> None:
    """Cellpose's two mask thresholds, for segment and batch: unset, a bundle's card gives them."""
    p.add_argument("--flow-threshold", type=float, help="Cellpose's flow error threshold (default: the bundle's "
                                                         "own, chosen on its training images, else Cellpose's 0.4)")
    p.add_argument("--cellprob-threshold", type=float, help="Cellpose's cell probability threshold (default: the "
                                                             "bundle's own, else Cellpose's 0.0)")


def channel_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"give channel numbers separated by commas (e.g. 0,0,0), not {text!r}") from err


def cmd_batch(args) -> int:
    """Segment → crops → classify over every frame of a stack or folder; labels as OME-Zarr, a table, a run record.

    A rerun with the same input, settings and models resumes: frames with a done-marker are skipped."""
    from .core.progress_bars import progress_bar

    from .core.batch import AugmentSettings, BatchSettings, run_batch
    from .core.segment import SegmentSettings

    augment = AugmentSettings(args.generate, args.generate_class, args.generate_count, args.generate_steps, args.seed,
                              args.filter_minority)
    settings = BatchSettings(SegmentSettings(args.segment_model, args.diameter, (0, 0), args.flow_threshold,
                                             args.cellprob_threshold),
                             args.classifier, args.channel, args.classify_channels, args.tile or None, args.halo,
                             args.batch_size, augment)
    job = run_batch(args.input, args.out, settings, args.axes, args.scheduler, args.workers)
    done, total, message = next(job)  # the input, models and outputs are checked before the bar appears
    with progress_bar(total=total, initial=done, unit="frame", disable=args.quiet, desc="batch") as bar:
        while True:
            bar.set_postfix_str(message, refresh=False)
            bar.update(done - bar.n)
            try:
                done, total, message = next(job)
            except StopIteration as stop:
                result = stop.value
                break
    print(f"wrote {result.run_dir}: {result.done} of {result.frames} frames, {result.objects} objects "
          f"({result.table.name}, {result.record.name}, labels in *.ome.zarr)", file=sys.stderr)
    augmented = result.augment or {}
    if augmented.get("status") == "done":
        for step, what in (("synthetic", "{objects} synthetic objects in {file}"),
                           ("generated", "{count} images in {folder}"),
                           ("filter", "filter kept {kept} of {synthetic} ({folder})")):
            if step in augmented:
                print(f"  {what.format(**augmented[step])}", file=sys.stderr)
    elif augmented:
        print(f"  generate/filter {augmented['status']}: {augmented.get('error', '')}", file=sys.stderr)
    problems = [s for s in result.stacks if s["status"] != "done"]
    for stack in problems:
        failures = stack.get("failures", [])
        said = stack.get("error") or (f"{stack['failed']} frame(s) failed, e.g. t={failures[0]['t']} "
                                      f"z={failures[0]['z']}: {failures[0]['error']}" if failures else "")
        print(f"  {stack['name']}: {stack['status']}{': ' + said if said else ''}", file=sys.stderr)
    return 1 if problems or augmented.get("status", "done") != "done" else 0


def cmd_translate(args) -> int:
    """Synthetic FISH per chromosome for each DAPI/labels pair: crops (TIFFs with provenance) and a composite.

    Each pair writes ``OUT/<DAPI file stem>/``; a pair whose ``translate.json`` is already there is skipped.
    """
    from .core.progress_bars import progress_bar

    from .core.outputs import write_translation
    from .core.translate import translate

    if len(args.dapi) != len(args.labels):
        raise ValueError(f"{len(args.dapi)} --dapi file(s) but {len(args.labels)} --labels file(s); give one "
                         "labels file per DAPI file, in the same order")
    model = OnnxModel(args.model)
    settings = TranslationSettings(args.steps, args.eta, args.seed, args.batch_size)
    settings.check(model)
    out = Path(args.out)
    for dapi_path, labels_path in zip(map(Path, args.dapi), map(Path, args.labels)):
        folder = out / dapi_path.stem
        if (folder / "translate.json").is_file():
            print(f"{dapi_path}: already done in {folder}, skipped", file=sys.stderr)
            continue
        written = [folder / "composite.tif", folder / "translate.json", folder / "crops"]
        if any(_same_file(p, w) or _same_file(p.parent, w) for p in (dapi_path, labels_path) for w in written):
            raise ImageInputError(f"--out {out} would overwrite the input {dapi_path} or {labels_path}; "
                                  "choose another folder")
        dapi, labels = read_image(dapi_path, "a DAPI plane"), read_image(labels_path, "a labels image", labels=True)
        with progress_bar(unit="step", disable=args.quiet, desc=dapi_path.name) as bar:
            result = run_with_bar(translate(model, dapi, labels, settings), bar)
        write_translation(folder, result, labels, {"dapi": str(dapi_path), "labels_file": str(labels_path)})
        print(f"{dapi_path}: {len(result.images)} synthetic chromosomes in {folder}", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from .core.zoo import resolve

    folder = resolve(args.bundle)
    card = read_card(folder)
    verify_files(folder, card)
    print(json.dumps(card.to_dict(), indent=2))
    if "fidelity" in card.SECTIONS:
        fidelity = card.fidelity
        lines = fidelity.lines() if fidelity else ["not measured: cellsynth study --bundles-out DIR writes a copy of "
                                                   "this bundle with its fidelity in the card"]
        print("\n".join(f"fidelity: {line}" for line in lines), file=sys.stderr)
    from .core.runtime import planned_weights

    runs_as = planned_weights(card)
    print(f"weights here: {runs_as.weights} ({runs_as.why})", file=sys.stderr)
    return 0


def cmd_zoo(args) -> int:
    """``list``: the registry's bundles and where each is (local, cached, not downloaded), ``--verify`` checking
    every sha256; ``pull NAME … | --all``: download bundles into the cache ahead of time."""
    from .core.progress_bars import progress_bar

    from .core.zoo import open_zoo, resolve

    zoo = open_zoo(args.registry)
    if args.action == "pull":
        names = sorted(zoo.entries) if args.all else [n.removeprefix("zoo:") for n in args.names]
        if not names:
            raise ValueError("name the bundles to pull (cellsynth zoo list), or give --all")
        for name in names:
            if zoo.where(name) == "local":
                print(f"zoo:{name}: in {zoo.local_folder(name)}, nothing to download", file=sys.stderr)
                continue
            with progress_bar(unit="B", unit_scale=True, desc=f"zoo:{name}", disable=args.quiet) as bar:
                folder = run_with_bar(zoo.pull(name), bar)
            print(f"zoo:{name}: {folder}", file=sys.stderr)
        return 0
    if args.names or args.all:
        raise ValueError("zoo list takes no bundle names; use 'cellsynth zoo pull NAME' to download one")
    print(f"model zoo at {zoo.location}: {len(zoo.entries)} bundle(s)")
    for name, entry in sorted(zoo.entries.items()):
        metrics = ", ".join(f"{k} {v}" for k, v in (entry.metrics or {}).items())
        where = zoo.where(name)
        size = f", {entry.size / 2**20:.1f} MB" if entry.size and where == "not downloaded" else ""
        print(f"  zoo:{name:<28} {entry.kind:<10} [{where}{size}] {entry.description}")
        if metrics or entry.results:
            print(f"  {'':<32} {metrics}{' (' + entry.results + ')' if entry.results else ''}")
        if args.verify:
            resolve(f"zoo:{name}", args.registry)
            print(f"  {'':<32} sha256 ok")
    return 0


# cellsynth train NAME / cellsynth export NAME: napari_cellsynth.training.trainers.NAME / .export.export_NAME
TRAINERS = ("classifier", "pretrain", "ddpm", "gan", "bbdm", "cyclegan", "cellpose")
EXPORTERS = ("classifier", "ddpm", "gan", "bbdm", "cyclegan", "cellpose", "bioimageio", "int8")
TRAIN_EXTRA = ("training needs torch: pip install torch, then pip install 'napari-cellsynth[train]' "
               "(add [seg] for cellpose)")


def run_training_command(args) -> int:
    """Hand the rest of the command line to a trainer's or exporter's own ``main`` (its options, its errors)."""
    module_name = (f"napari_cellsynth.training.trainers.{args.name}" if args.command == "train"
                   else f"napari_cellsynth.export.export_{args.name}")
    return run_needing_torch(module_name, f"cellsynth {args.command} {args.name}", args)


def run_study_command(args) -> int:
    """``cellsynth study``: the study's own parser, errors and ``-v``."""
    return run_needing_torch("napari_cellsynth.training.study.command", "cellsynth study", args)


def run_needing_torch(module_name: str, prog: str, args) -> int:
    """``module_name``'s ``main`` through :func:`run_entry`; without torch or Cellpose installed, one line that says
    what to install, whether the module imports them at its top or only once its options are checked."""
    from .core.entry import run_entry

    try:
        module = importlib.import_module(module_name)
        return run_entry(module.main, prog, args.rest + (["-v"] if args.verbose else []))
    except ImportError as err:
        if err.name not in ("torch", "cellpose") or args.verbose:
            raise
        print(f"{prog}: error: {TRAIN_EXTRA}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellsynth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log which execution provider runs; show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("classify", help="classify crops in an .npz, a TIFF stack or a folder; write a CSV")
    p.add_argument("input", help=".npz (images[, labels]), .tif stack (N×[C×]H×W) or folder (per class)")
    p.add_argument("--model", required=True, help="classifier bundle folder, or zoo:NAME (cellsynth zoo list)")
    p.add_argument("--out", required=True, help="results CSV (written atomically)")
    p.add_argument("--labels-csv", help="labels for a TIFF stack, to score the predictions")
    p.add_argument("--objects", help="a labels TIFF of objects: INPUT is then one image, and each object is classified")
    p.add_argument("--object-crop", choices=["window", "resize"],
                   help="how objects are cut (default: as the bundle's training crops were, from its card)")
    p.add_argument("--margin", type=float, default=0.15, help="box margin for --object-crop resize")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threshold", nargs="+", metavar="CLASS=T",
                   help="call CLASS when its probability reaches T (overrides the thresholds that the bundle's card "
                        "chose on validation); 'none': the most probable class for every crop")
    p.add_argument("--group-by", metavar="COLUMN|path:K|path:REGEX",
                   help="labelled input: counts per group (e.g. slide): a labels-CSV column, an .npz array, the K-th "
                        "part of each crop's path (a folder level), or a regular expression's first group")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="labelled input: 95%% intervals of F1 and PR-AUC from N resamples (of groups with --group-by)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--precision", choices=["auto", "fp32", "int8"],
                   help="weights to run: auto (default; CELLSYNTH_PRECISION) runs a bundle's int8 variant on CPUs with "
                        "int8 dot-product instructions, fp32 elsewhere; recorded in OUT.provenance.json")
    p.set_defaults(func=cmd_classify)
    p = sub.add_parser("generate", help="generate images of a class with a DDPM or GAN bundle (TIFFs with provenance)")
    p.add_argument("--model", required=True, help="ddpm or gan bundle folder, or zoo:NAME")
    p.add_argument("--class", dest="class_name", required=True, help="class name from the bundle's card")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=list(SAMPLERS),
                   help=f"default {DEFAULT_SAMPLER} (docs/results.md §6b); an ε-prediction bundle trained briefly may "
                        "need ddim or --clip-x0")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"sampler steps (default {DEFAULT_STEPS}; DDPM always runs all of them)")
    p.add_argument("--guidance", type=float, default=default_of(GenerationSettings, "guidance"),
                   help="guidance scale w: out = ref + w (cond - ref), ref the unconditional prediction (classifier-free) "
                        "or --guide's; 1 is plain conditioning")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="guide only at noise levels LOW < σ ≤ HIGH (σ = √((1-ᾱ)/ᾱ); HIGH may be inf), plain "
                        "conditioning elsewhere (Kynkäänniemi et al. 2024)")
    p.add_argument("--guide", metavar="BUNDLE",
                   help="autoguidance (Karras et al. 2024): a weaker DDPM bundle of the same data and schedule (a "
                        "smaller or shorter-trained net) as the reference, instead of the unconditional prediction")
    p.add_argument("--eta", type=float, default=default_of(GenerationSettings, "eta"), help="DDIM η (0 deterministic)")
    p.add_argument("--spacing", choices=list(SPACINGS),
                   help="timestep spacing (default: trailing for v-prediction bundles, leading for ε ones)")
    p.add_argument("--clip-x0", type=float, help="clip every x0 estimate to ±this in the normalised scale "
                   "(e.g. 3; off by default: bright pixels of real cells lie above 1)")
    p.add_argument("--threshold", choices=list(THRESHOLDS),
                   help="x0 thresholding: static (the per-channel range of the training crops, from the card) "
                        "or dynamic (Imagen's percentile form)")
    p.add_argument("--dynamic-percentile", type=float, default=default_of(GenerationSettings, "dynamic_percentile"),
                   help="percentile of --threshold dynamic")
    p.add_argument("--seed", type=int, default=default_of(GenerationSettings, "seed"))
    p.add_argument("--batch-size", type=int, default=default_of(GenerationSettings, "batch_size"))
    p.add_argument("--out", required=True, help="folder for the TIFFs (a rerun resumes)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("filter", help="UMAP manifold filter: keep synthetic samples near the real minority class")
    p.add_argument("--classifier", required=True, help="classifier bundle (its features output is used)")
    p.add_argument("--real", required=True, help="labelled real crops (.npz, .tif with --real-labels-csv, folder)")
    p.add_argument("--real-labels-csv")
    p.add_argument("--synthetic", required=True, help="synthetic crops (.npz, .tif stack or folder of TIFFs)")
    p.add_argument("--minority", required=True, help="the rare class, as the classifier names it")
    p.add_argument("--components", type=int, default=2)
    p.add_argument("--confidence", default="weight", help="'weight' (the paper's rule) or a level in (0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--load", help="a filter.npz saved before (skips fitting)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_filter)
    p = sub.add_parser("segment", help="segment an image or a T×Y×X stack with Cellpose; write a labels TIFF")
    p.add_argument("image", help="a 2-D image or a stack of frames (.tif)")
    p.add_argument("--model", required=True, help="zoo:NAME (a cellpose bundle, e.g. zoo:cellpose-chromosomes), a "
                                                  "cellpose bundle folder or model file, or a built-in name (cyto3, "
                                                  "nuclei, …; needs internet once)")
    p.add_argument("--diameter", type=float, help="object diameter in pixels (default: the model's)")
    p.add_argument("--estimate-diameter", action="store_true", help="estimate it from a first pass")
    p.add_argument("--channels", type=int, nargs=2, default=[0, 0], help="Cellpose channels [cyto, nucleus]")
    p.add_argument("--channel-axis", type=int, help="axis of colour channels, if any")
    add_threshold_options(p)
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_segment)
    p = sub.add_parser("batch", help="segment and classify every frame of TIFF / OME-Zarr stacks or a folder of "
                                     "them, on dask; resumable")
    p.add_argument("input", help="a TIFF stack, an OME-Zarr image (or Zarr array), or a folder of them")
    p.add_argument("--segment-model", required=True, help="zoo:NAME, a cellpose bundle folder or model file (or a "
                                                          "built-in name; needs internet once)")
    p.add_argument("--classifier", help="classifier bundle folder or zoo:NAME (leave out to segment only)")
    p.add_argument("--out", required=True, help="run folder: <stack>.ome.zarr labels, objects.csv, run.json, markers")
    p.add_argument("--axes", help="the stack's axes, e.g. TZCYX or TYX (default: the file's own, or TYX for 3-D)")
    p.add_argument("--channel", type=int, default=0, help="the channel Cellpose segments")
    p.add_argument("--classify-channels", type=channel_list,
                   help="the channels the classifier gets, in its order, e.g. 0,1,2 (default: all)")
    p.add_argument("--diameter", type=float, help="object diameter in pixels (default: the model's)")
    add_threshold_options(p)
    p.add_argument("--tile", type=int, default=1024, help="frames larger than this are cut into tiles (0: never)")
    p.add_argument("--halo", type=int, help="context around each tile in pixels (default: two object diameters)")
    p.add_argument("--scheduler", help="threads (default), processes, or a dask scheduler address such as "
                                       "tcp://host:8786 (default: $DASK_SCHEDULER_ADDRESS if set)")
    p.add_argument("--workers", type=int, help="local threads or processes (default: up to 4, one per core)")
    p.add_argument("--batch-size", type=int, default=64, help="crops per ONNX Runtime call")
    g = p.add_argument_group("generate and filter (optional; after the frames)")
    g.add_argument("--generate", metavar="BUNDLE", help="a BBDM or CycleGAN bundle: a synthetic object from every "
                                                        "segmented one (its --channel is the DAPI); a DDPM or GAN "
                                                        "bundle: --generate-count images of a class")
    g.add_argument("--generate-class", help="DDPM/GAN: the class to generate (default: --filter-minority)")
    g.add_argument("--generate-count", type=int, default=0, help="DDPM/GAN: how many images")
    g.add_argument("--generate-steps", type=int, help="sampler steps: DPM-Solver++(2M) for a DDPM (default 20), the "
                                                      "bridge for a BBDM (default 50)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--filter-minority", metavar="CLASS", help="UMAP filter: keep the synthetic objects near this "
                                                              "class's real objects (as the classifier names them)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_batch)
    p = sub.add_parser("translate", help="synthetic FISH chromosomes from DAPI planes and chromosome labels "
                                         "(BBDM or CycleGAN bundle)")
    p.add_argument("--model", required=True, help="BBDM or CycleGAN bundle folder, or zoo:NAME")
    p.add_argument("--dapi", required=True, nargs="+", help="8-bit DAPI plane(s), one TIFF each")
    p.add_argument("--labels", required=True, nargs="+", help="chromosome labels TIFF(s), one per DAPI plane")
    p.add_argument("--steps", type=int, default=default_of(TranslationSettings, "steps"),
                   help="bridge sampling steps (skip steps of the 1000)")
    p.add_argument("--eta", type=float, default=default_of(TranslationSettings, "eta"))
    p.add_argument("--seed", type=int, default=default_of(TranslationSettings, "seed"))
    p.add_argument("--batch-size", type=int, default=default_of(TranslationSettings, "batch_size"))
    p.add_argument("--out", required=True, help="folder; one subfolder per DAPI file")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_translate)
    p = sub.add_parser("zoo", help="list the model zoo's bundles (use them as --model zoo:NAME), or download them "
                                   "ahead of time for a machine without internet")
    p.add_argument("action", choices=["list", "pull"])
    p.add_argument("names", nargs="*", metavar="NAME", help="pull: the bundles to download (zoo:NAME or NAME)")
    p.add_argument("--all", action="store_true", help="pull: every bundle of the registry")
    p.add_argument("--registry", help="a folder or URL holding registry.json (default: CELLSYNTH_ZOO, else the "
                                      "registry shipped with the package)")
    p.add_argument("--verify", action="store_true", help="list: check every bundle's sha256 (downloads missing ones)")
    p.add_argument("--quiet", action="store_true", help="pull: no progress bar")
    p.set_defaults(func=cmd_zoo)
    for command, modules, what in (("train", TRAINERS, "train a model on your labelled crops (needs the [train] extra)"),
                                   ("export", EXPORTERS, "export a finished training run to a bundle (ONNX + card)")):
        p = sub.add_parser(command, help=what, description=f"{what}; NAME --help lists its options")
        p.add_argument("name", choices=list(modules), metavar="NAME", help=" | ".join(modules))
        p.add_argument("rest", nargs=argparse.REMAINDER, help="the options of that command")
        p.set_defaults(func=run_training_command)
    p = sub.add_parser("study", help="does synthetic data help on my data? every augmentation arm against the cheap "
                                     "alternatives, paired by seed (needs the [train] extra); --help lists its options",
                       add_help=False)
    p.set_defaults(func=run_study_command)  # its options go to the study's own parser (main)
    p = sub.add_parser("info", help="verify a bundle (sha256) and print its card")
    p.add_argument("bundle")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "study":
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    quiet_readers(args.verbose)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if args.verbose or args.command in ("train", "export", "study"):  # asked for, or a trainer's -v (run_entry)
            raise
        print(f"cellsynth {args.command}: error: {user_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
