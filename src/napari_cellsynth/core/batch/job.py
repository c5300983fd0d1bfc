"""``run_batch``: every frame of every stack through Cellpose → crops → classifier, on dask, resumable; then the
optional generate and filter steps (:mod:`.augment`).

The job is a generator like the other core jobs: it yields ``(frames done, frames, message)`` and returns a
:class:`BatchResult`.  A rerun with the same input, settings and models skips every frame with a done-marker; a frame
or file that fails is recorded (``run.json``) and skipped.  ``objects.csv`` and ``run.json`` are rewritten (atomically)
from the markers whenever the job ends: finished, cancelled, closed or after an error.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import write_json_atomic
from ..images import ImageInputError
from ..jobs import Cancelled, CancelToken
from ..translate import KINDS as TRANSLATOR_KINDS
from .augment import augment_run, check_augment, generator_card
from .frame import BatchSettings, FrameTask, run_frame
from .markers import FrameMarkers, fingerprint
from .record import RECORD, RUN_KIND, bundle_identity, cellpose_identity, classifier_identity, versions
from .scheduler import dask_client, run_tasks, scheduler_name
from .sources import StackSource, describe, list_inputs, open_source
from .store import open_or_create, store_path
from .table import TABLE, table_header, write_table


@dataclass
class StackPlan:
    source: StackSource
    markers: FrameMarkers
    labels: str  # the labels array in the output store
    done: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)  # (t, z) → error, for frames not done
    objects: int = 0

    def record(self, result: dict) -> None:
        """A frame's outcome, as :func:`~.frame.run_frame` returns it."""
        frame = (result["t"], result["z"])
        if result["status"] == "done":
            self.done.add(frame)
            self.failed.pop(frame, None)
            self.objects += result["objects"]
        else:
            self.failed[frame] = result["error"]

    def status(self) -> dict:
        frames = len(self.source.frames)
        state = ("done" if len(self.done) == frames else "failed" if not self.done and len(self.failed) == frames
                 else "partial")
        failures = [{"t": t, "z": z, "error": error} for (t, z), error in sorted(self.failed.items())]
        return {**describe(self.source), "status": state, "fingerprint": self.markers.key, "frames": frames,
                "done": len(self.done), "failed": len(self.failed), "objects": self.objects,
                "labels": str(Path(self.labels).parents[2]), "failures": failures}


@dataclass
class BatchResult:
    status: str  # finished, cancelled or stopped
    run_dir: Path
    table: Path
    record: Path
    frames: int
    done: int
    failed: int
    objects: int
    stacks: list[dict]  # each stack's status, as in the record
    augment: dict | None = None  # what the generate and filter steps wrote, or their error; None: not asked for


def check_channels(source: StackSource, settings: BatchSettings, classifier_channels: int | None) -> None:
    channels = source.size("C")
    if not 0 <= settings.channel < channels:
        raise ImageInputError(f"{source.path} has {channels} channel(s) (axes {source.axes}); --channel "
                              f"{settings.channel} is not one of them")
    if classifier_channels is None:
        return
    chosen = settings.classify_channels or tuple(range(channels))
    if len(chosen) != classifier_channels or not all(0 <= c < channels for c in chosen):
        frames = f"; or, if they are frames, not channels, say so with --axes {source.axes.replace('C', 'T')}" \
            if "C" in source.axes and "T" not in source.axes else ""
        raise ImageInputError(f"{source.path} has {channels} channel(s) (axes {source.axes}) but the classifier takes "
                              f"{classifier_channels}; pick them with --classify-channels (e.g. "
                              f"{','.join(['0'] * classifier_channels)} to give it channel 0 {classifier_channels} "
                              f"times){frames}")


def plan_stack(source: StackSource, out: Path, settings: BatchSettings, model_ids: dict) -> StackPlan:
    """The stack's markers (by fingerprint), its labels store (opened for update) and what is done already."""
    store = store_path(out, source.name)
    resolved = Path(source.path).resolve()
    if resolved == store.resolve() or store.resolve() in resolved.parents:
        raise ImageInputError(f"the output {store} would overwrite the input {source.path}; choose another --out")
    key = fingerprint(source.identity(), settings.frame_dict(), model_ids)
    markers = FrameMarkers(out, source.name, key)
    t, z, (_, y, x) = source.size("T"), source.size("Z"), source.frame_shape
    labels = open_or_create(store, (t, z, y, x), settings.tile or max(y, x))
    done = markers.done()
    objects = sum(markers.read_done(*frame)["objects"] for frame in done)
    return StackPlan(source, markers, labels, done, markers.failed(), objects)


def plan_all(input_path, out: Path, settings: BatchSettings, axes: str | None, model_ids: dict,
             classifier_channels: int | None) -> tuple[list[StackPlan], list[dict]]:
    """Plans for the readable stacks; a record for each unreadable one (a lone input that fails raises instead)."""
    paths = list_inputs(input_path)
    plans, skipped = [], []
    for path in paths:
        try:
            source = open_source(path, axes)
            check_channels(source, settings, classifier_channels)
            plans.append(plan_stack(source, out, settings, model_ids))
        except ImageInputError as err:
            if len(paths) == 1:
                raise
            skipped.append({"name": path.stem, "path": str(path), "status": "unreadable", "error": str(err)})
    return plans, skipped


