"""Command-line arguments of the trainers, checked before anything runs.

Every trainer parses with :func:`parse_checked`: a count (an ``int`` option) must be at least 1 —
``--sample-every 0`` would divide by zero hours later — unless 0 means "off" for it (``ZERO_OK``); a
rate or scale (a ``float`` option) must be 0 or more, a learning rate above 0 and a probability-like
fraction below 1.  A bad value stops the run at once with one line naming the option and the fix.
"""

from __future__ import annotations

import argparse

ZERO_OK = {"seed", "split_seed", "threads", "min_steps", "patience", "pool", "limit", "max_minutes",
           "lambda_identity", "weight_decay", "warmup", "dropout", "p_uncond", "ema"}
POSITIVE = {"lr", "learning_rate"}
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
