"""Classifier bundles run as float32 and as their int8 variant (``cellsynth export int8``), in the same run.

    python bench/bench_precision.py --bundle zoo:classifier-jurkat4 --data CROPS.npz [--crops 10000] \
        [--out bench/results/precision.json]

For each precision, in its own process (ONNX Runtime's spinning threads slow whatever runs next in the same
process):

* **model**: crops/s of the session alone at batch 64 and 256 (median of repeats after a warm-up);
* **end to end**: ``cellsynth classify``'s work on ``--crops`` crops (the data's crops tiled): read the .npz,
  load and verify the bundle, normalise, classify, write the CSV; the interpreter's start and imports are not
  counted, so this is the rate a user's 10,000-cell slide sees once the program runs;
* the top-1 agreement of the two precisions' calls on the same crops.

The machine's CPU and its int8 dot-product feature are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from isolated import run_isolated  # this folder (run as a script)

REPO = Path(__file__).resolve().parents[1]


def tiled(data: str, n: int, out: Path) -> Path:
    with np.load(data, allow_pickle=False) as d:
        images = d["images"]
    reps = int(np.ceil(n / len(images)))
    np.savez(out, images=np.concatenate([images] * reps)[:n])
    return out


def one(bundle: str, crops: Path, precision: str, seconds: float) -> dict:
    from napari_cellsynth.core.atomic import write_csv_atomic
    from napari_cellsynth.core.classify import classify_crops
    from napari_cellsynth.core.datasets import read_crops
    from napari_cellsynth.core.images import prepare
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.runtime import OnnxModel

    started = time.perf_counter()
    model = OnnxModel(bundle, kind="classifier", precision=precision)
    loaded = time.perf_counter() - started
    read = read_crops(crops)
    result = run_to_end(classify_crops(model, read.images, batch_size=256))
    with tempfile.TemporaryDirectory() as tmp:
        write_csv_atomic(Path(tmp) / "out.csv", {"source": read.names, **result.table()})
    end_to_end = time.perf_counter() - started
    row = {"precision": model.runs_as.weights, "why": model.runs_as.why, "crops": len(read),
           "load_s": round(loaded, 3), "end_to_end_s": round(end_to_end, 3),
           "end_to_end_crops_per_s": round(len(read) / end_to_end), "predicted": result.predicted.tolist()}
    for batch_size in (64, 256):
        feeds = {model.input_names[0]: prepare(read.images[:batch_size], model.card)}
        for _ in range(3):
            model.run(feeds)
        times, t0 = [], time.perf_counter()
        while time.perf_counter() - t0 < seconds or len(times) < 5:
            t = time.perf_counter()
            model.run(feeds)
            times.append(time.perf_counter() - t)
        row[f"model_crops_per_s_b{batch_size}"] = round(batch_size / float(np.median(times)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="a classifier bundle with an int8 variant (or zoo:NAME)")
    parser.add_argument("--data", required=True, help="an .npz of real crops for the bundle (tiled to --crops)")
    parser.add_argument("--crops", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model setting")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "precision.json"))
    parser.add_argument("--one", nargs=2, metavar=("PRECISION", "CROPS_NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.bundle, Path(args.one[1]), args.one[0], args.seconds)))
        return
    from napari_cellsynth.core.precision import cpu_int8_dot, cpu_name

    with tempfile.TemporaryDirectory() as tmp:
        crops = tiled(args.data, args.crops, Path(tmp) / "crops.npz")
        rows = [run_isolated(__file__, ["--bundle", args.bundle, "--data", args.data, "--seconds", str(args.seconds),
                                        "--one", precision, str(crops)]) for precision in ("fp32", "int8")]
    agreement = float(np.mean(np.array(rows[0].pop("predicted")) == np.array(rows[1].pop("predicted"))))
    machine = {"cpu": cpu_name(), "int8_feature": cpu_int8_dot(), "cores": os.cpu_count(),
               "CELLSYNTH_THREADS": os.environ.get("CELLSYNTH_THREADS", "")}
    print(f"{args.bundle} on {machine['cpu']} ({machine['cores']} cores, int8 dot-product: "
          f"{machine['int8_feature'] or 'none'})")
    print(f"{'weights':<8} {'model b64':>10} {'model b256':>11} {'end to end':>11} {'load s':>7}   ({args.crops} crops)")
    for r in rows:
        print(f"{r['precision']:<8} {r['model_crops_per_s_b64']:>10} {r['model_crops_per_s_b256']:>11} "
              f"{r['end_to_end_crops_per_s']:>11} {r['load_s']:>7}")
    print(f"int8 / fp32: model b64 {rows[1]['model_crops_per_s_b64'] / rows[0]['model_crops_per_s_b64']:.2f}×, "
          f"end to end {rows[1]['end_to_end_crops_per_s'] / rows[0]['end_to_end_crops_per_s']:.2f}×; "
          f"top-1 agreement {agreement:.4f} on the {args.crops} crops")
    from napari_cellsynth.core.atomic import write_json_atomic

    write_json_atomic(args.out, {"bundle": args.bundle, "machine": machine, "rows": rows, "agreement": agreement})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
