"""Run a progress generator (``yield (done, total)`` … ``return result``) in a napari thread worker."""

from __future__ import annotations

from collections.abc import Callable, Generator


def start_job(job: Callable[[], Generator], on_progress: Callable[[int, int], None],
              on_done: Callable[[object], None], on_error: Callable[[Exception], None],
              on_finished: Callable[[], None]):
    """Start ``job()`` in a :class:`GeneratorWorker`; return the worker (``worker.quit()`` cancels it).

    ``on_finished`` runs after success, error and cancellation alike.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(job, _start_thread=False, _ignore_errors=True)  # on_error shows them
    worker.yielded.connect(lambda value: on_progress(*value))
    worker.returned.connect(on_done)
    worker.errored.connect(on_error)
    worker.finished.connect(on_finished)
    worker.start()
    return worker
