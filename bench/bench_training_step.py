"""Training-step speed on this CPU: fp32 vs bf16 autocast, for the classifier and the DDPM U-Net.

    python bench/bench_training_step.py [--batch 64] [--repeats 6] [--out bench/results/training_step.json]

Forward + backward + optimizer step on random 3×40×40 batches (speed does not depend on the values),
median of ``--repeats`` steps after two warm-up steps, one process, torch's default threads.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from bench_training import timed_steps  # the same timed loop as the lever table (this folder, run as a script)
from napari_cellsynth.training.nets.resnet import ResNetClassifier
from napari_cellsynth.training.nets.unet import UNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training_step.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 40, 40)
    t = torch.randint(0, 1000, (args.batch,))
    c = torch.randint(0, 5, (args.batch,))
    y = torch.randint(0, 4, (args.batch,))
    cases = {
        "ResNet-18 width 32 (classifier)": (lambda: ResNetClassifier("resnet18", 3, 4, 40, 32), (x,),
                                            lambda out: torch.nn.functional.cross_entropy(out[0].float(), y)),
        "U-Net base 64 (DDPM)": (lambda: UNet(3, 4, 64, (1, 2, 2), image_size=40), (x, t, c),
                                 lambda out: out.float().square().mean()),
    }
    rows = []
    for name, (make, inputs, loss_fn) in cases.items():
        for bf16 in (False, True):
            seconds, _ = timed_steps(make(), inputs, loss_fn, bf16, args.repeats)
            rows.append({"model": name, "precision": "bf16 autocast" if bf16 else "fp32", "batch": args.batch,
                         "seconds_per_step": seconds, "images_per_s": args.batch / seconds})
    print(f"{'model':<34} {'precision':<14} {'s/step':>7} {'img/s':>7}")
    for r in rows:
        print(f"{r['model']:<34} {r['precision']:<14} {r['seconds_per_step']:7.3f} {r['images_per_s']:7.1f}")
    from napari_cellsynth.core.atomic import write_json_atomic

    write_json_atomic(args.out, {"cpus": os.cpu_count(), "torch": torch.__version__, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
