"""A study's fixed parts, under its output folder: the data, one split (the rare classes thinned in its training part
by ``--keep``), how many synthetic cells each rare class gets, and the per-seed synthetic sets (copies, generated,
filtered).  Every file is written atomically and skipped when it is there, so a killed study resumes."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.datasets import crop_groups
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel
from napari_cellsynth.training.data.labelled_crops import (MIN_EVAL_CROPS, LabelledData, group_split, load_labelled,
                                                           read_split, stratification, stratified_split, thin_classes)

from .cell_sources import KINDS, SOURCES
from .realism_filters import FILTERS, FilterInputs
from .settings import StudySettings


def save_npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


class StudyPlan:
    def __init__(self, settings: StudySettings, out: Path):
        self.settings, self.out = settings, Path(out)

    @cached_property
    def data(self) -> LabelledData:
        s = self.settings
        data = load_labelled(s.data, s.label_map, s.labels_csv, size=s.size)
        missing = [c for c in s.rare if c not in data.classes]
        if missing:
            raise ValueError(f"--rare {missing}: not a class of {s.data} (its classes: {data.classes}); pass "
                             "--label-map if the classes are named through one")
        if len(set(s.rare)) == len(data.classes):
            raise ValueError("--rare names every class: leave at least one common class out of it")
        return data

    @cached_property
    def groups(self) -> np.ndarray | None:
        """Each crop's group (``--group-by``: a slide, a patient), or None."""
        s = self.settings
        return crop_groups(self.data.crops, s.group_by, s.labels_csv).astype(str) if s.group_by else None

    def whole_split(self) -> dict[str, np.ndarray]:
        """The split before ``--keep``: whole groups held out for the test (``--test-groups``), else stratified by
        ``--split-seed``."""
        s = self.settings
        if s.test_groups:
            return group_split(self.stratify[0], self.groups, s.test_groups, s.split_seed)
        return stratified_split(self.stratify[0], s.split_seed)

    @cached_property
    def split(self) -> dict[str, np.ndarray]:
        """The study's split (``split.npz``): :meth:`whole_split`, the rare classes thinned by ``--keep`` in its
        training part (and, with ``--keep-validation``, in its validation part by the same share)."""
        path = self.out / "split.npz"
        if path.is_file():
            return self.check_scorable(read_split(str(path), len(self.data.y)))
        split = self.check_scorable(self.whole_split())
        y, classes, seed = self.data.y, self.data.classes, self.settings.split_seed
        thinned = thin_classes(split["train"], y, classes, list(self.settings.keep), seed)
        if self.settings.keep_validation:
            names = dict.fromkeys(spec.partition("=")[0] for spec in self.settings.keep)
            split["val"] = thin_classes(split["val"], y, classes, [
                f"{name}={validation_share(split, thinned, y, classes.index(name))}" for name in names
                if (y[split["val"]] == classes.index(name)).any()], seed)
        split["train"] = thinned
        save_npz(path, **split)
        return split

    def check_scorable(self, split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Refuse a rare class with no test cell in ``split`` (its F1 would read 0 in every arm, and the verdict
        would be about nothing), and held-out groups that hold every crop of a class (no arm could learn it)."""
        for name in self.settings.rare:
            k = self.classes.index(name)
            if not (self.data.y[split["test"]] == k).any():
                total = int((self.data.y == k).sum())
                if self.settings.test_groups and total:
                    why, fix = "none of them is in the test groups", "choose --test-groups that hold some of them"
                else:
                    why = (f"fewer than {MIN_EVAL_CROPS}, so all of them train and none is left to test on"
                           if total < MIN_EVAL_CROPS else "none of them falls in the test split")
                    fix = f"add labelled crops of it (at least {MIN_EVAL_CROPS}), or study another class"
                raise ValueError(f"--rare {name}: {total} labelled crop(s) in {self.settings.data}, {why}; the study "
                                 f"cannot score {name}: {fix}")
        untrained = [name for k, name in enumerate(self.classes)
                     if (self.data.y == k).any() and not (self.data.y[split["train"]] == k).any()]
        if untrained and self.settings.test_groups:  # only held-out groups can take every crop of a class
            raise ValueError(f"the test groups {list(self.settings.test_groups)} hold every crop of {untrained}: "
                             "leave one of their groups out of --test-groups to train on")
        return split

    def unthinned_split(self) -> Path:
        """``split-unthinned.npz``: the study's split before ``--keep`` (the fidelity scorer's and the ``unthinned``
        arm's)."""
        path = self.out / "split-unthinned.npz"
        if not path.is_file():
            save_npz(path, **self.whole_split())
        return path

    @cached_property
    def stratify(self) -> tuple[np.ndarray, list[str]]:
        """The labels the split is stratified by, and their classes: the data's, or ``--stratify-by``'s."""
        return stratification(self.data, self.settings.stratify_by)

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    def part_counts(self, part: str) -> dict[str, int]:
        """Crops per class in one part of the split (``train``, ``val`` or ``test``)."""
        y = self.data.y[self.split[part]]
        return {name: int((y == k).sum()) for k, name in enumerate(self.classes)}

    def train_counts(self) -> dict[str, int]:
        return self.part_counts("train")

    def needed(self) -> dict[str, int]:
        """Synthetic cells per rare class: ``--count``, else as many as bring it to the median training count of the
        other classes."""
        counts = self.train_counts()
        if self.settings.count is not None:
            return {name: self.settings.count for name in self.settings.rare}
        others = [n for name, n in counts.items() if name not in self.settings.rare]
        target = int(np.median(others))
        needed = {name: target - counts[name] for name in self.settings.rare}
        full = [name for name, n in needed.items() if n < 1]
        if full:
            raise ValueError(f"{full} already hold as many training cells as the other classes' median ({target}); "
                             "they are not rare here: pass --count N or thin them with --keep CLASS=N")
        return needed

    def rare_real(self, name: str) -> np.ndarray:
        """The real training cells of a rare class (after ``--keep``)."""
        train = self.split["train"]
        return self.data.crops.images[train[self.data.y[train] == self.classes.index(name)]]

    def describe(self) -> dict:
        """What the report states about the data: classes, training, validation and test counts, synthetic cells per
        class."""
        record = {"classes": self.classes, "rare": list(self.settings.rare), "train_counts": self.train_counts(),
                  "validation_counts": self.part_counts("val"), "test_counts": self.part_counts("test"),
                  "needed": self.needed()}
        write_json_atomic(self.out / "data.json", record)
        return record

    # -- the synthetic sets ------------------------------------------------------------------------------------------

    def copies(self, seed: int) -> Path:
        """Copies of the real rare training cells, drawn with replacement: as many as the generated arms add."""
        path = self.out / "synthetic" / "copies" / f"seed{seed}.npz"
        if path.is_file():
            return path
        rng, images, labels = np.random.default_rng(seed), [], []
        for name, n in self.needed().items():
            real = self.rare_real(name)
            images.append(real[rng.choice(len(real), n, replace=True)])
            labels += [name] * n
        return save_npz(path, images=np.concatenate(images), labels=np.array(labels))

    def generator_models(self, generator: str) -> dict[str, OnnxModel]:
        """The rare class → the bundle of ``generator`` that makes it (one class-conditional bundle, one single-class
        bundle per rare class, or a translator), each checked by its kind's source (:mod:`.cell_sources`)."""
        by_class: dict[str, OnnxModel] = {}
        for bundle in self.settings.generators[generator]:
            model = OnnxModel(bundle, kind=KINDS)
            for name in SOURCES[model.card.kind].classes(self, model, generator):
                self.check_generator(model, name)
                by_class.setdefault(name, model)
        missing = [c for c in self.settings.rare if c not in by_class]
        if missing:
            raise ValueError(f"--generator {generator}: no bundle makes {missing}; give a class-conditional bundle "
                             "with every rare class, or one bundle per rare class")
        guide = self.settings.sampling_of(generator).guide
        if guide:  # the autoguidance reference shapes the cells too: it must not have seen test cells either
            guide_model = OnnxModel(guide, kind="ddpm")
            for name in by_class:
                self.check_generator(guide_model, name)
        return by_class

    def check_generator(self, model: OnnxModel, name: str) -> None:
        """Whether ``model`` may make this study's cells of ``name`` (never having learnt from its test cells)."""
        SOURCES[model.card.kind].check(self, model, name)

    def filters_choose_from(self, generator: str) -> bool:
        """Whether a filtered arm of ``generator`` runs: only then does its pool hold more cells than an arm adds."""
        from .runner import study_arms

        return any(arm.generator == generator and arm.filter for arm in study_arms(self.settings))

    def pool_size(self, name: str, generator: str) -> int:
        factor = self.settings.pool_factor if self.filters_choose_from(generator) else 1.0
        return int(np.ceil(self.needed()[name] * factor))

    def generated_pool(self, generator: str, seed: int) -> Path:
        """The generator's cells of every rare class for this seed (``pool.npz``; TIFFs with provenance beside it, so
        an interrupted generation resumes batch by batch)."""
        root = self.out / "synthetic" / generator / f"seed{seed}"
        path = root / "pool.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as pool:
                labels = pool["labels"]
            if all((labels == name).sum() >= self.pool_size(name, generator) for name in self.settings.rare):
                return path
            # a filtered arm came later: the pool grows, its first cells (the unfiltered arm's) stay the same
        images, labels, provenance = [], [], {}
        for name, model in self.generator_models(generator).items():
            count = self.pool_size(name, generator)
            made, provenance[name] = SOURCES[model.card.kind].make(self, generator, model, name, count, seed, root)
            images.append(made.astype(self.data.crops.images.dtype, copy=False))
            labels += [name] * count
        write_json_atomic(root / "provenance.json", provenance)
        return save_npz(path, images=np.concatenate(images), labels=np.array(labels))

    def generated_set(self, generator: str, seed: int, filter_name: str | None, classifier: OnnxModel | None) -> Path:
        """The generated cells an arm adds: per rare class, the first ``needed`` of the pool, or of the pool's cells
        that ``filter_name`` keeps (fewer when it keeps fewer; ``kept-FILTER.json`` records how many it kept)."""
        root = self.out / "synthetic" / generator / f"seed{seed}"
        path = root / f"{filter_name or 'all'}.npz"
        if path.is_file():
            return path
        with np.load(self.generated_pool(generator, seed), allow_pickle=False) as pool:
            images, labels = pool["images"], pool["labels"]
        keep = np.ones(len(labels), bool)
        if filter_name is not None:
            keep = self.filter_keep(filter_name, images, labels, classifier, seed)
            write_json_atomic(root / f"kept-{filter_name}.json",
                              {name: {"generated": int((labels == name).sum()),
                                      "kept": int(keep[labels == name].sum())} for name in self.settings.rare})
        chosen = np.concatenate([np.flatnonzero(keep & (labels == name))[:n] for name, n in self.needed().items()])
        return save_npz(path, images=images[chosen], labels=labels[chosen])

    def filter_keep(self, filter_name: str, images: np.ndarray, labels: np.ndarray, classifier: OnnxModel,
                    seed: int) -> np.ndarray:
        from napari_cellsynth.core.classify import classify_crops

        real = self.data.crops.images[self.split["train"]]
        real_names = np.array(self.classes)[self.data.y[self.split["train"]]]
        real_features = run_to_end(classify_crops(classifier, real)).features.astype(np.float64)
        made = run_to_end(classify_crops(classifier, images))
        keep = np.zeros(len(labels), bool)
        for name in self.settings.rare:
            rows = labels == name
            inputs = FilterInputs(real_features, real_names, made.features[rows].astype(np.float64),
                                  made.probabilities[rows], self.classes, name, seed)
            keep[rows] = FILTERS[filter_name](inputs)
        return keep

    def extra_count(self, path: Path) -> dict[str, int]:
        with np.load(path, allow_pickle=False) as saved:
            labels = saved["labels"]
        return {name: int((labels == name).sum()) for name in self.settings.rare}


def validation_share(split: dict[str, np.ndarray], thinned: np.ndarray, y: np.ndarray, k: int) -> int:
    """How many of class ``k``'s validation cells keep the share that ``--keep`` left of its training cells (at least
    one): 34 of 344 training cells keep 11 of 115 validation ones."""
    kept, before, validation = ((y[part] == k).sum() for part in (thinned, split["train"], split["val"]))
    return max(1, int(round(validation * kept / before)))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
