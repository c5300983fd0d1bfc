"""The one training loop of the trainers (classifier, DDPM, BBDM, GAN, CycleGAN; Cellpose trains in its
own library's loop).

A trainer gives the loop one optimisation step (``one_step(step)``: draw a batch, compute the losses,
step the optimisers, update the EMA; return the losses) and the actions to run on a cadence
(checkpoint, sample grid, snapshot).  The loop counts steps from where a resumed run stopped, keeps the
history (every ``log_every`` steps: the mean losses, the seconds those steps took, and what
``extra_log(step)`` adds, e.g. the classifier's validation), drives the progress bar, stops at the
time budget (``max_minutes``: the current step becomes the last, so the last checkpoint and samples are
written) or when ``stop()`` says so (early stopping), and runs every action at its cadence and at the
last step.  It is a generator yielding ``(step, total)``, like every long job of the package; it
returns the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from napari_cellsynth.core.progress_bars import progress_bar


@dataclass
class Every:
    """Run ``action(step)`` every ``steps`` steps and at the last step (never for ``steps`` 0)."""

    steps: int
    action: Callable[[int], None]


def endless(batches: Iterable) -> Iterator:
    """Batches epoch after epoch (each pass over ``batches`` draws its own order)."""
    while True:
        yield from batches


def _mean(values: list) -> float:
    if isinstance(values[0], torch.Tensor):
        return float(torch.stack([v.detach().float() for v in values]).mean())
    return float(np.mean(values))


def training_loop(one_step: Callable[[int], dict], start: int, total: int, history: list[dict],
                  every: dict[str, Every], max_minutes: float = 0, log_every: int = 50,
                  describe: Callable[[dict], str] | None = None, extra_log: Callable[[int], dict] | None = None,
                  stop: Callable[[], bool] | None = None, quiet: bool = False,
                  unit: str = "step") -> Generator[tuple[int, int], None, list[dict]]:
    """Steps ``start`` … ``total`` (see the module's docstring); ``history`` is extended in place."""
    step, running, started = start, [], time.time()
    deadline = started + 60 * max_minutes if max_minutes else None
    bar = progress_bar(total=total, initial=step, disable=quiet, unit=unit)
    try:
        while step < total:
            losses = one_step(step)
            step += 1
            running.append(losses)
            bar.update()
            if deadline is not None and time.time() > deadline:
                total = step  # out of time: this step is the last; its checkpoint and samples are written
            last = step == total
            if step % log_every == 0 or last:
                entry = {"step": step, **{k: _mean([r[k] for r in running]) for k in running[0]},
                         "seconds": time.time() - started, **(extra_log(step) if extra_log else {})}
                history.append(entry)
                running, started = [], time.time()
                if describe is not None:
                    bar.set_description(describe(entry), refresh=False)
            for cadence in every.values():
                if cadence.steps > 0 and (step % cadence.steps == 0 or last):  # 0: never
                    cadence.action(step)
            yield step, total
            if stop is not None and stop():
                break
    finally:
        bar.close()
    return history
