"""Command-line arguments of the trainers, checked before anything runs.

Every trainer parses with :func:`parse_checked`: a count (an ``int`` option) must be at least 1 —
``--steps 0`` would train nothing and fail at export — unless 0 means "off" for it (``ZERO_OK``: ``--sample-every 0``
makes no sample grids); a
rate or scale (a ``float`` option) must be 0 or more, a learning rate above 0 and a probability-like
fraction below 1.  A bad value stops the run at once with one line naming the option and the fix.

Experiments call a trainer as a function: ``train_classifier.train(train_classifier.config(data=…,
seed=1))``.  :func:`make_config` builds that config from the trainer's own parser (its defaults, its
required options, its choices and these checks), so a function call and a command line cannot drift.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

ZERO_OK = {"seed", "split_seed", "threads", "min_steps", "patience", "pool", "limit", "max_minutes",
           "lambda_identity", "weight_decay", "warmup", "dropout", "p_uncond", "ema", "snapshot_every",
           "sample_every"}
POSITIVE = {"lr", "learning_rate", "temperature"}
FRACTIONS = {"dropout", "p_uncond", "ema", "warmup", "shift"}


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Raise ``ValueError`` for the first numeric option whose value cannot make a run."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if value is None or action.type not in (int, float) or isinstance(value, list):
            continue
        option = action.option_strings[-1] if action.option_strings else action.dest
        if action.dest in POSITIVE and not value > 0:
            raise ValueError(f"{option} must be above 0, got {value}")
        if action.dest in FRACTIONS and not 0 <= value < 1:
            raise ValueError(f"{option} is a fraction in [0, 1), got {value}")
        if action.type is int and action.dest not in ZERO_OK and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
        if value < 0:
            raise ValueError(f"{option} must be 0 or more, got {value}")


def parse_checked(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    check_numbers(parser, args)
    return args


def make_config(parser: argparse.ArgumentParser, argv: list[str] = (), **settings) -> argparse.Namespace:
    """A trainer's settings for a function call: the parser's defaults, then ``argv`` (options passed
    through from an experiment's command line), then ``settings`` by their Python names
    (``label_map="jurkat4"``).  Unknown names, missing required options and values outside an option's
    choices raise ``TypeError`` / ``ValueError`` before anything runs."""
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(settings) - set(actions))
    if unknown:
        raise TypeError(f"{parser.prog}: no setting named {', '.join(unknown)}")
    given = dict(settings)
    missing = [d for d, a in actions.items() if a.required and d not in given and not set(a.option_strings) & set(argv)]
    if missing:
        raise TypeError(f"{parser.prog}: the settings {', '.join(missing)} are required")
    for dest, action in actions.items():  # satisfy argparse's required options; the settings win below
        if action.required and dest in given and not any(o in argv for o in action.option_strings):
            value = given[dest]
            argv = [*argv, action.option_strings[-1], *map(str, value if isinstance(value, (list, tuple)) else [value])]
    args = parser.parse_args(list(argv))
    for dest, value in given.items():
        choices = actions[dest].choices
        if choices is not None and value is not None:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if item not in choices:
                    raise ValueError(f"{parser.prog}: {dest} must be one of {list(choices)}, got {item!r}")
        setattr(args, dest, value)
    check_numbers(parser, args)
    return args


def entry_points(build_parser: Callable[[], argparse.ArgumentParser], train: Callable[[argparse.Namespace], Any]):
    """A trainer's two ways in, from its parser and its ``train``: ``config(argv=(), **settings)`` for
    function calls (:func:`make_config`) and ``main(argv)`` for the command line (:func:`parse_checked`,
    then ``train``)."""
    def config(argv: list[str] = (), **settings) -> argparse.Namespace:
        return make_config(build_parser(), argv, **settings)

    def main(argv: list[str] | None = None):
        return train(parse_checked(build_parser(), argv))

    return config, main


def add_experiment_shift(parser: argparse.ArgumentParser, section: str) -> None:
    """An experiment's ``--shift`` for the classifiers it trains: 0.1, the trainer's default when the experiment's
    results (``section`` of docs/results.md) ran, kept so that they reproduce; the trainer itself now leaves the
    shift off for runs of fewer than 50 passes over their crops (results §1b)."""
    parser.add_argument("--shift", type=float, default=0.1,
                        help=f"the classifiers' shift augmentation (0.1, the trainer's default when results {section} "
                             "ran; the trainer now leaves it off for runs of fewer than 50 passes)")
