"""The first labels drawn with per-class colours (Classify's result): how long the viewer's main thread stalls, with
napari as it is and with the colour warm-up that the Classify, Batch and Segment widgets start when they open
(``napari_cellsynth._widgets.colour_warmup``, issue 35).

    xvfb-run -a python bench/bench_first_draw.py [--repeats 3] [--out bench/results/first_draw.json]

Each measurement is a fresh process with an empty numba cache, as on a fresh install.  The stall is the wall time
of the main-thread call that gives a labels layer its per-class colours and redraws it; with the warm-up, the main
thread's longest gap between 10 ms timer ticks while the warm-up compiles in the background is measured too (it
shares the GIL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def child(mode: str) -> dict:
    from napari.utils.colormaps import DirectLabelColormap
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    import napari

    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    labels = np.zeros((512, 512), np.int32)
    for k in range(1, 60):  # 59 objects, as a Classify of a metaphase's chromosomes gives
        r, c = divmod(k, 8)
        labels[r * 60 + 5:r * 60 + 40, c * 60 + 5:c * 60 + 40] = k
    layer = viewer.add_labels(labels, name="objects")
    app.processEvents()
    result = {"mode": mode}
    if mode == "warm-up":
        from napari_cellsynth._widgets.colour_warmup import warm_colour_mapping

        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(10)
        started = time.perf_counter()
        thread = warm_colour_mapping()
        while thread.is_alive():
            app.processEvents()
            time.sleep(0.002)
        timer.stop()
        result["warm_up_s"] = time.perf_counter() - started
        result["max_gap_during_warm_up_s"] = float(np.max(np.diff(ticks))) if len(ticks) > 1 else None
    colors = {None: "transparent", 0: "transparent"}
    colors.update({k: ["#e6194b", "#3cb44b", "#4363d8", "#f58231"][k % 4] for k in range(1, 60)})
    started = time.perf_counter()
    layer.colormap = DirectLabelColormap(color_dict=colors)  # what Classify does with its result
    layer.refresh()
    app.processEvents()
    result["first_draw_stall_s"] = time.perf_counter() - started
    viewer.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "first_draw.json"))
    parser.add_argument("--child", choices=["napari", "warm-up"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    runs = []
    for _ in range(args.repeats):
        for mode in ("napari", "warm-up"):
            with tempfile.TemporaryDirectory() as cache:  # an empty numba cache: a fresh install
                env = {**os.environ, "NUMBA_CACHE_DIR": cache}
                done = subprocess.run([sys.executable, __file__, "--child", mode], env=env, capture_output=True,
                                      text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {}
    for mode in ("napari", "warm-up"):
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {key: [round(r[key], 3) for r in mine] for key in mine[0] if key != "mode"}
    from napari_cellsynth.core.precision import cpu_name

    record = {"cpu": cpu_name(), "python": platform.python_version(),
              "runs": runs, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"{'':10} {'first draw stall (s)':>24} {'warm-up (s)':>14} {'longest gap while warming (s)':>32}")
    for mode, numbers in summary.items():
        stall = numbers["first_draw_stall_s"]
        warm = numbers.get("warm_up_s", ["-"])
        gap = numbers.get("max_gap_during_warm_up_s", ["-"])
        print(f"{mode:10} {str(stall):>24} {str(warm):>14} {str(gap):>32}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
