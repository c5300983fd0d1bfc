"""Each measured setting in a Python of its own: the benches run their own script again with ``--one …`` and read
the JSON line it prints last, so that one setting's memory, threads and caches never colour the next one's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def run_isolated(script: str, argv: list[str], pause: float = 1.0) -> dict:
    """``python script *argv`` with the checkout's package importable; its last printed line, parsed as JSON.  A
    pause after it lets the machine settle before the next setting."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, script, *argv], check=True, capture_output=True, text=True, env=env)
    time.sleep(pause)
    return json.loads(done.stdout.strip().splitlines()[-1])