def frame_tasks(plans: list[StackPlan], settings: BatchSettings) -> Iterator[FrameTask]:
    for plan in plans:
        for t, z in plan.source.frames:
            if (t, z) not in plan.done:
                yield FrameTask(plan.source, t, z, settings, plan.labels, plan.markers)


def finished_frames(plans: list[StackPlan]) -> Iterator[tuple[dict, dict]]:
    """(frame, object columns) of every done frame, stack by stack and frame by frame, read from the markers."""
    for plan in plans:
        for t, z in plan.source.frames:
            if (t, z) in plan.done:
                yield {"stack": plan.source.name, "t": t, "z": z}, plan.markers.read_done(t, z)["columns"]


def job_steps(job: Generator, outcome: dict) -> Iterator[tuple]:
    """The steps of a progress generator; its return value goes into ``outcome``."""
    while True:
        try:
            yield next(job)
        except StopIteration as stop:
            outcome.update(stop.value)
            return


def eta_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def run_batch(input_path, out, settings: BatchSettings, axes: str | None = None, scheduler: str | None = None,
              workers: int | None = None, window: int | None = None,
              cancel: CancelToken | None = None) -> Generator[tuple, None, BatchResult]:
    """Process every frame of ``input_path`` (a TIFF, an OME-Zarr or a folder of them) into ``out``.

    ``scheduler``: ``threads`` (default), ``processes`` or a dask scheduler address (else ``$DASK_SCHEDULER_ADDRESS``);
    ``workers``: local threads or processes; ``window``: frames in flight at once (default two per worker thread).
    """
    out = Path(out)
    if out.is_file():
        raise ImageInputError(f"--out {out} is a file; give a folder for the run")
    model_ids = {"cellpose": cellpose_identity(settings.segment.model)}
    classes, classifier_channels, card = None, None, None
    if settings.classifier:
        model_ids["classifier"], card = classifier_identity(settings.classifier)
        classes, classifier_channels = list(card.classes), card.n_channels
    generator = generator_card(settings.augment)
    check_augment(settings.augment, generator, card)
    kind = generator.kind if generator is not None else None
    settings = replace(settings, translating=kind in TRANSLATOR_KINDS)
    generator_id = bundle_identity(settings.augment.generator) if kind else None
    if settings.translating:  # the frames' synthetic objects depend on it
        model_ids["generator"] = generator_id
    plans, skipped = plan_all(input_path, out, settings, axes, model_ids, classifier_channels)
    total = sum(len(p.source.frames) for p in plans)
    record = {"kind": RUN_KIND, "input": str(input_path), "out": str(out), "settings": settings.to_dict(), "axes": axes,
              "models": {**model_ids, **({"generator": generator_id} if kind else {})}, "versions": versions(),
              "scheduler": scheduler_name(scheduler),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    status, started, augment = "stopped", time.perf_counter(), None
    by_name = {plan.source.name: plan for plan in plans}
    to_run = total - sum(len(p.done) for p in plans)

    def progress(new: int) -> tuple:
        done = sum(len(p.done) for p in plans)
        failed, objects = sum(len(p.failed) for p in plans), sum(p.objects for p in plans)
        rate = new / max(time.perf_counter() - started, 1e-9)
        eta = f", about {eta_text((to_run - new) / rate)} left" if new else ""
        return done, total, f"{objects} objects, {failed} failed{eta}"

    def lost(task: FrameTask, error: str) -> dict:
        task.markers.write_failed(task.t, task.z, error)
        return {"stack": task.source.name, "t": task.t, "z": task.z, "status": "failed", "error": error}

    try:
        yield progress(0)
        new = 0
        with dask_client(scheduler, workers) as client:
            window = window or 2 * max(1, sum(client.nthreads().values()))
            for result in run_tasks(client, run_frame, frame_tasks(plans, settings), window, cancel, lost):
                if result is not None:
                    by_name[result["stack"]].record(result)
                    new += 1
                yield progress(new)
        if kind:
            augment = {"status": "running"}
            try:
                job = augment_run(out, plans, settings.augment, kind, settings.classifier, settings.batch_size, cancel)
                for _, _, message in job_steps(job, augment):
                    yield (*progress(new)[:2], message)
                augment["status"] = "done"
            except (ImageInputError, ValueError) as err:
                augment.update(status="failed", error=str(err))
        status = "finished"
    except Cancelled:
        status = "cancelled"
        raise
    finally:
        if status == "stopped" and cancel is not None and cancel.cancelled:  # a widget's Cancel closes the job
            status = "cancelled"
        if augment is not None and augment["status"] == "running":
            augment["status"] = status  # interrupted during the generate and filter steps
        rows = write_table(out / TABLE, table_header(classes), finished_frames(plans))
        stacks = [plan.status() for plan in plans] + skipped
        write_json_atomic(out / RECORD, {**record, "status": status, "seconds": round(time.perf_counter() - started, 3),
                                         "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                         "frames": total, "objects": rows, "stacks": stacks,
                                         **({"augment": augment} if augment is not None else {})})
    return BatchResult(status, out, out / TABLE, out / RECORD, total, sum(len(p.done) for p in plans),
                       sum(len(p.failed) for p in plans), rows, stacks, augment)
