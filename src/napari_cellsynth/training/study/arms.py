"""A study's arms: what each one changes in the classifier's training, all else (split, test cells, recipe, seed)
being equal.

- ``real``: the real training cells only;
- ``balanced``: class-balanced sampling (every class drawn equally often: the rare cells repeated, nothing new);
- ``copies``: copies of the real rare cells, drawn with replacement, as many as the generated arms add;
- ``mixup``: paper 001's minority-focused batches with mixup and nonlinear mixup of the real rare cells;
- ``unthinned`` (only with ``--keep``): the real cells before ``--keep`` thinned the rare classes, on the same test
  cells: what more real cells of those classes would give, the room any way of adding cells has (never an alternative
  a user has, so never the verdict's cheap arm);
- ``generated-G``: generator G's cells of the rare classes added to the training cells;
- ``generated-G-F``: the same, only the cells that filter F keeps;
- ``generated-G-mixup``: minority-focused batches with G's cells in the generated slots, plus mixup and nonlinear
  mixup.
"""

from __future__ import annotations

from dataclasses import dataclass

CHEAP = ("balanced", "copies", "mixup")
BASELINE = "real"
UNTHINNED = "unthinned"


@dataclass(frozen=True)
class Arm:
    name: str
    sampling: str = "shuffle"  # or "balanced"
    extra: str | None = None  # "copies" or "generated": crops added to the training set
    generator: str | None = None
    filter: str | None = None  # a realism filter's name (generated cells only)
    focused_parts: tuple[str, ...] = ()  # minority-focused batches: "generated", "mixup", "nonlinear"
    split: str = "study"  # or "unthinned": the study's split before --keep thinned its training part

    @property
    def synthetic(self) -> bool:
        return self.generator is not None

    @property
    def needs_filter_classifier(self) -> bool:
        return self.filter is not None


def all_arms(generators: list[str], filters: list[str], thinned: bool = False) -> dict[str, Arm]:
    """Every arm a study can run for these generators and filters (and, where ``--keep`` thinned the rare classes,
    ``unthinned``), the cheap ones first."""
    arms = [Arm(BASELINE), Arm("balanced", sampling="balanced"), Arm("copies", extra="copies"),
            Arm("mixup", focused_parts=("mixup", "nonlinear"))]
    if thinned:
        arms.append(Arm(UNTHINNED, split="unthinned"))
    for name in generators:
        arms.append(Arm(f"generated-{name}", extra="generated", generator=name))
        arms += [Arm(f"generated-{name}-{f}", extra="generated", generator=name, filter=f) for f in filters]
        arms.append(Arm(f"generated-{name}-mixup", generator=name, focused_parts=("generated", "mixup", "nonlinear")))
    return {arm.name: arm for arm in arms}


def chosen_arms(available: dict[str, Arm], names: list[str] | None) -> list[Arm]:
    """The arms asked for (default: all), with ``real`` always among them (every comparison is paired with it)."""
    if not names:
        return list(available.values())
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"--arms {unknown}: choose from {list(available)}")
    wanted = {BASELINE, *names}
    return [arm for name, arm in available.items() if name in wanted]
