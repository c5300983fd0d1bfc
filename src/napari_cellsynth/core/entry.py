"""Command-line entry points that answer bad input with one line, not a traceback.

    if __name__ == "__main__":
        sys.exit(run_entry(main, "cellsynth train classifier"))

A user's mistake (a missing file, a bundle of the wrong kind, an option value that cannot work)
arrives as one of :data:`USER_ERRORS` and is printed as ``PROG: error: MESSAGE``, exit status 2;
``-v``/``--verbose`` anywhere on the command line shows the traceback instead.  Ctrl-C says how to
resume.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .bundle import BundleError
from .images import ImageInputError

USER_ERRORS = (BundleError, ImageInputError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def quiet_readers(verbose: bool) -> None:
    """tifffile logs each damaged tag or page before it raises; the raised error is the one line a user sees, so
    its log is shown only with ``-v``."""
    if not verbose:
        logging.getLogger("tifffile").setLevel(logging.CRITICAL)


def run_entry(main: Callable[[list[str]], object], prog: str, argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool({"-v", "--verbose"} & set(argv))
    quiet_readers(verbose)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    out = _out_folder(argv)
    new_out = out is not None and not out.exists()
    try:
        main(argv)
    except USER_ERRORS as err:
        if new_out:  # a refused run leaves no empty --out folder behind (one with files in it stays)
            _remove_if_empty(out)
        if verbose:
            raise
        print(f"{prog}: error: {user_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command with --resume (where it has one) to go on",
              file=sys.stderr)
        return 130
    return 0


def user_message(err: BaseException) -> str:
    """The one line a user reads for one of :data:`USER_ERRORS` (an OS error about a path says what to change)."""
    if isinstance(err, (FileExistsError, NotADirectoryError)) and err.filename:
        return f"{err.filename} is a file where a folder is needed; give another path (e.g. another --out)"
    return str(err)


def _out_folder(argv: list[str]) -> Path | None:
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1])
    return None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only an empty folder; anything written stays
    except OSError:
        pass
