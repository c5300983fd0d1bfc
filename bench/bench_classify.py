"""Classifier throughput: ONNX Runtime (the runtime the plugin uses) vs torch eager, same weights.

    python bench/bench_classify.py --run RUN_DIR --bundle BUNDLE [--batch-sizes 1 16 64 256] \
        [--out bench/results/classify.json]

Each backend runs in its own process (ONNX Runtime's spinning threads slow whatever runs
next in the same process), on real crops from the run's ``samples.npz`` tiled to the batch
size.  Reports crops/s (median of repeats after a warm-up), ms per batch and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
from isolated import run_isolated  # this folder (run as a script)

REPO = Path(__file__).resolve().parents[1]


def crops_for(run: Path, batch_size: int, normalization: dict) -> np.ndarray:
    from napari_cellsynth.core.images import normalize

    with np.load(run / "samples.npz", allow_pickle=False) as samples:
        images = samples["images"]
    reps = int(np.ceil(batch_size / len(images)))
    return normalize(np.concatenate([images] * reps)[:batch_size], normalization)


def time_backend(backend: str, run: Path, bundle: Path, batch_size: int, seconds: float) -> dict:
    from napari_cellsynth.core.runtime import OnnxModel

    model = OnnxModel(bundle, kind="classifier", providers=["CPUExecutionProvider"])
    batch = crops_for(run, batch_size, model.card.normalization)
    if backend == "onnxruntime":
        def step():
            model.run({"images": batch})
    else:
        import torch

        from napari_cellsynth.export.export_classifier import load_run

        _, net = load_run(run)
        tensor = torch.from_numpy(batch)

        def step():
            with torch.inference_mode():
                net(tensor)
    for _ in range(3):
        step()
    times, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 5:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"backend": backend, "batch_size": batch_size, "repeats": len(times),
            "ms_per_batch": 1000 * median, "crops_per_s": batch_size / median,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="training run folder (weights and real sample crops)")
    parser.add_argument("--bundle", required=True, help="the run's exported bundle")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per setting")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "classify.json"))
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = time_backend(args.one[0], Path(args.run), Path(args.bundle), int(args.one[1]), args.seconds)
        print(json.dumps(result))
        return
    rows = [run_isolated(__file__, ["--run", args.run, "--bundle", args.bundle, "--seconds", str(args.seconds),
                                    "--one", backend, str(batch_size)])
            for batch_size in args.batch_sizes for backend in ("onnxruntime", "torch")]
    print(f"{'backend':<12} {'batch':>5} {'ms/batch':>9} {'crops/s':>9} {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['backend']:<12} {r['batch_size']:>5} {r['ms_per_batch']:9.2f} {r['crops_per_s']:9.0f} "
              f"{r['peak_rss_mib']:12.0f}")
    from napari_cellsynth.core.bundle import read_card
    from napari_cellsynth.core.precision import cpu_name

    card = read_card(args.bundle)
    report = {"bundle": card.name, "arch": card.training.get("arch"), "width": card.training.get("width"),
              "input": card.input["size"], "channels": card.n_channels, "machine": {
                  "cpus": os.cpu_count(), "processor": cpu_name(),
                  "python": platform.python_version()}, "versions": card.versions, "rows": rows}
    from napari_cellsynth.core.atomic import write_json_atomic

    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
