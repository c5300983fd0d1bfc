"""Files fetched over the network: checked by size and sha256, and moved into place only when whole.

Nothing here knows about bundles or the zoo; :mod:`core.zoo` uses it to fill its cache.  A download is a
progress generator (``yield (bytes done, bytes total)``), so the CLI drives it with a tqdm bar and a widget
runs it in a thread worker.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 16
TIMEOUT_S = 30


class DownloadError(ValueError):
    """A file could not be fetched, or what arrived is not the file that was expected."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Expected:
    """One file to fetch: where from, its name in the target folder, its sha256 and (when known) its size."""

    url: str
    name: str
    sha256: str
    size: int | None = None


def matches(path: Path, expected: Expected) -> bool:
    """Whether ``path`` is the expected file (size first: it is free)."""
    if not path.is_file() or (expected.size is not None and path.stat().st_size != expected.size):
        return False
    return sha256_of(path) == expected.sha256


def _fetch(expected: Expected, target: Path, done: int, total: int) -> Generator[tuple[int, int], None, int]:
    """Stream one URL into ``target``; refuse a short or altered file.  Returns the bytes written."""
    try:
        response = urllib.request.urlopen(expected.url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{expected.url} answered {err.code} {err.reason}") from err
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot reach {expected.url} ({reason})") from err
    written = 0
    digest = hashlib.sha256()
    with response, open(target, "wb") as fh:
        try:
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                yield done + written, total
        except (OSError, socket.timeout, http.client.HTTPException) as err:  # broke off: a truncated file
            raise DownloadError(f"the download of {expected.url} broke off after {written} bytes ({err})") from err
    if expected.size is not None and written != expected.size:
        raise DownloadError(f"{expected.url}: the download is truncated ({written} of {expected.size} bytes); "
                            "refused")
    if digest.hexdigest() != expected.sha256:
        raise DownloadError(f"{expected.url}: the downloaded file does not match its sha256; refused "
                            "(a corrupt or altered download)")
    return written


def download_folder(files: Sequence[Expected], folder: str | os.PathLike) -> Generator[tuple[int, int], None, Path]:
    """Make ``folder`` hold exactly ``files``, each checked by size and sha256.

    Every file is fetched into a temporary sibling folder, and that folder replaces ``folder`` only when all
    of them arrived whole: an interrupted or refused download leaves nothing behind, and a folder that is
    there is complete.  Files already in ``folder`` that match are copied, not fetched again.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    total = sum(f.size or 0 for f in files)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".part"))
    done = 0
    try:
        yield 0, total
        for expected in files:
            target = staging / expected.name
            if matches(folder / expected.name, expected):
                shutil.copy2(folder / expected.name, target)
                done += expected.size or target.stat().st_size
                yield done, total
                continue
            done += yield from _fetch(expected, target, done, total)
        if folder.exists():  # an older or partial copy: replaced as a whole
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
