"""umap-learn and Cellpose with their numba functions kept compiled on disk, so that only a machine's first process
compiles them.

pynndescent marks its numba functions ``cache=True``; umap-learn and Cellpose do not, so every new process (a napari
session, each ``cellsynth`` command, the UMAP filter's child process, each local process of a batch) compiles them
again.  Numba's own on-disk cache (what ``cache=True`` turns on) keeps the compiled code in the package's
``__pycache__``, or in numba's user-wide cache where site-packages is read-only, keyed on the source file and the
CPU, and later processes load it.  The code is the same, and so are the results (tests/test_numba_cached.py
compares them, bit for bit).

- :func:`import_umap` turns the cache on for umap-learn's functions after import (they compile on first call).
  Measured on 2 cores (AMD EPYC), 1,500 × 64 features, one thread: a new process's first fit 12.2 s → 3.0 s and
  its first ``transform`` 3.8 s → 0.2 s, the same as a process's second fit.
- :func:`import_cellpose` imports Cellpose with ``numba.njit`` and ``numba.jit`` caching by default, because
  Cellpose compiles its flow functions while it is imported: importing its models, metrics and utilities took
  6.8-7.1 s in a new process, and 3.3-3.5 s once cached.
  A function whose cache has no writable folder compiles as before.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import warnings
from functools import cache


@cache
def import_umap():
    """``import umap``, with every numba function of its modules cached on disk (once per process)."""
    import umap
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if name != "umap" and not name.startswith("umap."):
            continue
        for function in list(vars(module).values()):
            if isinstance(function, Dispatcher):
                try:
                    function.enable_caching()
                except RuntimeError:  # numba found no writable cache folder: this function compiles as before
                    pass
    return umap


@cache
def import_cellpose():
    """``import cellpose`` (its models, metrics and utilities) with its numba functions cached on disk; call it
    before anything else in the process imports Cellpose (once imported, Cellpose's functions are compiled)."""
    with _numba_caches_by_default():
        import cellpose.metrics
        import cellpose.models
        import cellpose.utils  # noqa: F401
    # Cellpose 3's mask dynamics build a sparse tensor, and torch warns about its invariant checks on every frame: a
    # line a user cannot act on, in every segment and batch run
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)
    return sys.modules["cellpose"]


@contextlib.contextmanager
def _numba_caches_by_default():
    import numba

    originals = {name: getattr(numba, name) for name in ("jit", "njit")}
    for name, original in originals.items():
        setattr(numba, name, _caching(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(numba, name, original)


def _caching(decorator):
    """``decorator`` (numba's jit or njit) with ``cache=True`` unless asked otherwise, and without it for a function
    whose cache finds no writable folder (numba raises RuntimeError then)."""

    def with_or_without(make):
        try:
            return make(True)
        except RuntimeError:
            return make(False)

    @functools.wraps(decorator)
    def caching(*args, **kwargs):
        if "cache" in kwargs:
            return decorator(*args, **kwargs)
        if args and inspect.isfunction(args[0]):  # @njit straight on a function
            return with_or_without(lambda on: decorator(*args, cache=on, **kwargs))
        return lambda function: with_or_without(lambda on: decorator(*args, cache=on, **kwargs)(function))

    return caching
