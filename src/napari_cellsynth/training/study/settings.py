"""What a study is: typed, written to ``OUT/settings.json`` on the first run and compared on every later one, so that
a resumed study never mixes runs made under other settings.  Seeds, arms, workers, the scheduler and threads may
change between runs, and generators may be added; nothing else."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from napari_cellsynth.core.atomic import write_json_atomic

# what may change between two runs of one study (they change which runs are made, not what a run holds)
RUN_ONLY = ("seeds", "arms", "workers", "scheduler", "threads")


@dataclass(frozen=True)
class SamplingOptions:
    """How one generator's cells are sampled beyond the study's sampler and steps: the guidance scale, the noise levels
    it acts at, and an autoguidance reference bundle (:class:`napari_cellsynth.core.denoisers.Guidance`)."""

    guidance: float = 1.0
    guidance_interval: tuple[float, float] | None = None
    guide: str | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "SamplingOptions":
        interval = values.get("guidance_interval")
        return cls(float(values.get("guidance", 1.0)), tuple(interval) if interval else None, values.get("guide"))


@dataclass(frozen=True)
class StudySettings:
    data: str
    rare: tuple[str, ...]
    label_map: str = "identity"
    labels_csv: str | None = None
    size: int | None = None
    keep: tuple[str, ...] = ()  # CLASS=N or CLASS=FRACTION: the rare classes thinned in the training part
    keep_validation: bool = False  # thin the validation part too, by each --keep class's training share
    generators: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name → bundles
    sampling: dict[str, SamplingOptions] = field(default_factory=dict)  # name → options (absent: plain conditioning)
    filters: tuple[str, ...] = ()
    count: int | None = None  # synthetic cells per rare class (None: up to the median of the other classes)
    pool_factor: float = 2.0  # generated cells per kept one, for the filtered arms
    sampler: str = "dpm_solver_pp_2m"
    sample_steps: int = 20
    split_seed: int = 0
    stratify_by: str | None = None  # another label map whose classes the split is stratified by
    group_by: str | None = None  # what groups the crops (a column, an .npz array, path:K): --test-groups' groups
    test_groups: tuple[str, ...] = ()  # whole groups (slides) held out for the test, instead of a stratified share
    steps: int = 1000
    width: int = 16
    batch_size: int = 32
    select_on: str = "macro-f1"  # the validation score that picks each classifier's checkpoint (its trainer's option)
    focused_n: int | dict[str, int] = 2  # the mixup arms' slots per batch: for every rare class, or per class
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    arms: tuple[str, ...] = ()
    workers: int = 1
    scheduler: str | None = None
    threads: int = 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> "StudySettings":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        for key in ("rare", "keep", "filters", "seeds", "arms", "test_groups"):
            if key in values:
                values[key] = tuple(values[key])
        if "generators" in values:
            values["generators"] = {k: tuple(v) for k, v in values["generators"].items()}
        if "sampling" in values:
            values["sampling"] = {k: SamplingOptions.from_dict(v) for k, v in values["sampling"].items()}
        return cls(**values)

    def focused(self) -> dict[str, int]:
        """Each rare class's slots in a minority-focused batch."""
        if isinstance(self.focused_n, dict):
            return {name: int(self.focused_n[name]) for name in self.rare}
        return {name: int(self.focused_n) for name in self.rare}

    def sampling_of(self, generator: str) -> SamplingOptions:
        return self.sampling.get(generator, SamplingOptions())

    def fixed(self) -> dict:
        """The settings every run of the study depends on (a generator by its bundles and sampling options)."""
        values = {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY + ("generators", "sampling")}
        values["test_groups"] = sorted(values["test_groups"])  # a set of groups: the order typed makes no other split
        return values | {"generator " + name: [list(bundles), self.to_dict()["sampling"].get(name)]
                         for name, bundles in self.generators.items()}

    def record(self, out: Path) -> None:
        """Write ``settings.json``, or check it against the one there."""
        self.check_resumes(out)
        write_json_atomic(out / "settings.json", self.to_dict())

    def check_resumes(self, out: Path) -> None:
        """Refuse, in one line, settings that differ from those of the study already in ``out`` (if any)."""
        path = out / "settings.json"
        if path.is_file():
            earlier = StudySettings.from_dict(json.loads(path.read_text())).fixed()
            # a generator may be added (its arms are new runs); one that is there keeps its bundles and options
            changed = sorted(k for k, v in self.fixed().items() if earlier.get(k) != v
                             and not (k.startswith("generator ") and k not in earlier))
            changed += sorted(k for k in earlier if k.startswith("generator ") and k not in self.fixed())
            if changed:
                raise ValueError(f"{out} holds a study with other {', '.join(changed)}; choose another --out (only "
                                 f"{', '.join('--' + k for k in RUN_ONLY)} may change, and generators be added, when "
                                 "a study is resumed)")
