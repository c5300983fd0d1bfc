"""The UMAP manifold filter of paper 004 (sections 2.4, 3.4) as a scikit-learn outlier estimator.

It follows :class:`sklearn.covariance.EllipticEnvelope`'s contract: the constructor stores parameters
only (the minority class is one of them), ``fit(X, y)`` returns ``self``, fitted attributes end in ``_``,
``score_samples`` is higher for more typical samples (minus the Mahalanobis distance in UMAP space),
``decision_function`` is that score minus ``offset_`` (≥ 0 inside the ellipse), and ``predict`` answers
+1 (kept, an inlier) or -1 (dropped).  ``BaseEstimator`` gives ``get_params``, ``set_params`` and
``clone``.

``fit`` projects the classifier features of the real data to 2-D with UMAP (seeded), fits a
Gaussian mixture (2 components by default) to the minority class's points and keeps the
component of highest weight.  A synthetic sample is kept when its UMAP point lies inside that
component's confidence ellipse: squared Mahalanobis distance ≤ χ²₂ quantile of the level.

The level defaults to the component's weight in the mixture ("weight"), the paper's rule: a
component that explains 80 % of the rare class gets its 80 % ellipse.

UMAP places new points with ``transform``, which scatters them more than the fit places the
training points (in our tests, real minority samples sent through ``transform`` landed at twice the
Mahalanobis distance they had in the fitted embedding).
So by default (``mixture_on="transform"``) the mixture is fitted to the minority's points as
``transform`` places them, the same map that places the synthetic samples, so that a real sample
of the main component is kept at about the stated level.  ``mixture_on="embedding"`` is the paper's variant.
Any level in (0, 1) may be given instead, and :meth:`keep` re-decides for another level without refitting.

``fit`` takes two optional hooks: ``progress(done, total, message)`` is told how far the fit is (per
mille, through UMAP's stages and each of its epochs) and ``cancel`` (a
:class:`~napari_cellsynth.core.jobs.CancelToken`) is checked between stages and after every epoch.
Neither changes the result.

A GUI cannot rely on that alone: the first fit in a process spends most of its time in numba compiling
UMAP's and pynndescent's functions (measured on 7,232 real-sized samples: 30 s before the first epoch and
40 s more before ``transform`` places a point, against 0.5 s and 7 s once compiled), and a compiling thread
cannot be stopped (:mod:`.numba_cached` keeps umap-learn's compiled functions on disk, so that only a machine's first
process pays it in full).  :meth:`UmapGmmFilter.fit_in_process` therefore fits in a child process that stays up
between fits (so later fits are warm) and is killed on Cancel, whatever stage it is in.

Saving writes one ``.npz`` (plain arrays and a JSON config, read with ``allow_pickle=False``).
UMAP cannot be stored without pickling, so loading refits it on the saved features with the
saved seed and checks that the embedding is reproduced exactly before any new point is placed.
"""

from __future__ import annotations

import json
import re
import threading
import time
import weakref
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
from scipy.stats import chi2
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from .jobs import Cancelled, CancelToken, check_cancelled

Progress = Callable[[int, int, str], None]
# how the per-mille progress of a fit is shared out: the k-NN graph and the spectral layout (no progress
# of their own), the embedding's epochs, the minority's points placed by transform (epochs too), the mixture
FIT_STAGES = {"graph": (0, 150), "epochs": (150, 800), "transform": (800, 980), "mixture": (980, 1000)}


class _EpochHook:
    """A file for UMAP's tqdm bar: each write reports the epoch reached, and raises :class:`Cancelled`
    once the token is set (UMAP's epoch loop runs inside its tqdm iterator, so the fit stops there)."""

    # the bar as tqdm writes it with these settings: "\r12/500"
    tqdm_kwds = {"disable": False, "bar_format": "{n}/{total}", "mininterval": 0, "miniters": 1, "ascii": True,
                 "leave": False, "dynamic_ncols": False}

    def __init__(self, on_epoch: Callable[[int, int], None], cancel: CancelToken | None):
        self.on_epoch, self.cancel, self.raised = on_epoch, cancel, False

    def kwds(self) -> dict:
        return {**self.tqdm_kwds, "file": self}

    def write(self, text: str) -> int:
        if self.cancel is not None and self.cancel.cancelled and not self.raised:
            self.raised = True  # once: tqdm writes again while it closes
            raise Cancelled()
        found = re.findall(r"(\d+)/(\d+)", text)
        if found:
            self.on_epoch(int(found[-1][0]), int(found[-1][1]))
        return len(text)

    def flush(self) -> None:
        pass


