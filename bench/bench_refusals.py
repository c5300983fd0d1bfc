"""How long a command takes to refuse bad input, and napari's reader to load: each in a fresh process, as a user meets
them (a typo in a path, a count of 0), beside Cellpose's own command line refusing a missing folder.

    python bench/bench_refusals.py [--repeats 5] [--src OTHER_CHECKOUT/src] [--out bench/results/refusals.json]

``--src`` runs another checkout's source too, with this environment (each version through ``PYTHONPATH``, this
checkout's ``src`` and the other's): the two versions take turns, repeat by repeat, on the same machine in the same
run.  Every command must exit with 2 and one line on stderr; the bench stops otherwise.  The widget rows import a
widget's module after what a running viewer has loaded, as the Plugins menu does on napari's main thread.
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
from statistics import median

MISSING = "/nonexistent/cells.npz"
COMMANDS = {  # name: arguments after `python -m`; each refused in one line
    "train classifier, missing --data": ["napari_cellsynth.cli", "train", "classifier", "--data", MISSING,
                                         "--out", "{tmp}/c"],
    "train classifier, --steps 0": ["napari_cellsynth.cli", "train", "classifier", "--data", MISSING, "--steps", "0",
                                    "--out", "{tmp}/c"],
    "train ddpm, missing --data": ["napari_cellsynth.cli", "train", "ddpm", "--data", MISSING, "--out", "{tmp}/d"],
    "train bbdm, missing --data": ["napari_cellsynth.cli", "train", "bbdm", "--data", MISSING, "--out", "{tmp}/b"],
    "train cellpose, a folder holding a run": ["napari_cellsynth.cli", "train", "cellpose", "--root", "{tmp}",
                                               "--out", "{tmp}/run"],
    "study, missing --data": ["napari_cellsynth.cli", "study", "--data", MISSING, "--rare", "M", "--out", "{tmp}/s"],
    "classify, missing input": ["napari_cellsynth.cli", "classify", MISSING, "--model", "zoo:classifier-jurkat4",
                                "--out", "{tmp}/objects.csv"],
    "segment, missing image": ["napari_cellsynth.cli", "segment", MISSING, "--model", "zoo:cellpose-chromosomes",
                               "--out", "{tmp}/labels.tif"],
    "Cellpose's own CLI, missing --dir (reference)": ["cellpose", "--dir", "/nonexistent/folder"],
}
REPO = Path(__file__).resolve().parents[1]
# a module's import in a fresh process, after what a running viewer has loaded already where it is a widget's
IMPORTS = {
    "import napari's reader (napari_cellsynth._reader)": ("", "napari_cellsynth._reader"),
    **{f"open the {name} widget: import its module in a running napari": (
        "import napari, napari.viewer, napari.components, napari.layers, napari.qt, magicgui.widgets", module)
       for name, module in (("Batch", "napari_cellsynth._widgets.batch"),
                            ("UMAP filter", "napari_cellsynth._widgets.umap_filter"),
                            ("Classify", "napari_cellsynth._widgets.classify"),
                            ("Generate", "napari_cellsynth._widgets.generate"))},
}


def import_seconds(before: str, module: str, env: dict) -> float:
    script = f"{before}\nimport time\nt = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                check=True).stdout.strip().splitlines()[-1])


def timed(arguments: list[str], env: dict, tmp: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *[a.format(tmp=tmp) for a in arguments]], capture_output=True,
                          text=True, env=env, timeout=300)
    took = time.perf_counter() - started
    if arguments[0] != "cellpose" and (done.returncode != 2 or len(done.stderr.strip().splitlines()) != 1):
        raise SystemExit(f"{' '.join(arguments)}: exit {done.returncode}, stderr {done.stderr[-500:]!r}")
    return took


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", help="another checkout's src folder, run with this environment beside this one")
    parser.add_argument("--out", default="bench/results/refusals.json")
    args = parser.parse_args(argv)
    sources = {"this checkout": str(REPO / "src"), **({args.src: str(Path(args.src).resolve())} if args.src else {})}
    envs = {name: {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path} for name, path in sources.items()}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        import torch

        (Path(tmp) / "run").mkdir()  # a folder holding a run's checkpoint: refused without --resume
        torch.save({"epoch": 1}, Path(tmp) / "run" / "last.pt")
        measures = {**{name: lambda env, a=arguments: timed(a, env, tmp) for name, arguments in COMMANDS.items()},
                    **{name: lambda env, i=imported: import_seconds(*i, env) for name, imported in IMPORTS.items()}}
        for name, measure in measures.items():
            times = {source: [] for source in sources}
            for _ in range(args.repeats):  # the sources take turns
                for source, env in envs.items():
                    times[source].append(measure(env))
            rows[name] = {source: median(t) for source, t in times.items()}
            print(f"{name:<50} " + "  ".join(f"{t:6.2f} s" for t in rows[name].values()), flush=True)
    result = {"median_seconds": rows, "sources": sources, "repeats": args.repeats, "omp_num_threads": 1,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
