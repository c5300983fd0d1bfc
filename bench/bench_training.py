"""Classifier training speed on this CPU, lever by lever (issue 36, item 1): what one optimizer step of
`cellsynth train classifier` costs, and what 1,000 steps (the default schedule's floor) would take.

    python bench/bench_training.py [--size 128] [--repeats 5] [--out bench/results/training.json]

Every row changes one thing from the default (ResNet-18 width 64, batch 64, 3 channels, fp32, torch's threads,
contiguous memory) at the crop size a user's data gets (``--size``; 128 is where white-cell JPEGs such as BCCD land
under the automatic size).  A step is forward + backward + AdamW on random crops (speed does not depend on the
values), median of ``--repeats`` steps after two warm-up steps (torch.compile's compilation is reported apart).
Speed only: whether a lever holds macro-F1 is measured on real data sets, not here.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.training.nets.resnet import ResNetClassifier


def timed_steps(model, inputs: tuple, loss_fn, bf16: bool = False, repeats: int = 5) -> tuple[float, float]:
    """Forward, backward and an AdamW step of ``model`` on ``inputs``, ``repeats`` + 2 times: (median seconds per
    step after the first two, seconds the first two took, compilation included).  bench_training_step.py times its
    models with it too."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(*inputs)
        loss = loss_fn(out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times[2:])), float(sum(times[:2]))


def step_seconds(size: int, width: int = 64, batch: int = 64, channels_last: bool = False, threads: int = 0,
                 compiled: bool = False, bf16: bool = False, repeats: int = 5) -> tuple[float, float]:
    """(median seconds per step, seconds the first two steps took: compilation included)."""
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = ResNetClassifier("resnet18", 3, 5, size, width)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 5, (batch,))
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        step_model = torch.compile(model) if compiled else model
        return timed_steps(step_model, (x,), lambda out: torch.nn.functional.cross_entropy(out[0].float(), y), bf16,
                           repeats)
    finally:
        torch.set_num_threads(default_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it needs a C++ compiler)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training.json"))
    args = parser.parse_args()
    s = args.size
    levers = [("default (width 64, batch 64, fp32)", {}),
              (f"crops {s * 3 // 4} px instead of {s}", {"size": s * 3 // 4}),
              (f"crops {s // 2} px instead of {s}", {"size": s // 2}),
              ("width 32", {"width": 32}),
              ("channels-last", {"channels_last": True}),
              ("1 thread", {"threads": 1}),
              ("bf16 autocast", {"bf16": True}),
              ("batch 128 (half the steps)", {"batch": 128})]
    if not args.no_compile:
        levers.append(("torch.compile", {"compiled": True}))
    rows = []
    for name, change in levers:
        settings = {"size": s, **change}
        seconds, first = step_seconds(repeats=args.repeats, **settings)
        steps = 500 if settings.get("batch") == 128 else 1000
        rows.append({"lever": name, **settings, "seconds_per_step": seconds, "first_two_steps_s": first,
                     "steps": steps, "minutes_for_schedule": seconds * steps / 60})
    base = rows[0]["minutes_for_schedule"]
    print(f"{'lever':<36} {'s/step':>7} {'steps':>6} {'minutes':>8} {'speed-up':>9} {'first 2 steps (s)':>18}")
    for r in rows:
        print(f"{r['lever']:<36} {r['seconds_per_step']:7.3f} {r['steps']:6d} {r['minutes_for_schedule']:8.1f} "
              f"{base / r['minutes_for_schedule']:8.2f}× {r['first_two_steps_s']:18.1f}")
    from napari_cellsynth.core.atomic import write_json_atomic
    from napari_cellsynth.core.precision import cpu_name

    write_json_atomic(args.out, {"cpu": cpu_name(), "cpus": os.cpu_count(),
                                 "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
