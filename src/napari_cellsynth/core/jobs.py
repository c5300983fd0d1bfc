"""Long jobs are generators: they ``yield (done, total)`` and ``return`` their result."""

from __future__ import annotations

from collections.abc import Generator


def run_to_end(job: Generator):
    """Drive a progress generator to its end and return its result (no GUI, no progress shown)."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value
