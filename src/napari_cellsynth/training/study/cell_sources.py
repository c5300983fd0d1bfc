"""Where a study's generated cells come from, by bundle kind (the plan never branches on a kind: ``SOURCES`` does).

- :class:`SampledCells` (DDPM, GAN): cells sampled from noise, conditioned on the rare class; the bundle must have
  learnt from this study's training cells of the class (its split seed and count are checked).
- :class:`TranslatedCells` (BBDM, CycleGAN; paper 004, "per object"): each cell is a real training cell of another
  class whose condition channel (DAPI) the translator paints with the other channels, e.g. a normal chromosome's DAPI
  turned into a translocated chromosome's five fluorophore planes.  A translator's card records the slides it left
  out, not cells, so the study must hold whole groups out (``--group-by slide --test-groups …``, the groups named as
  the card names slides), every one of them among the slides the translator left out; the cells it paints come from
  the training groups it learnt from.  It must make the rare class (a BBDM fine-tuned with ``--only-translocations``,
  a CycleGAN trained with ``--target translocations``): a translator of any chromosome paints normal-looking ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_cellsynth.core.atomic import atomic_open
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.runtime import OnnxModel

if TYPE_CHECKING:
    from .plan import StudyPlan


class SampledCells:
    """DDPM and GAN bundles: the rare classes they were trained to make, sampled with the study's sampler."""

    def classes(self, plan: "StudyPlan", model: OnnxModel, generator: str) -> list[str]:
        if plan.settings.test_groups:
            raise ValueError(f"generator '{model.card.name}' ({model.card.kind}) learnt from a stratified split, and "
                             "this study holds whole groups out (--test-groups): give a BBDM or CycleGAN translator "
                             "trained with those slides excluded, or leave --group-by and --test-groups out")
        return [c for c in model.card.classes if c in plan.settings.rare]

    def check(self, plan: "StudyPlan", model: OnnxModel, name: str) -> None:
        """The bundle (and every start it was fine-tuned from) must have learnt from this study's training cells of
        the class, never from test cells (:mod:`training.data.split_provenance`), and make crops of the data's shape."""
        from napari_cellsynth.training.data.labelled_crops import stratified_split
        from napari_cellsynth.training.data.split_provenance import TrainingSplit, check_learnt_from_split

        card, seed = model.card, plan.settings.split_seed
        labels, classes = plan.stratify
        split = TrainingSplit.of(seed, classes, labels[stratified_split(labels, seed)["train"]], "this study")
        check_learnt_from_split(card, name, plan.train_counts()[name], split,
                                f"pass the --keep {name}=N it was trained with, or train it on this study's cells")
        size, channels = card.input.get("size"), len(card.channels or [])
        ours = tuple(plan.data.crops.images.shape[1:])
        if size and (tuple(size) != ours[-2:] or (channels and channels != ours[0])):
            raise ValueError(f"generator '{card.name}' makes {channels}×{size[0]}×{size[1]} crops, the data's are "
                             f"{'×'.join(map(str, ours))}: train the generator on this data (or pass --size)")

    def make(self, plan: "StudyPlan", generator: str, model: OnnxModel, name: str, count: int, seed: int,
             root: Path) -> tuple[np.ndarray, dict]:
        """``count`` cells of ``name`` (TIFFs with provenance under ``root``, so an interrupted run resumes batch by
        batch) and the generation's provenance."""
        from napari_cellsynth.core.generate import GenerationSettings
        from napari_cellsynth.core.outputs import generate_into, read_generated

        options = plan.settings.sampling_of(generator)
        settings = GenerationSettings(name, count, plan.settings.sampler, plan.settings.sample_steps, options.guidance,
                                      seed=seed, batch_size=32, guidance_interval=options.guidance_interval,
                                      guide=options.guide)
        record = run_to_end(generate_into(root / "tiff" / name, model, settings))
        return read_generated(root / "tiff" / name, record, count), record


