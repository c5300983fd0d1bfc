"""Long jobs are generators: they ``yield (done, total)`` and ``return`` their result.

A job is cancelled in two ways at once: the worker stops at its next ``yield``, and a step that runs
long between two yields (a UMAP fit, Cellpose on a large frame) checks a :class:`CancelToken` as it
goes and raises :class:`Cancelled`, so that the job really stops within a moment of Cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Generator


class Cancelled(Exception):
    """The job stopped because it was cancelled (not an error to report)."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)


class CancelToken:
    """A flag set from the GUI thread and checked from a job's thread."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` once :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled()


def check_cancelled(cancel: CancelToken | None) -> None:
    """``cancel.check()`` for an optional token."""
    if cancel is not None:
        cancel.check()


def run_to_end(job: Generator):
    """Drive a progress generator to its end and return its result (no GUI, no progress shown)."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def run_with_bar(job: Generator, bar):
    """Drive a progress generator (``yield (done, total[, message])``), moving a tqdm bar (a message becomes its
    postfix); return its result."""
    while True:
        try:
            done, total, *message = next(job)
        except StopIteration as stop:
            return stop.value
        bar.total = total
        bar.update(done - bar.n)
        if message:
            bar.set_postfix_str(str(message[0]), refresh=False)  # drawn at the bar's next update


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


def scaled(job: Generator, start: int, end: int, total: int, message: str | None = None) -> Generator:
    """Re-yield a sub-job's progress ``(done, of[, message])`` as ``(start + (end - start)·done/of, total,
    message)``: one stage of a longer job, on the longer job's scale.  Returns the sub-job's result."""
    while True:
        try:
            value = next(job)
        except StopIteration as stop:
            return stop.value
        done, of, *said = value
        text = said[0] if said else message
        position = start + int((end - start) * done / max(of, 1))
        yield (position, total, text) if text else (position, total)


def cancellable(job: Generator, cancel: CancelToken) -> Generator:
    """``job`` stopped at its next ``yield`` once ``cancel`` is set: the job is closed (its ``finally`` blocks
    run, helper threads are joined) and :class:`Cancelled` raised, so that whoever waits on it knows the job
    has really stopped."""
    try:
        while True:
            cancel.check()
            try:
                value = next(job)
            except StopIteration as stop:
                return stop.value
            yield value
    finally:
        job.close()


def in_thread(call, cancel: CancelToken | None = None, total: int = 1, poll: float = 0.1) -> Generator:
    """Run ``call(report)``, a blocking step, in a helper thread; yield its progress while it runs.

    ``report(done, total[, message])`` may be called from the step as it goes; its last value is yielded every ``poll``
    seconds (so the worker stays responsive to Cancel).  The step should check ``cancel`` where it can and
    raise :class:`Cancelled`; when the job is cancelled or closed, this waits for the step to end before it
    returns, so that nothing runs on after the job has stopped.  Returns the step's value, re-raises its error.
    """
    outcome: dict = {}
    latest: list[tuple] = [(0, total)]

    def report(done: int, of: int, *message: str) -> None:
        latest[0] = (int(done), int(of), *message)

    def target():
        try:
            outcome["value"] = call(report)
        except BaseException as err:  # noqa: BLE001 - re-raised in the job's thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name="cellsynth-step", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(poll)
            if cancel is not None and cancel.cancelled:
                thread.join()  # the step checks the token: it ends within one of its own steps
                break
            yield latest[0]
    finally:
        if thread.is_alive() and cancel is not None and cancel.cancelled:
            thread.join()
    if "error" in outcome:
        raise outcome["error"]
    check_cancelled(cancel)
    return outcome.get("value")


def default_of(settings_type: type, name: str):
    """The default of one field of a settings dataclass: what a CLI option and a widget field start at, written once
    (in the dataclass)."""
    import dataclasses

    field = {f.name: f for f in dataclasses.fields(settings_type)}[name]
    if field.default is dataclasses.MISSING:
        raise ValueError(f"{settings_type.__name__}.{name} has no default")
    return field.default
