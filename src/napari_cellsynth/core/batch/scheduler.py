"""Where the frames run: local threads (default), local processes, or a dask.distributed cluster at an address.

:func:`run_tasks` keeps at most ``window`` tasks submitted at a time and hands results back as they finish, so the
client holds a bounded number of futures (and their small results) however long the stack is.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator

from ..jobs import Cancelled, CancelToken

LOCAL = ("threads", "processes")
LOW_LEVEL_LOG = 100  # events kept by each developers' log of a local cluster (distributed's default: 1,000)


def scheduler_name(scheduler: str | None) -> str:
    """``scheduler``, else ``$DASK_SCHEDULER_ADDRESS``, else local threads."""
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or "threads"


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: on a LocalCluster of ``workers`` threads (one worker) or processes (one thread
    each), or connected to the scheduler at an address (``tcp://host:8786``)."""
    import dask
    from distributed import Client, LocalCluster

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # not -v: importing distributed set its loggers to
        logging.getLogger("distributed").setLevel(logging.ERROR)  # INFO, and its start-up lines are not the user's
    name = scheduler_name(scheduler)
    if name in LOCAL:
        n = workers or default_workers()
        threads = name == "threads"
        # a worker's statistical profiler keeps an hour of sampled call stacks: over a long run that grew the peak
        # memory by about 16 KB per frame (results §9); the workers here run without it.  The developers' logs of the
        # scheduler, the workers and their comms keep the last 1,000 events each, some with a frame's whole task:
        # 100 bound them as well, well before a long stack's end (tests/test_batch_memory.py)
        with dask.config.set({"distributed.worker.profile.enabled": False,
                              "distributed.admin.low-level-log-length": LOW_LEVEL_LOG}):
            cluster = LocalCluster(n_workers=1 if threads else n, threads_per_worker=n if threads else 1,
                                   processes=not threads, dashboard_address=None, silence_logs=logging.ERROR,
                                   # no dashboard; its small HTTP server on any free port, so that a second
                                   # cluster (a study beside a batch) does not warn that 8787 is taken
                                   scheduler_kwargs={"dashboard_address": ":0"})
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
                cluster.close()
        return
    try:
        client = Client(name, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise ValueError(f"cannot reach the dask scheduler at {name!r} ({err}); start it (dask scheduler) or leave "
                         "--scheduler out to run on this machine") from err
    try:
        yield client
    finally:
        client.close()


def run_tasks(client, function: Callable, tasks: Iterable, window: int, cancel: CancelToken | None = None,
              on_lost: Callable | None = None, poll: float = 0.25) -> Iterator[dict | None]:
    """Yield ``function(task)``'s result for every task as it finishes, with at most ``window`` in flight; yield
    ``None`` every ``poll`` seconds while none finishes (so the caller can show progress and check Cancel).

    A task whose worker died is ``on_lost(task, error)``'s result.  Once ``cancel`` is set, the waiting tasks are
    cancelled and :class:`Cancelled` is raised (tasks already running on a worker finish on their own).
    """
    from distributed import wait

    queue = iter(tasks)
    pending: dict = {}

    def fill() -> None:
        while len(pending) < window:
            task = next(queue, None)
            if task is None:
                return
            pending[client.submit(function, task, pure=False)] = task

    fill()
    try:
        while pending:
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            try:
                finished, _ = wait(list(pending), timeout=poll, return_when="FIRST_COMPLETED")
            except TimeoutError:
                yield None
                continue
            for future in finished:
                task = pending.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # a lost worker: the frame is recorded as failed
                    if on_lost is None:
                        raise
                    result = on_lost(task, f"{type(err).__name__}: {err}")
                future.release()
                yield result
            fill()
    finally:
        if pending:
            client.cancel(list(pending))
