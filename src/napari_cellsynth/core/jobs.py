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


def shifted(job: Generator, offset: int, total: int):
    """Re-yield a sub-job's progress as ``(offset + done, total)``; return the sub-job's result.

    ``x = yield from shifted(job, done, total)`` runs one batch of a longer job.
    """
    while True:
        try:
            done, _ = next(job)
        except StopIteration as stop:
            return stop.value
        yield offset + done, total
