"""Run a bundle's ONNX graph with ONNX Runtime.

Execution providers are tried in the order TensorRT → CUDA → CPU; what is not
installed or fails to start is dropped, and one log line says what runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .bundle import BundleError, Card, check_kind, read_card, verify_files

log = logging.getLogger("napari_cellsynth")

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA",
          "CPUExecutionProvider": "CPU"}


def cpu_threads() -> int:
    """``CELLSYNTH_THREADS``: CPU threads per ONNX Runtime session (0 or unset: ONNX Runtime's choice, one per
    core); set it when several jobs share a machine, so that they do not oversubscribe the cores."""
    value = os.environ.get("CELLSYNTH_THREADS", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ValueError(f"CELLSYNTH_THREADS must be a whole number of threads (0 = automatic), got {value!r}")
    return int(value)


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """The providers to try, best first: ``requested`` (or TensorRT → CUDA → CPU) ∩ ``available``.

    The CPU provider always closes the list, so a session can always be made.
    """
    wanted = list(requested) if requested else list(PROVIDER_ORDER)
    unknown = [p for p in wanted if p not in PROVIDER_ORDER]
    if unknown:
        raise ValueError(f"unknown execution provider(s) {unknown}; choose from {list(PROVIDER_ORDER)}")
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def requested_from_env() -> list[str] | None:
    """``CELLSYNTH_PROVIDERS=cpu`` (or ``cuda,cpu``) restricts the providers tried."""
    value = os.environ.get("CELLSYNTH_PROVIDERS", "").strip()
    if not value:
        return None
    names = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
             "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
    try:
        return [names[v.strip().lower()] for v in value.split(",") if v.strip()]
    except KeyError as err:
        raise ValueError(f"CELLSYNTH_PROVIDERS has unknown provider {err}; use tensorrt, cuda and/or cpu") from err


def make_session(model_path: str | os.PathLike, providers: Sequence[str], session_factory: Callable | None = None):
    """An InferenceSession on the first providers that start; returns (session, providers_in_use).

    A provider that is installed but cannot start (missing CUDA or TensorRT libraries) is
    dropped and the next one tried.
    """
    import onnxruntime as ort

    factory = session_factory or ort.InferenceSession
    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = cpu_threads()
    if threads:
        options.intra_op_num_threads = threads
    remaining = list(providers)
    failures: list[str] = []
    while remaining:
        try:
            session = factory(str(model_path), sess_options=options, providers=remaining)
        except Exception as err:  # ORT raises plain exceptions for provider failures
            if remaining == ["CPUExecutionProvider"]:
                raise BundleError(f"ONNX Runtime cannot load {model_path}: {err}") from err
            failures.append(f"{_SHORT[remaining[0]]} ({str(err).splitlines()[0][:120]})")
            remaining = remaining[1:]
            continue
        in_use = list(session.get_providers())
        skipped = [_SHORT[p] for p in PROVIDER_ORDER if p not in in_use]
        log.info("napari-cellsynth: %s runs on %s%s", Path(model_path).parent.name,
                 _SHORT.get(in_use[0], in_use[0]),
                 f" (not used: {', '.join(failures or skipped)})" if (failures or skipped) else "")
        return session, in_use
    raise BundleError(f"no ONNX Runtime execution provider could run {model_path}")


def planned_weights(card: Card, precision: str | None = None, providers: Sequence[str] | None = None):
    """The weights (:class:`precision.RunsAs`) a session for ``card`` runs on these providers (default: the ones
    installed, as ``CELLSYNTH_PROVIDERS`` restricts them), known before any session is made."""
    from .precision import choose_weights

    if providers is None:
        import onnxruntime as ort

        providers = choose_providers(ort.get_available_providers(), requested_from_env())
    return choose_weights(card, providers[0] == "CPUExecutionProvider", precision)


class OnnxModel:
    """A verified bundle with an ONNX Runtime session.

    ``outputs`` maps output names to arrays; batches are run ``batch_size`` at a time.  ``precision`` (auto, fp32,
    int8; default ``CELLSYNTH_PRECISION``, else auto) picks the weights (:mod:`.precision`); ``runs_as`` says which
    ran and why, for provenance.
    """

    def __init__(self, folder: str | os.PathLike, kind: str | None = None,
                 providers: Sequence[str] | None = None, verify: bool = True, precision: str | None = None):
        import onnxruntime as ort

        from .zoo import resolve

        self.folder = resolve(folder)  # a path, or zoo:NAME
        self.card: Card = read_card(self.folder)
        if kind is not None:
            check_kind(self.card, kind, str(self.folder))
        if verify:
            verify_files(self.folder, self.card)
        if "model.onnx" not in self.card.files:
            raise BundleError(f"bundle {self.folder}: card does not list model.onnx")
        wanted = choose_providers(ort.get_available_providers(), providers or requested_from_env())
        self.runs_as = planned_weights(self.card, precision, wanted)
        if self.runs_as.file not in self.card.files:
            raise BundleError(f"bundle {self.folder}: card does not list {self.runs_as.file}; re-export it")
        self.session, self.providers = make_session(self.folder / self.runs_as.file, wanted)
        if self.runs_as.weights != "fp32":
            log.info("napari-cellsynth: %s runs its %s weights (%s)", self.card.name, self.runs_as.weights,
                     self.runs_as.why)
        self._check_graph()

    def _check_graph(self) -> None:
        inputs = self.session.get_inputs()
        first = self.card.graph_image_shape(inputs, self.session.get_outputs(), self.folder)
        expected = [self.card.n_channels, *self.card.image_size]
        if len(first) != 4 or [d if isinstance(d, int) else None for d in first[1:]] != expected:
            raise BundleError(
                f"bundle {self.folder}: ONNX input shape {first} does not match its card "
                f"(N×{expected[0]}×{expected[1]}×{expected[2]}); the bundle is inconsistent, re-export it")
        self.input_names = [i.name for i in inputs]
        if self.input_names != list(self.card.graph_inputs):
            raise BundleError(f"bundle {self.folder}: its graph takes {self.input_names}, not the "
                              f"{list(self.card.graph_inputs)} its card says; re-export it")
        self.output_names = [o.name for o in self.session.get_outputs()]
        for name in self.card.output_names:
            if name not in self.output_names:
                raise BundleError(f"bundle {self.folder}: card names output '{name}' that the graph lacks")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, feeds)
        return dict(zip(self.output_names, values))

    def run_batches(self, batch: np.ndarray, batch_size: int = 64,
                    extra_feeds: Callable[[slice], dict] | None = None) -> Iterator[tuple[int, dict]]:
        """Yield ``(n_done, outputs)`` for consecutive slices of an already normalised batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(batch), batch_size):
            part = slice(start, min(start + batch_size, len(batch)))
            feeds = {self.input_names[0]: np.ascontiguousarray(batch[part], dtype=np.float32)}
            if extra_feeds is not None:
                feeds.update(extra_feeds(part))
            yield part.stop, self.run(feeds)
