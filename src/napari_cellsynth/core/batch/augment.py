"""The batch's optional generate and filter steps: paper 004's augmentation, over a whole stack.

- A BBDM or CycleGAN bundle (``--generate``) makes a synthetic object of every segmented one, from the segmented
  channel (DAPI), inside each frame's task (:func:`.frame.translate_frame`); the frame's arrays hold them, and
  ``RUN/synthetic.npz`` gathers them when the frames are done.
- A DDPM or GAN bundle samples ``--generate-count`` images of one class once the frames are done, into
  ``RUN/generated/`` (one TIFF each with its provenance; a rerun skips the batches already there).
- ``--filter-minority M`` fits the UMAP filter on the classifier features of the run's real objects, each named by
  the classifier's prediction (a stack has no annotations), and keeps the synthetic objects that fall in class M's
  main Gaussian component: ``RUN/filter/`` holds the files ``cellsynth filter`` writes, ``kept.npz`` ready for
  training with ``--extra-train``.  A rerun with nothing new reuses them.

These steps hold the run's synthetic objects (a 6×64×64 crop is 24 KB) and every real object's features (a few KB
each) in memory, and fit the filter on at most :data:`REAL_FEATURES` of the real ones: size a generating run
accordingly; the frames' own memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from ..bundle import read_card
from ..classify import classify_crops
from ..filtering import fit_and_place
from ..generate import DEFAULT_SAMPLER, DEFAULT_STEPS, GENERATOR_KINDS, GenerationSettings
from ..images import ImageInputError
from ..jobs import CancelToken, check_cancelled, run_to_end
from ..outputs import generate_into, image_name, read_generated, write_filter_outputs
from ..runtime import OnnxModel
from ..translate import KINDS as TRANSLATOR_KINDS
from ..zoo import resolve
from .frame import AugmentSettings
from .markers import fingerprint

REAL_FEATURES = 20_000  # real objects the filter is fitted on at most: every one of the minority, a sample of the rest
SYNTHETIC, GENERATED, FILTER = "synthetic.npz", "generated", "filter"


@dataclass
class SyntheticObjects:
    images: np.ndarray  # N×C×H×W
    names: list[str]  # where each came from: stack/t…-z…/label… or the generated TIFF's index
    features: np.ndarray | None  # N×D classifier features (None: not computed)


def generator_card(augment: AugmentSettings):
    """The generator bundle's card (None without one); a bundle of another kind is refused."""
    if augment.generator is None:
        return None
    card = read_card(resolve(augment.generator))
    if card.kind not in (*TRANSLATOR_KINDS, *GENERATOR_KINDS):
        raise ImageInputError(f"--generate {augment.generator} is a '{card.kind}' bundle; give a BBDM or CycleGAN "
                              "bundle (every object, from its DAPI channel) or a DDPM or GAN bundle (a class)")
    return card


def sampled_class(augment: AugmentSettings) -> str | None:
    return augment.generate_class or augment.minority


def check_augment(augment: AugmentSettings, card, classifier_card) -> None:
    """One-line errors for settings that cannot work, before any frame runs; ``card``: the generator's (or None)."""
    kind = card.kind if card is not None else None
    if augment.minority is not None:
        if classifier_card is None:
            raise ImageInputError("--filter-minority needs --classifier: the UMAP filter works on its features")
        if kind is None:
            raise ImageInputError("--filter-minority needs --generate: there is nothing synthetic to filter")
        if augment.minority not in classifier_card.classes:
            raise ImageInputError(f"--filter-minority {augment.minority!r} is not a class of the classifier "
                                  f"{list(classifier_card.classes)}")
    if kind is None:
        return
    if kind in GENERATOR_KINDS:
        if augment.count < 1:
            raise ImageInputError(f"--generate {augment.generator} is a {kind.upper()} bundle: say how many images "
                                  "with --generate-count N")
        if sampled_class(augment) not in card.classes:
            raise ImageInputError(f"--generate-class {sampled_class(augment)!r} is not a class of the generator "
                                  f"{list(card.classes)}; choose one with --generate-class")
    if augment.minority is not None:
        wanted = (card.n_channels, card.n_channels + 1) if kind in TRANSLATOR_KINDS else (card.n_channels,)
        if classifier_card.n_channels not in wanted:
            raise ImageInputError(f"the classifier takes {classifier_card.n_channels} channel(s) but the generator "
                                  f"makes {card.n_channels}; the filter needs a classifier of the generated planes"
                                  + (" (or of DAPI and them)" if kind in TRANSLATOR_KINDS else ""))


def translated_objects(plans) -> SyntheticObjects:
    """Every done frame's synthetic objects, stack by stack and frame by frame."""
    images, names, features = [], [], []
    for plan in plans:
        for t, z in sorted(plan.done):
            arrays = plan.markers.read_arrays(t, z)
            if "synthetic" not in arrays:
                continue
            images.append(arrays["synthetic"])
            names += [f"{plan.source.name}/t{t}-z{z}/label{int(i)}" for i in arrays["synthetic_label"]]
            if "synthetic_features" in arrays:
                features.append(arrays["synthetic_features"])
    if not images:
        return SyntheticObjects(np.zeros((0, 1, 1, 1), np.uint8), [], None)
    return SyntheticObjects(np.concatenate(images), names, np.concatenate(features) if features else None)


def write_synthetic(path: Path, objects: SyntheticObjects) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=objects.images, source=np.array(objects.names, dtype=str))


