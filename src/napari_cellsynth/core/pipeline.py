"""The one seeded batch loop of every sampling job (generate, translate).

Batch ``b`` of a run draws all its randomness from ``numpy.random.default_rng([seed, b])``, so a run
is reproducible batch by batch: a resumed run that skips finished batches makes the same images as an
uninterrupted one, and the batch size alone decides which images share a generator.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from .jobs import shifted

# run_batch(b, n, rng) → a progress generator (calls done within the batch) returning the batch's images
BatchJob = Callable[[int, int, np.random.Generator], Generator]


def batch_sizes(count: int, batch_size: int) -> list[int]:
    return [min(batch_size, count - start) for start in range(0, count, batch_size)]


def seeded_batches(sizes: list[int], calls_per_batch: int, seed: int, run_batch: BatchJob,
                   skip_batch: Callable[[int], bool] | None = None,
                   first_batch: int = 0) -> Generator[tuple[int, int], None, list]:
    """Run ``run_batch`` for each batch with its own generator, ``default_rng([seed, first_batch + b])`` for batch
    ``b`` (``first_batch``: where these batches start in a longer run made in parts); yield ``(network calls done,
    total)``; return the batches' results in order (skipped batches left out)."""
    total, done, results = len(sizes) * calls_per_batch, 0, []
    yield 0, total
    for b, n in enumerate(sizes):
        if skip_batch is None or not skip_batch(b):
            rng = np.random.default_rng([seed, first_batch + b])
            results.append((yield from shifted(run_batch(b, n, rng), done, total)))
        done += calls_per_batch
        yield done, total
    return results
