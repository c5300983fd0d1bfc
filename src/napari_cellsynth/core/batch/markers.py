"""Done- and failed-markers: what says that a frame is finished, never the chunks in the output store.

Empty chunks are not written to a Zarr store, so a frame without objects leaves no trace there; and a chunk written by
a run that was killed says nothing about the frame's other chunks or its objects.  A frame is done when its marker
exists: a small JSON file written atomically after the frame's labels, holding the frame's rows of the objects table.
A frame of a run that generates or filters also
writes its arrays (``arrays/t…-z….npz``: features, synthetic objects) before its done-marker.  Markers live in a
folder named by the fingerprint of the input, the settings and the models, so that a rerun with
anything changed starts afresh, and a rerun with nothing changed resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_open, write_json_atomic


def fingerprint(*parts) -> str:
    """sha256 of the parts written as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class FrameMarkers:
    """The markers of one stack under one fingerprint: ``RUN/markers/<stack>-<fingerprint[:16]>/{done,failed}/``."""

    def __init__(self, run_dir: str | os.PathLike, stack: str, key: str):
        self.folder = Path(run_dir) / "markers" / f"{stack}-{key[:16]}"
        self.key = key

    @staticmethod
    def _name(t: int, z: int) -> str:
        return f"t{t:06d}-z{z:05d}.json"

    def done_path(self, t: int, z: int) -> Path:
        return self.folder / "done" / self._name(t, z)

    def failed_path(self, t: int, z: int) -> Path:
        return self.folder / "failed" / self._name(t, z)

    def arrays_path(self, t: int, z: int) -> Path:
        return self.folder / "arrays" / self._name(t, z).replace(".json", ".npz")

    def _listed(self, what: str) -> set[str]:
        folder = self.folder / what
        return {p for p in os.listdir(folder) if p.endswith(".json")} if folder.is_dir() else set()

    def done(self) -> set[tuple[int, int]]:
        """The (t, z) frames finished under this fingerprint."""
        return {(int(n[1:7]), int(n[9:14])) for n in self._listed("done")}

    def failed(self) -> dict[tuple[int, int], str]:
        """The frames whose last attempt failed (and that are not done since), with the error."""
        done = self._listed("done")
        return {(int(n[1:7]), int(n[9:14])): json.loads((self.folder / "failed" / n).read_text())["error"]
                for n in sorted(self._listed("failed") - done)}

    def write_done(self, t: int, z: int, record: dict) -> None:
        write_json_atomic(self.done_path(t, z), {"fingerprint": self.key, "t": t, "z": z, **record})
        self.failed_path(t, z).unlink(missing_ok=True)

    def write_failed(self, t: int, z: int, error: str) -> None:
        write_json_atomic(self.failed_path(t, z), {"fingerprint": self.key, "t": t, "z": z, "error": error})

    def read_done(self, t: int, z: int) -> dict:
        return json.loads(self.done_path(t, z).read_text())

    def write_arrays(self, t: int, z: int, arrays: dict[str, np.ndarray]) -> None:
        """The frame's arrays (written before its done-marker, so a done frame always has them)."""
        path = self.arrays_path(t, z)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)

    def read_arrays(self, t: int, z: int) -> dict[str, np.ndarray]:
        with np.load(self.arrays_path(t, z), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
