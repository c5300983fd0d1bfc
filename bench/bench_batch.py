"""cellsynth batch: throughput, peak memory against stack length, threads vs a LocalCluster, and Cellpose's cost
through the batch path against Cellpose's own ``model.eval`` on the same model — all measured in one run.

    python bench/bench_batch.py --model CELLPOSE_MODEL --classifier BUNDLE [--frames 100 1000] \
        [--out bench/results/batch.json]

Stacks are real: pieces of the nuclei image (``../shared/data/nuclei/img2d.tif``) at many offsets, flipped and
rotated, one zlib-compressed page per frame.  Each batch run is a separate process (its peak RSS is its own); the
classifier gets the nuclei channel three times (the Jurkat bundle takes 3 channels).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PARTS = ("schedulers", "memory", "megapixel")
NUCLEI = Path(os.environ.get("CELLSYNTH_SHARED_DATA", REPO.parent / "shared" / "data")) / "nuclei" / "img2d.tif"


def write_stack(path: Path, frames: int, size: int) -> Path:
    """``frames`` real pieces of the nuclei image, size × size, written one page at a time (never all in memory)."""
    import tifffile

    image = tifffile.imread(NUCLEI)
    rng = np.random.default_rng(0)

    def pieces():
        for _ in range(frames):
            r, c = rng.integers(0, image.shape[0] - size), rng.integers(0, image.shape[1] - size)
            piece = np.rot90(image[r:r + size, c:c + size], int(rng.integers(4)))
            yield np.ascontiguousarray(piece[:, ::-1] if rng.integers(2) else piece)

    tifffile.imwrite(path, pieces(), shape=(frames, size, size), dtype=image.dtype, compression="zlib",
                     photometric="minisblack", metadata={"axes": "TYX"})
    return path


def one_run(args) -> dict:
    """Child process: one batch run; its wall time, frames and objects per second and peak RSS."""
    from napari_cellsynth.core.batch import BatchSettings, run_batch
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.segment import SegmentSettings

    settings = BatchSettings(SegmentSettings(args.model), args.classifier, classify_channels=(0, 0, 0))
    started = time.perf_counter()
    result = run_to_end(run_batch(args.stack, args.run_dir, settings, axes="TYX", scheduler=args.scheduler,
                                  workers=args.workers))
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # peak RSS of this process (the client, and the workers when they are threads) and of its largest child process
    # (a LocalCluster's worker process); a terminated child counts in RUSAGE_CHILDREN
    return {"scheduler": args.scheduler, "workers": args.workers, "frames": result.done, "failed": result.failed,
            "objects": result.objects, "seconds": round(seconds, 2), "frames_per_s": round(result.done / seconds, 2),
            "objects_per_s": round(result.objects / seconds, 1), "peak_rss_mb": round(own, 1),
            "peak_rss_worker_process_mb": round(workers, 1)}


def batch_in_child(stack: Path, run_dir: Path, args, scheduler: str) -> dict:
    command = [sys.executable, __file__, "--child", "--stack", str(stack), "--run-dir", str(run_dir), "--model",
               args.model, "--classifier", args.classifier, "--scheduler", scheduler, "--workers", str(args.workers)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_megapixel(args) -> list[dict]:
    """Seconds per megapixel: Cellpose's own eval, the batch path untiled, and the batch path in 512-pixel tiles."""
    import tifffile

    from napari_cellsynth.core.batch.segmentation import segment_plane
    from napari_cellsynth.core.segment import SegmentSettings, load_model

    model, settings = load_model(args.model), SegmentSettings(args.model)
    image = tifffile.imread(NUCLEI)
    rows = []
    for reps in (1, 2):
        frame = np.tile(image, (reps, reps))
        megapixels = frame.size / 1e6
        ways = {"cellpose model.eval": lambda: model.eval(frame, channels=[0, 0], min_size=settings.min_size),
                "batch, whole frame": lambda: segment_plane(model, frame, settings, None, None),
                "batch, 512 px tiles": lambda: segment_plane(model, frame, settings, 512, None)}
        times: dict[str, list] = {name: [] for name in ways}
        for _ in range(args.repeats):  # alternate, so that a busy moment of the machine hits them alike
            for name, run in ways.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        for name, values in times.items():
            rows.append({"frame": f"{frame.shape[0]}x{frame.shape[1]}", "way": name, "megapixels": round(megapixels, 3),
                         "s_per_megapixel": round(float(np.median(values)) / megapixels, 2),
                         "seconds": [round(v, 2) for v in values]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Cellpose model file")
    parser.add_argument("--classifier", required=True, help="classifier bundle (3 channels)")
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000], help="stack lengths for peak memory")
    parser.add_argument("--size", type=int, default=64, help="frame side for the memory runs")
    parser.add_argument("--throughput-frames", type=int, default=100)
    parser.add_argument("--throughput-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    parser.add_argument("--work", default="/tmp/cellsynth-bench-batch", help="scratch folder for stacks and runs")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "batch.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stack", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--scheduler", default="threads", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_run(args)))
        return 0
    import shutil

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "workers": args.workers}
    if "schedulers" in args.parts:
        long = write_stack(work / "long.tif", args.throughput_frames, args.throughput_size)
        results["schedulers"] = [batch_in_child(long, work / f"run-{s}", args, s) for s in ("threads", "processes")]
    if "memory" in args.parts:
        results["memory"] = []
        for frames in args.frames:
            stack = write_stack(work / f"stack{frames}.tif", frames, args.size)
            results["memory"].append({"frames": frames, "size": args.size,
                                      **batch_in_child(stack, work / f"run{frames}", args, "threads")})
    if "megapixel" in args.parts:
        results["per_megapixel"] = per_megapixel(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    if "schedulers" in results:
        print_schedulers(results)
    if "memory" in results:
        print_memory(results)
    if "per_megapixel" in results:
        print("\nCellpose seconds per megapixel")
        for r in results["per_megapixel"]:
            print(f"{r['frame']:<11}{r['way']:<24}{r['s_per_megapixel']:>8}")


def print_schedulers(results: dict) -> None:
    print(f"\nthroughput ({results['schedulers'][0]['frames']} frames of 128x128, {results['workers']} workers)")
    print(f"{'scheduler':<12}{'frames/s':>10}{'objects/s':>11}{'seconds':>9}{'peak RSS MB':>13}{'worker MB':>11}")
    for r in results["schedulers"]:
        print(f"{r['scheduler']:<12}{r['frames_per_s']:>10}{r['objects_per_s']:>11}{r['seconds']:>9}"
              f"{r['peak_rss_mb']:>13}{r['peak_rss_worker_process_mb']:>11}")


def print_memory(results: dict) -> None:
    print(f"\npeak memory against stack length ({results['memory'][0]['size']}x{results['memory'][0]['size']} frames, "
          "local threads)")
    print(f"{'frames':>8}{'objects':>9}{'frames/s':>10}{'objects/s':>11}{'peak RSS MB':>13}")
    for r in results["memory"]:
        print(f"{r['frames']:>8}{r['objects']:>9}{r['frames_per_s']:>10}{r['objects_per_s']:>11}{r['peak_rss_mb']:>13}")


if __name__ == "__main__":
    sys.exit(main())