class UmapGmmFilter(OutlierMixin, BaseEstimator):
    """Keep synthetic samples whose classifier features fall inside the real minority class's main
    Gaussian component in UMAP space.  ``minority`` names that class among ``fit``'s labels."""

    def __init__(self, minority: str | None = None, n_components: int = 2, confidence: float | str = "weight",
                 n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int | None = None, random_state: int = 0,
                 mixture_on: str = "transform"):
        self.minority = minority
        self.n_components = n_components
        self.confidence = confidence
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.mixture_on = mixture_on

    # -- fitting -------------------------------------------------------------------------------
    def _umap(self, tqdm_kwds: dict | None = None):
        from .numba_cached import import_umap

        return import_umap().UMAP(n_neighbors=self.n_neighbors, min_dist=self.min_dist, n_epochs=self.n_epochs,
                         random_state=self.random_state, n_components=2, tqdm_kwds=tqdm_kwds)

    def fit(self, X: np.ndarray, y, progress: Progress | None = None,
            cancel: CancelToken | None = None) -> "UmapGmmFilter":
        """Fit to the real data's features ``X`` and labels ``y``; ``progress`` and ``cancel`` as in the
        module's docstring."""
        real_features, real_labels, minority = X, y, self._minority()
        from sklearn.mixture import GaussianMixture

        def report(stage: str, fraction: float, message: str) -> None:
            if progress is not None:
                start, end = FIT_STAGES[stage]
                progress(int(start + (end - start) * min(max(fraction, 0.0), 1.0)), 1000, message)

        def epochs(stage: str, what: str):
            hook = _EpochHook(lambda n, total: report(stage, n / max(total, 1), f"{what}: epoch {n} of {total}"),
                              cancel)
            return hook.kwds() if (progress is not None or cancel is not None) else None

        features = self._check_matrix(real_features, "real features")
        labels = np.asarray(real_labels).astype(str)
        if len(labels) != len(features):
            raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
        members = labels == str(minority)
        needed = max(5, 3 * self.n_components)
        if members.sum() < needed:
            raise ValueError(f"minority class {minority!r} has {int(members.sum())} real sample(s); the "
                             f"{self.n_components}-component mixture needs at least {needed}: add real samples "
                             "or lower n_components")
        if self.mixture_on not in ("transform", "embedding"):
            raise ValueError(f"mixture_on must be 'transform' or 'embedding', got {self.mixture_on!r}")
        if self.confidence != "weight" and not 0 < float(self.confidence) < 1:
            raise ValueError(f"confidence must be 'weight' or a level in (0, 1), got {self.confidence!r}")
        check_cancelled(cancel)
        report("graph", 0, f"UMAP of {len(features)} real samples: neighbour graph and spectral layout")
        umap_ = self._umap(epochs("epochs", "UMAP embedding")).fit(features)
        check_cancelled(cancel)
        if self.mixture_on == "transform":
            umap_.tqdm_kwds = epochs("transform", f"placing the {int(members.sum())} {minority} samples")
            minority_points = np.asarray(umap_.transform(features[members]), np.float64)
            check_cancelled(cancel)
        else:
            minority_points = np.asarray(umap_.embedding_, np.float64)[members]
        report("mixture", 0, f"Gaussian mixture of {self.n_components} on the {minority} samples")
        gmm = GaussianMixture(self.n_components, covariance_type="full", random_state=self.random_state)
        gmm.fit(minority_points)
        umap_.tqdm_kwds = None
        self.umap_ = umap_
        self.features_, self.labels_, self.minority_ = features, labels, str(minority)
        self.embedding_ = np.asarray(umap_.embedding_, dtype=np.float64)
        self.minority_points_ = minority_points
        self._set_mixture(gmm.weights_, gmm.means_, gmm.covariances_)
        report("mixture", 1, "fitted")
        return self

    def _minority(self) -> str:
        if self.minority is None or str(self.minority) == "":
            raise ValueError("UmapGmmFilter needs the minority class: UmapGmmFilter(minority='M')")
        return str(self.minority)

    def fit_in_process(self, X: np.ndarray, y, cancel: CancelToken | None = None) -> Generator:
        """:meth:`fit` in a child process, as a progress generator (``(done, 1000, message)``); returns ``self``.

        Cancel kills the child within one poll (0.1 s), even while numba compiles; the next fit starts a new
        one.  ``transform`` of the fitted filter is asked of that child while it lives (see
        :meth:`transform_in_process`), and otherwise refits UMAP here (seeded: the same embedding)."""
        features = self._check_matrix(X, "real features")
        labels = np.asarray(y).astype(str)
        minority = self._minority()
        server = _UmapServer.get()
        try:
            state = yield from server.request(("fit", features, labels, self.get_params()), cancel)
        finally:
            server.release()
        self.features_, self.labels_, self.minority_ = features, labels, str(minority)
        self.embedding_, self.minority_points_ = state["embedding"], state["minority_points"]
        self.umap_ = _ServedUmap(self, server, state["fit_id"])
        self._set_mixture(state["weights"], state["means"], state["covariances"])
        return self

    def transform_in_process(self, features: np.ndarray, cancel: CancelToken | None = None) -> Generator:
        """:meth:`transform` in the child that fitted this filter (a progress generator, killed on Cancel);
        in this process when that child is gone or the filter was fitted here."""
        features = self._check_matrix(features, "features")
        umap_ = self.umap_
        if not isinstance(umap_, _ServedUmap) or not umap_.served():
            yield 0, 1
            return self.transform(features)
        umap_.server.acquire()
        try:
            points = yield from umap_.server.request(("transform", features), cancel)
        finally:
            umap_.server.release()
        return np.asarray(points, np.float64)

    def _set_mixture(self, weights, means, covariances) -> None:
        self.weights_, self.means_, self.covariances_ = (np.asarray(a, np.float64) for a in (weights, means, covariances))
        self.component_ = int(np.argmax(self.weights_))
        self.mean_ = self.means_[self.component_]
        self.covariance_ = self.covariances_[self.component_]
        self.level_ = float(self.weights_[self.component_] if self.confidence == "weight" else self.confidence)
        self.offset_ = -self.radius(self.level_)
        self.n_features_in_ = self.features_.shape[1]

    # -- using -------------------------------------------------------------------------------
    def _check_matrix(self, features, what: str) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2:
            raise ValueError(f"{what} must be N×D, got shape {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        if hasattr(self, "n_features_in_") and features.shape[1] != self.n_features_in_:
            raise ValueError(f"{what} have {features.shape[1]} columns but the filter was fitted on "
                             f"{self.n_features_in_}; use features from the same classifier bundle")
        return features

    def transform(self, features: np.ndarray, progress: Callable[[int, int], None] | None = None,
                  cancel: CancelToken | None = None) -> np.ndarray:
        """2-D UMAP coordinates of new feature rows (the real embedding stays fixed).

        ``progress(epoch, epochs)`` follows the placement's epochs; ``cancel`` is checked after each one."""
        check_is_fitted(self)
        features = self._check_matrix(features, "features")
        if progress is None and cancel is None:
            return np.asarray(self.umap_.transform(features), dtype=np.float64)
        self.umap_.tqdm_kwds = _EpochHook(progress or (lambda n, total: None), cancel).kwds()
        try:
            return np.asarray(self.umap_.transform(features), dtype=np.float64)
        finally:
            self.umap_.tqdm_kwds = None

    def mahalanobis(self, points: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of 2-D UMAP points to the kept component."""
        check_is_fitted(self)
        diff = np.asarray(points, np.float64) - self.mean_
        return np.sqrt(np.einsum("ni,ij,nj->n", diff, np.linalg.inv(self.covariance_), diff))

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Minus the Mahalanobis distance in UMAP space to the minority's main component: higher means
        more typical of the real minority class (as :meth:`EllipticEnvelope.score_samples`)."""
        return -self.mahalanobis(self.transform(X))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``score_samples - offset_``: ≥ 0 inside the ellipse at the fitted level, < 0 outside."""
        return self.score_samples(X) - self.offset_

    @staticmethod
    def radius(level: float) -> float:
        """Mahalanobis radius of the 2-D confidence ellipse at ``level``."""
        return float(np.sqrt(chi2.ppf(level, df=2)))

    def keep(self, distances: np.ndarray, level: float | None = None) -> np.ndarray:
        """Keep (True) or drop from Mahalanobis distances already computed, at ``level`` (default: the fitted
        level): a new level is decided without placing the points again."""
        check_is_fitted(self)
        return np.asarray(distances) <= self.radius(self.level_ if level is None else level)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """+1 for samples inside the ellipse (kept), -1 for those dropped."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def ellipse(self, level: float | None = None, points: int = 200) -> np.ndarray:
        """The ellipse outline in UMAP coordinates (points×2), for plots."""
        check_is_fitted(self)
        values, vectors = np.linalg.eigh(self.covariance_)
        angle = np.linspace(0, 2 * np.pi, points)
        circle = np.stack([np.cos(angle), np.sin(angle)], 1) * self.radius(self.level_ if level is None else level)
        return self.mean_ + circle * np.sqrt(values) @ vectors.T

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from .atomic import atomic_open

        path = Path(path)
        check_is_fitted(self)
        config = {"params": self.get_params(), "minority": self.minority_, "format": "cellsynth-umap-gmm-1"}
        with atomic_open(path, "wb") as fh:
            np.savez(fh, features=self.features_, labels=self.labels_.astype(str), embedding=self.embedding_,
                     minority_points=self.minority_points_,
                     weights=self.weights_, means=self.means_, covariances=self.covariances_,
                     config=np.array(json.dumps(config)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "UmapGmmFilter":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ValueError as err:
            raise ValueError(f"{path} holds pickled objects, which are refused") from err
        config = json.loads(str(arrays["config"]))
        if config.get("format") != "cellsynth-umap-gmm-1":
            raise ValueError(f"{path} is not a saved UMAP filter")
        self = cls(**{"minority": config["minority"], **config["params"]})
        self.features_, self.labels_, self.minority_ = arrays["features"], arrays["labels"], config["minority"]
        self.umap_ = self._umap().fit(self.features_)
        self.embedding_ = np.asarray(self.umap_.embedding_, dtype=np.float64)
        if not np.allclose(self.embedding_, arrays["embedding"], atol=1e-4):
            raise ValueError(f"{path}: refitting UMAP did not reproduce the saved embedding (another umap-learn or "
                             "numba version?); refit the filter on this machine")
        self.minority_points_ = arrays["minority_points"]
        self._set_mixture(arrays["weights"], arrays["means"], arrays["covariances"])
        return self


# -- fitting in a child process ------------------------------------------------------------------------

def _serve(conn) -> None:
    """The child process: fit and transform on request, progress sent as it goes (every 0.05 s at most)."""
    fitted, fit_id, last = None, 0, [0.0]

    def send_progress(done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if now - last[0] >= 0.05 or done >= total:
            last[0] = now
            conn.send(("progress", int(done), int(total), message))

    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if request[0] == "fit":
                _, features, labels, params = request
                fitted, fit_id = None, fit_id + 1
                fitted = UmapGmmFilter(**params).fit(features, labels, send_progress)
                conn.send(("done", {"fit_id": fit_id, "embedding": fitted.embedding_,
                                    "minority_points": fitted.minority_points_, "weights": fitted.weights_,
                                    "means": fitted.means_, "covariances": fitted.covariances_}))
            elif request[0] == "transform":
                if fitted is None:
                    raise RuntimeError("the UMAP process holds no fitted filter")
                points = fitted.transform(request[1], lambda n, of: send_progress(n, of, ""))
                conn.send(("done", points))
            elif request[0] == "fit_id":
                conn.send(("done", fit_id if fitted is not None else None))
        except Exception as err:  # noqa: BLE001 - the parent raises it again
            try:
                conn.send(("error", err))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("error", RuntimeError(f"{type(err).__name__}: {err}")))


def _serve_fd(fd: int) -> None:
    """The child's entry point: serve on the socket inherited as ``fd``."""
    from multiprocessing.connection import Connection

    _serve(Connection(fd))


def _end_process(process) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


class _UmapServer:
    """A child process for UMAP, started on first use and kept (warm) between fits; killed on Cancel."""

    _shared: "_UmapServer | None" = None
    _lock = threading.Lock()

    def __init__(self):
        self.process, self.conn, self.busy = None, None, False

    @classmethod
    def get(cls) -> "_UmapServer":
        """The shared server, or a new one when another job is using it; acquired for the caller."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            server = cls._shared if not cls._shared.busy else cls()
            server.busy = True
            return server

    def acquire(self) -> None:
        with self._lock:
            if self.busy:
                raise RuntimeError("the UMAP process is busy with another job; wait for it to finish")
            self.busy = True

    def release(self) -> None:
        with self._lock:
            self.busy = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """A fresh interpreter (not multiprocessing's spawn, which would run the user's main script again in the
        child, and not fork, in a process with Qt and worker threads), connected by a private socket pair."""
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        import napari_cellsynth

        ours, theirs = socket.socketpair()
        package_root = str(Path(napari_cellsynth.__file__).resolve().parents[1])
        code = (f"import sys; sys.path.insert(0, {package_root!r}); "
                "from napari_cellsynth.core.umap_filter import _serve_fd; _serve_fd(int(sys.argv[1]))")
        try:
            self.process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())],
                                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        weakref.finalize(self, _end_process, self.process)  # the child goes with its server

    def kill(self) -> None:
        if self.process is not None:
            _end_process(self.process)
            self.conn.close()
        self.process, self.conn = None, None

    def request(self, message: tuple, cancel: CancelToken | None, poll: float = 0.1) -> Generator:
        """Send ``message``; yield the child's progress while it works; return its answer or raise its error.

        On Cancel, and whenever the caller stops waiting (the generator is closed), the child is killed: no
        half-finished work goes on in the background."""
        if not self.alive:
            self.kill()
            self.start()
        answered = False
        try:
            self.conn.send(message)
            latest = (0, 1)
            while True:
                check_cancelled(cancel)
                if self.conn.poll(poll):
                    while self.conn.poll():
                        try:
                            reply = self.conn.recv()
                        except EOFError:
                            raise RuntimeError(f"the UMAP process ended unexpectedly (exit code "
                                               f"{self.process.poll()})") from None
                        if reply[0] == "progress":
                            latest = tuple(x for x in reply[1:] if x != "")
                        else:
                            answered = True
                            if reply[0] == "error":
                                raise reply[1]
                            return reply[1]
                yield latest
        finally:
            if not answered:
                self.kill()


class _ServedUmap:
    """Stands for the UMAP model that lives in the child process: ``transform`` is asked of the child while
    it holds this fit, and is otherwise done by a UMAP refitted here (seeded, so the same embedding)."""

    def __init__(self, owner: UmapGmmFilter, server: _UmapServer, fit_id: int):
        self.owner, self.server, self.fit_id, self.local = owner, server, fit_id, None
        self.embedding_ = owner.embedding_

    def served(self) -> bool:
        if self.local is not None or not self.server.alive or self.server.busy:
            return False
        self.server.acquire()
        try:
            from .jobs import run_to_end

            return run_to_end(self.server.request(("fit_id",), None)) == self.fit_id
        finally:
            self.server.release()

    def transform(self, features: np.ndarray) -> np.ndarray:
        if self.local is None and self.served():
            from .jobs import run_to_end

            self.server.acquire()
            try:
                return run_to_end(self.server.request(("transform", features), None))
            finally:
                self.server.release()
        if self.local is None:
            local = self.owner._umap().fit(self.owner.features_)
            if not np.allclose(local.embedding_, self.owner.embedding_, atol=1e-4):
                raise ValueError("refitting UMAP here did not reproduce the embedding fitted in the child "
                                 "process; refit the filter")
            self.local = local
        return self.local.transform(features)