class TranslatedCells:
    """BBDM and CycleGAN bundles: the study's one rare class, painted onto the condition channel of training cells of
    the other classes, on the groups the translator learnt from."""

    def classes(self, plan: "StudyPlan", model: OnnxModel, generator: str) -> list[str]:
        if len(plan.settings.rare) != 1:
            raise ValueError(f"--generator {generator}: a {model.card.kind.upper()} translator makes one class from "
                             f"the other classes' cells; give one --rare class (the study has {len(plan.settings.rare)})")
        if generator in plan.settings.sampling:
            raise ValueError(f"--generator {generator}: guidance, interval and guide apply to DDPM bundles, not to a "
                             f"{model.card.kind.upper()} translator; leave them out")
        return list(plan.settings.rare)

    def check(self, plan: "StudyPlan", model: OnnxModel, name: str) -> None:
        from napari_cellsynth.core.translate import TranslationSettings

        card, s = model.card, plan.settings
        excluded = set(card.trained.exclude_slides)
        made = card.classes[0] if card.classes else "any"
        if made != name:  # a translator of any chromosome paints normal-looking ones: they are not the rare class
            raise ValueError(f"translator '{card.name}' makes '{made}' cells, not {name}: fine-tune it on {name} only "
                             "(cellsynth train bbdm --only-translocations; cellsynth train cyclegan --target "
                             "translocations)")
        if not s.test_groups:
            raise ValueError(f"translator '{card.name}' records the slides it left out, not the cells it learnt from: "
                             "hold those slides out of the study with --group-by slide --test-groups SLIDE …")
        seen = [g for g in s.test_groups if g not in excluded]
        if seen:
            raise ValueError(f"translator '{card.name}' learnt from the test groups {seen} (it left out "
                             f"{sorted(excluded) or 'no slide'}): train it with --exclude-slides {' '.join(s.test_groups)}")
        self.channel_order(plan, model)
        TranslationSettings(steps=s.sample_steps).check(model)  # the bridge's steps, before hours of training
        size = tuple(card.image_size)
        if size != tuple(plan.data.crops.images.shape[-2:]):
            raise ValueError(f"translator '{card.name}' paints {size[0]}×{size[1]} crops, the data's are "
                             f"{'×'.join(map(str, plan.data.crops.images.shape[-2:]))}: train it on this data's crops")
        if not len(self.donors(plan, model)):
            raise ValueError(f"translator '{card.name}': no training cell of another class than {name} on the "
                             f"groups it learnt from (it left out {sorted(excluded)})")

    def channel_order(self, plan: "StudyPlan", model: OnnxModel) -> tuple[list[int], list[int]]:
        """The data's channels the translator reads (its condition, by name, else the first ones) and those it
        paints (the rest, in order)."""
        card = model.card
        condition = list(card.condition.channels or ["DAPI"])
        names = [str(c) for c in (plan.data.crops.channels or [])]
        total = plan.data.crops.images.shape[1]
        if total != len(condition) + card.n_channels:
            raise ValueError(f"translator '{card.name}' paints {card.n_channels} channel(s) from {len(condition)} "
                             f"({', '.join(condition)}); the data's crops have {total}: give crops of the condition "
                             f"channel(s) and the {card.n_channels} painted ones")
        source = [names.index(c) for c in condition] if all(c in names for c in condition) else list(range(len(condition)))
        return source, [k for k in range(total) if k not in source]

    def donors(self, plan: "StudyPlan", model: OnnxModel) -> np.ndarray:
        """Training cells of the other classes on the groups the translator learnt from (indices into the data)."""
        train = plan.split["train"]
        rare = [plan.classes.index(c) for c in plan.settings.rare]
        others = train[~np.isin(plan.data.y[train], rare)]
        return others[~np.isin(plan.groups[others], list(model.card.trained.exclude_slides))]

    def make(self, plan: "StudyPlan", generator: str, model: OnnxModel, name: str, count: int, seed: int,
             root: Path) -> tuple[np.ndarray, dict]:
        """``count`` painted cells: donors in an order drawn with ``seed`` (each donor once while there are enough; a
        donor drawn again gets other noise), translated with the study's ``--sample-steps`` bridge steps."""
        from napari_cellsynth.core.translate import TranslationSettings, provenance, translate_crops

        settings = TranslationSettings(steps=plan.settings.sample_steps, seed=seed, batch_size=32)
        # whole batches (batch b's noise is seeded by [seed, b]) of a donor order that only grows (each pass a new
        # permutation): a larger count later, a filtered arm's pool, starts with the same cells
        whole = -(-count // settings.batch_size) * settings.batch_size
        donors, rng = self.donors(plan, model), np.random.default_rng(seed)
        pick = np.concatenate([rng.permutation(donors) for _ in range(-(-whole // len(donors)))])[:whole]
        source, painted = self.channel_order(plan, model)
        images = plan.data.crops.images[pick]
        condition = images[:, source]
        planes = []
        for first in range(0, whole, PART):  # parts saved as they are made: a killed study resumes from the last one
            path = root / "translated" / f"{name}-seed{seed}-{first:06d}-{min(PART, whole - first)}.npz"
            if not path.is_file():
                part = condition[first:first + PART]
                made = run_to_end(translate_crops(model, part, part.max(axis=1) > 0, settings,
                                                  first_batch=first // settings.batch_size))
                with atomic_open(path, "wb") as fh:
                    np.savez(fh, planes=made.astype(images.dtype, copy=False))
            with np.load(path, allow_pickle=False) as saved:
                planes.append(saved["planes"])
        made = np.empty_like(images)
        made[:, source], made[:, painted] = condition, np.concatenate(planes)
        return made[:count], {"translation": provenance(model, settings), "donors": pick[:count].tolist()}


PART = 256  # translated cells saved at a time (whole batches of 32)

SOURCES = {"ddpm": SampledCells(), "gan": SampledCells(), "bbdm": TranslatedCells(), "cyclegan": TranslatedCells()}
KINDS = tuple(SOURCES)
