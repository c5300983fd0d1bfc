"""Command-line entry points that answer bad input with one line, not a traceback.

    if __name__ == "__main__":
        sys.exit(run_entry(main, "cellsynth train classifier"))

A user's mistake (a missing file, a bundle of the wrong kind, an option value that cannot work)
arrives as one of :data:`USER_ERRORS` and is printed as ``PROG: error: MESSAGE``, exit status 2;
``-v``/``--verbose`` anywhere on the command line shows the traceback instead.  Ctrl-C says how to
resume.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .bundle import BundleError
from .images import ImageInputError

USER_ERRORS = (BundleError, ImageInputError, ValueError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def run_entry(main: Callable[[list[str]], object], prog: str, argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool({"-v", "--verbose"} & set(argv))
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    try:
        main(argv)
    except USER_ERRORS as err:
        if verbose:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command with --resume (where it has one) to go on",
              file=sys.stderr)
        return 130
    return 0