def real_features(plans, classes: list[str], minority: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(features, predicted class names, objects seen) of the run's real objects: every object of the minority and a
    seeded sample of the others, :data:`REAL_FEATURES` in all at most."""
    features, predicted = [], []
    for plan in plans:
        for t, z in sorted(plan.done):
            arrays = plan.markers.read_arrays(t, z)
            if "features" in arrays:
                features.append(arrays["features"])
                predicted.append(arrays["predicted"])
    if not features:
        raise ImageInputError("no real objects were classified, so the UMAP filter has nothing to fit on")
    X, names = np.concatenate(features), np.asarray(classes)[np.concatenate(predicted)]
    seen = len(X)
    if seen > REAL_FEATURES:
        minority_rows = np.flatnonzero(names == minority)[:REAL_FEATURES]
        others = np.flatnonzero(names != minority)
        rng = np.random.default_rng(seed)
        chosen = np.sort(np.concatenate([minority_rows, rng.choice(others, REAL_FEATURES - len(minority_rows),
                                                                   replace=False)]))
        X, names = X[chosen], names[chosen]
    return X, names, seen


def sample_objects(run_dir: Path, augment: AugmentSettings, classifier: OnnxModel | None,
                   batch_size: int) -> Generator[tuple[int, int, str], None, tuple[SyntheticObjects, dict]]:
    """``--generate-count`` images of the class from a DDPM or GAN bundle into ``RUN/generated`` (resumable), with
    their classifier features when the run filters."""
    model = OnnxModel(augment.generator, kind=GENERATOR_KINDS)
    settings = GenerationSettings(sampled_class(augment), augment.count, DEFAULT_SAMPLER, augment.steps or DEFAULT_STEPS,
                                  seed=augment.seed, batch_size=augment.batch_size)
    settings.check(model)
    folder = run_dir / GENERATED
    job = generate_into(folder, model, settings)
    while True:
        try:
            done, total = next(job)
        except StopIteration as stop:
            record = stop.value
            break
        yield done, total, f"generating {settings.count} {settings.class_name} images with {model.card.name}"
    images = read_generated(folder, record, settings.count)
    features = None
    if classifier is not None and augment.minority is not None:
        yield 0, 1, f"classifier features of the {len(images)} generated images"
        features = run_to_end(classify_crops(classifier, images, batch_size)).features
    names = [f"{GENERATED}/{image_name(record, i)}" for i in range(len(images))]
    return SyntheticObjects(images, names, features), {**record, "count": settings.count, "folder": str(folder)}


def filter_objects(run_dir: Path, plans, augment: AugmentSettings, classifier: OnnxModel,
                   synthetic: SyntheticObjects, key: str,
                   cancel: CancelToken | None) -> Generator[tuple[int, int, str], None, dict]:
    """The UMAP filter fitted on the run's real objects (named by the classifier), applied to the synthetic ones;
    its files in ``RUN/filter``.  Returns their summary."""
    if not len(synthetic.images):
        raise ImageInputError("the generator made no synthetic objects (no frame had any), so nothing was filtered")
    X, names, seen = real_features(plans, list(classifier.card.classes), augment.minority, augment.seed)
    job = fit_and_place(X, names, synthetic.features, augment.minority, cancel=cancel, random_state=augment.seed)
    while True:
        try:
            done, total, message = next(job)
        except StopIteration as stop:
            result = stop.value
            break
        yield done, total, f"UMAP filter: {message}"
    check_cancelled(cancel)
    record = {"classifier": classifier.card.name, "classifier_sha256": classifier.card.model_sha256,
              "real": f"{seen} segmented objects of this run, named by the classifier ({len(X)} used)",
              "synthetic_source": str(run_dir), "fingerprint": key}
    summary, _ = write_filter_outputs(run_dir / FILTER, synthetic.images, synthetic.names, result, None, record)
    return summary


def previous_filter(run_dir: Path, key: str) -> dict | None:
    """The filter's summary from an earlier run of the same frames and settings (then it is not fitted again)."""
    path = run_dir / FILTER / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("fingerprint") == key else None


def augment_run(run_dir: Path, plans, augment: AugmentSettings, kind: str, classifier_folder: str | None,
                batch_size: int, cancel: CancelToken | None = None) -> Generator[tuple[int, int, str], None, dict]:
    """The generate and filter steps once the frames are done; yields ``(done, total, message)``, returns what they
    wrote (for the run record)."""
    classifier = OnnxModel(classifier_folder, kind="classifier") if classifier_folder else None
    done_frames = [sorted(plan.done) for plan in plans]
    key = fingerprint([plan.markers.key for plan in plans], done_frames, asdict(augment))
    outcome: dict = {"generator": kind}
    if kind in TRANSLATOR_KINDS:
        yield 0, 1, "gathering the synthetic objects"
        synthetic = translated_objects(plans)
        write_synthetic(run_dir / SYNTHETIC, synthetic)
        outcome["synthetic"] = {"file": str(run_dir / SYNTHETIC), "objects": len(synthetic.names)}
    else:
        synthetic, record = yield from sample_objects(run_dir, augment, classifier, batch_size)
        outcome["generated"] = record
    check_cancelled(cancel)
    if augment.minority is not None:
        summary = previous_filter(run_dir, key)
        if summary is None:
            summary = yield from filter_objects(run_dir, plans, augment, classifier, synthetic, key, cancel)
        outcome["filter"] = {"folder": str(run_dir / FILTER), **{k: summary[k] for k in
                             ("synthetic", "kept", "dropped", "level", "minority", "component_weight")}}
    return outcome
