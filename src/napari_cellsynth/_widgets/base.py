"""The pattern every dock widget follows: inputs, Run / Cancel, a progress bar and a status line."""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton

from .._workers import start_job
from ..core.jobs import Cancelled, CancelToken, cancellable


def chosen_path(field, what: str) -> Path:
    """The path in a FileEdit, or a ValueError asking for ``what`` when the field is blank.

    magicgui reads an empty field as ``Path('')``, which is '.', the directory napari was launched from: a
    blank (or '.') field is unset, never the working directory.  A ``zoo:NAME`` is returned as that name.
    """
    text = str(field.line_edit.value).strip()
    if text in ("", "."):
        raise ValueError(f"choose {what}")
    path = Path(text).expanduser()
    # a typed zoo:NAME comes back from a FileEdit made absolute (``/launch/folder/zoo:NAME``): the name is the zoo's
    return Path(path.name) if path.name.startswith("zoo:") else path


def chosen_bundle(field, what: str) -> Path:
    """A bundle in a folder field: a typed ``zoo:NAME`` (looked up when the job opens it) or an existing path."""
    path = chosen_path(field, what)
    if not str(path).startswith("zoo:") and not path.exists():
        raise ValueError(f"choose {what} ({path} does not exist), or pick one from the model zoo")
    return path


ZOO_NONE = "(or choose a folder below)"


def zoo_choices(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(label, zoo:NAME)`` for every bundle of ``kinds`` in the model zoo's registry (none when there is no
    registry); the label says when a bundle is not downloaded yet, and its size."""
    from ..core.bundle import BundleError
    from ..core.zoo import open_zoo

    try:
        zoo = open_zoo()
    except BundleError:
        return []
    choices = []
    for name, entry in sorted(zoo.entries.items()):
        if entry.kind in kinds:
            missing = zoo.where(name) == "not downloaded"
            size = f" {entry.size / 2**20:.1f} MB" if entry.size else ""
            choices.append((f"zoo:{name}" + (f" (downloads{size})" if missing else ""), f"zoo:{name}"))
    return choices


def zoo_picker(field, kinds: tuple[str, ...], label: str = "model zoo") -> ComboBox:
    """A drop-down of the zoo's bundles of ``kinds``: picking one puts its folder (checked by sha256) in
    ``field``, the widget's bundle folder field, so that everything downstream reads one field.  A bundle not
    downloaded yet is fetched in a thread worker, with a progress bar in napari's activity dock."""
    from ..core.bundle import BundleError
    from ..core.zoo import open_zoo, resolve

    listed: list = []  # the registry read once: napari resets choices on every layer change

    def choices(_):
        if not listed:
            listed.extend([(ZOO_NONE, ZOO_NONE), *zoo_choices(kinds)])
        return listed

    picker = ComboBox(choices=choices, value=ZOO_NONE, label=label)

    def failed(err):
        from napari.utils.notifications import show_error

        show_error(str(err))

    def picked(value):
        if value == ZOO_NONE:
            return
        try:
            zoo = open_zoo()
            name = value.removeprefix("zoo:")
            if zoo.where(name) != "not downloaded":
                field.value = str(resolve(value))
                return
        except BundleError as err:
            failed(err)
            return
        picker.download = download(zoo, name)

    def download(zoo, name):
        from napari.utils import progress

        bar = progress(total=zoo.entry(name).size or 0, desc=f"downloading zoo:{name}")

        def moved(done, total):
            bar.total = total
            bar.update(done - bar.n)

        def finished():
            bar.close()
            picker.download = None

        def done(folder):
            field.value = str(folder)
            listed.clear()
            picker.reset_choices()  # read again: the label loses "(downloads …)"
        def job():  # a generator function, so that napari runs it as a GeneratorWorker with progress
            return (yield from zoo.pull(name))
        return start_job(job, moved, done, failed, finished)

    picker.download = None  # the running download's worker, if any
    picker.changed.connect(picked)
    return picker


