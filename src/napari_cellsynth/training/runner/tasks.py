"""Tasks run here, on local processes or on a dask cluster, with progress and an ETA: what the experiments' runner
(:mod:`.classifier_arms`) and ``cellsynth study`` both run their tasks with."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable


def format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def threads_per_task(threads: int, workers: int) -> int:
    """``threads`` when given, else the threads torch would use here (which honours ``OMP_NUM_THREADS``) shared
    among the ``workers``: an experiment under a cap, or beside other jobs, does not start more threads than it was
    given (two threads fighting over one free core made trainings 1.6× slower)."""
    if threads:
        return threads
    import torch

    return max(1, torch.get_num_threads() // max(1, workers))


def execute(function: Callable, tasks: Iterable, workers: int = 1,
            scheduler: str | None = None) -> Generator[object | None, None, None]:
    """``function(task)`` for every task, here (one worker, no scheduler), on ``workers`` local processes or on the
    dask cluster at ``scheduler``; yields each result as it finishes (``None`` now and then while none does)."""
    if scheduler is None and workers <= 1:
        for task in tasks:
            yield function(task)
        return
    from napari_cellsynth.core.batch.scheduler import dask_client, run_tasks

    with dask_client(scheduler or "processes", workers) as client:
        yield from run_tasks(client, function, tasks, window=max(1, workers) * 2)


def with_eta(finished: Iterable, done: int, total: int,
             describe: Callable[[object], str]) -> Generator[tuple[int, int, str], None, int]:
    """Count finished tasks (``None``: still waiting) into ``(done, total, message with ETA)``; return ``done``."""
    started, ran = time.monotonic(), 0
    for task in finished:
        if task is None:
            continue
        done, ran = done + 1, ran + 1
        eta = (time.monotonic() - started) / ran * (total - done)
        yield done, total, f"{describe(task)} done; about {format_eta(eta)} left"
    return done
