"""Progress bars for the command line and the trainers: tqdm's bar on a terminal; in a log (stderr is a file or a
pipe, as under ``nohup`` or a cluster's scheduler), plain lines instead, one at most every :data:`LOG_INTERVAL`
seconds and the last one when the work ends, with no carriage returns to garble the file."""

from __future__ import annotations

import sys

LOG_INTERVAL = 30.0  # seconds between a log's progress lines


class LogLines:
    """A stream that writes each state tqdm draws as a line of its own (tqdm redraws a line with ``\\r``)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(**options):
    """``tqdm(**options)`` drawn on stderr: a bar on a terminal, :class:`LogLines` otherwise."""
    from tqdm import tqdm

    stream = options.pop("file", None) or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        # maxinterval too: tqdm's monitor thread would otherwise redraw a slow bar every 10 s
        options = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL, "ncols": 100, **options}
        stream = LogLines(stream)
    return tqdm(file=stream, **options)