class StatusLabel(Label):
    """A status line that wraps instead of widening the dock: word wrap, no width of its own (a line too long
    to wrap is cut at the dock's edge), and the whole line as its tooltip."""

    def __init__(self, **kwargs):
        from qtpy.QtWidgets import QSizePolicy

        super().__init__(**kwargs)
        native = self.native
        native.setWordWrap(True)
        policy = QSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        policy.setHeightForWidth(True)
        native.setSizePolicy(policy)
        native.setMinimumWidth(1)

    @property
    def value(self):
        return Label.value.fget(self)

    @value.setter
    def value(self, value) -> None:
        Label.value.fset(self, value)
        self.native.setToolTip(str(value))


class JobWidget(Container):
    """A container whose Run button starts :meth:`make_job` in a worker; results go to :meth:`show_result`."""

    run_text = "Run"

    def __init__(self, viewer, inputs: list):
        self._viewer = viewer
        self.run_button = PushButton(text=self.run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = StatusLabel(value="")
        # scrollable: napari docks ``.native``, a scroll area here, so two tall widgets docked together scroll
        # instead of growing the window past the screen (issue 35)
        super().__init__(widgets=[*inputs, self.run_button, self.cancel_button, self.progress, self.status],
                         scrollable=True)
        self.worker = None
        self.last_error: Exception | None = None
        # set by Cancel; jobs that run long between two yields check it (see core.jobs)
        self.cancel_token = CancelToken()
        self.run_button.changed.connect(lambda: self.start())
        self.cancel_button.changed.connect(self.cancel)

    @property
    def native(self):
        """The scroll area around the widget: napari docks ``.native``, and magicgui's ``native`` of a scrollable
        container is the inner widget, which would be docked without its scroll area."""
        return self.root_native_widget

    @property
    def body(self):
        """The inner Qt widget, whose layout holds the fields (add plots and tables here)."""
        return self._widget._mgui_get_native_widget()

    # subclasses provide these two
    def make_job(self) -> Callable[[], Generator]:
        raise NotImplementedError

    def show_result(self, result) -> None:
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def start(self, make_job=None, show_result=None) -> None:
        """Run ``make_job()`` (default :meth:`make_job`) in a worker; its result goes to ``show_result``."""
        if self.busy:
            return
        self.last_error = None
        self._show = show_result or self.show_result
        self.cancel_token = CancelToken()  # before make_job, so that its job can hold this run's token
        try:
            job = (make_job or self.make_job)()
        except Exception as err:  # noqa: BLE001 - any input problem is shown, never raised into Qt
            self._error(err)
            return
        self.status.value = "running…"
        self.progress.value = 0
        self.run_button.enabled, self.cancel_button.enabled = False, True
        token = self.cancel_token

        def run():  # a generator function, so that napari runs it as a GeneratorWorker
            return (yield from cancellable(job(), token))
        self.worker = start_job(run, self._progress, self._done, self._error, self._finished)

    def cancel(self) -> None:
        """Ask the job to stop; the status says "cancelled" once it has (see :meth:`_finished`).

        Only the token is set: the job stops at its next yield (:func:`~napari_cellsynth.core.jobs.cancellable`
        closes it, which joins its helper threads) or sooner where a long step checks the token.  The worker's
        own ``quit`` is not used: it would leave the job's generator unclosed and its helper threads running."""
        if self.worker is not None:
            self.cancel_token.cancel()
            self.cancel_button.enabled = False
            self.status.value = "cancelling…"

    def _progress(self, done: int, total: int, message: str | None = None) -> None:
        """A job yields ``(done, total)``, or ``(done, total, message)`` to say which stage it is in."""
        if self.cancel_token.cancelled:
            return  # the status says "cancelling…" until the job has stopped
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)
        if message:
            self.status.value = message

    def _done(self, result) -> None:
        if self.cancel_token.cancelled:  # Cancel came after the last step: the result is not shown
            return
        self.progress.value = self.progress.max  # a finished job shows a full bar, whatever its last step said
        self._show(result)

    def _error(self, err: Exception) -> None:
        """An input problem or a job's error: on the status line and as a napari notification."""
        from napari.utils.notifications import show_error

        if isinstance(err, Cancelled):  # the job stopped on Cancel: not an error
            return
        self.last_error = err
        self.status.value = f"error: {err}"
        show_error(f"napari-cellsynth: {err}")

    def _finished(self) -> None:
        """The job's thread has ended (result, error or cancellation alike)."""
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        if self.cancel_token.cancelled:
            self.status.value = "cancelled"
