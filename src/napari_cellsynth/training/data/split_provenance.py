"""Whether a generator learnt only from a split's training part: the check that `cellsynth study` and the
minority-oversampling experiment make before they add its cells to a classifier's training data.

A generator that saw test crops would inflate every arm it feeds.  Its card records how many training crops of each
class it learnt from, its split (seed, and the classes it was stratified by) where the trainer recorded it, and the
chain of starts it was fine-tuned from.  Each must be this split's.  A start that did not record its split (bundles
exported before it was, like the zoo's) must have learnt the stratification classes from as many crops of each as this
split's training part holds (or, for the class being checked, as many as the caller kept of it: a start thinned as
the caller thinned, e.g. the zoo's cut10 generator under a fine-tune of the same cut): a necessary condition, not a
sufficient one (counts do not tell two seeds' splits apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainingSplit:
    """The caller's split: its seed, the classes it is stratified by, and its training part's count of each of them
    before any thinning (``--keep``).  ``what`` names it in messages ("this study"); ``stratify_option`` is the
    caller's option that chooses the stratification classes (None where they are always the data's classes)."""

    seed: int
    classes: list[str]
    train_counts: dict[str, int] = field(default_factory=dict)
    what: str = "this split"
    stratify_option: str | None = None

    @classmethod
    def of(cls, seed: int, classes: list[str], train_labels, what: str,
           stratify_option: str | None = "--stratify-by") -> "TrainingSplit":
        """The split whose training part holds ``train_labels`` (indices into ``classes``, before any thinning)."""
        return cls(seed, list(classes), {c: int((train_labels == k).sum()) for k, c in enumerate(classes)}, what,
                   stratify_option)


def check_learnt_from_split(card, name: str, here: int, split: TrainingSplit, count_fix: str) -> None:
    """Raise ``ValueError`` (one line) unless ``card``'s generator, and every start it was fine-tuned from, learnt
    ``name`` from ``here`` training crops of ``split``.  ``count_fix`` ends the message when the counts differ."""
    training = card.training or {}
    recorded = (training.get("data", {}).get("train_counts") or {}).get(name)
    if recorded is not None and recorded != here:
        raise ValueError(f"generator '{card.name}' learnt from {recorded} crops of {name}, but {split.what}'s "
                         f"training part holds {here}: it was trained on another split or cut and may have seen test "
                         f"crops; {count_fix}")
    links = [(f"generator '{card.name}'", training.get("data", {}).get("split"), None)]
    start = training.get("init_from")
    while isinstance(start, dict):  # every link of a fine-tuning chain
        links.append((f"generator '{card.name}' was fine-tuned from {start['from']}, which", start.get("split"), start))
        start = start.get("init_from")
    for who, recorded_split, link in links:
        if recorded_split:
            _check_recorded(who, recorded_split, split)
        elif link is not None:
            _check_unrecorded_start(who, link, split, name, here)


def _check_recorded(who: str, recorded: dict, split: TrainingSplit) -> None:
    classes = recorded.get("classes")
    if recorded.get("seed") == split.seed and (classes is None or classes == split.classes):
        return
    option = f" and {split.stratify_option}" if split.stratify_option else ""
    raise ValueError(f"{who} learnt from split seed {recorded.get('seed')} stratified by "
                     f"{', '.join(classes or ['(not recorded)'])}, {split.what}'s is seed {split.seed} stratified by "
                     f"{', '.join(split.classes)}: it may have seen test crops; pass its --split-seed{option}")


def _check_unrecorded_start(who: str, start: dict, split: TrainingSplit, name: str, kept: int) -> None:
    if start.get("classes") != split.classes:
        option = f"; pass {split.stratify_option} with its label map" if split.stratify_option else \
            "; start from a generator of this data's classes"
        raise ValueError(f"{who} learnt other classes ({', '.join(start.get('classes') or [])}) than {split.what} "
                         f"is stratified by ({', '.join(split.classes)}): that split holds other crops, some of them "
                         f"in this one's test part{option}")
    for other, count in (start.get("train_counts") or {}).items():
        here = split.train_counts.get(other)
        if count and count != here and not (other == name and count == kept):
            raise ValueError(f"{who} learnt from {count} crops of {other}, but {split.what}'s training part holds "
                             f"{here}: it was trained on another split (it may have seen test crops) or on a thinned "
                             "part of this one; start from a generator trained on all of this split's training part")
