"""Paper 000's experiment: does adding DDPM-generated rare-class cells help the classifier?

    python -m training.experiment_ddpm --data ../shared/data/jurkat/jurkat_cells.npz --rare M \
        --seeds 0 1 2 --ddpm-steps 20000 --finetune-steps 4000 --epochs 25 --width 32 --out runs/exp-ddpm

For each seed (which fixes the split) and each setting — ``full`` (all real M cells) and
``cut10`` (M cut to 10 % of its training cells before anything is trained) — it trains:
1. the classifier on real data only;
2. a DDPM base model on the training split, fine-tuned on the rare class, exported to a bundle;
3. enough generated rare-class cells (DDIM) to balance the rare class with the largest class;
4. the classifier on real + generated cells.
Every step skips what is already on disk, so the experiment resumes.  Test metrics are always on
the real test split.  Writes ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.generate import GenerationSettings, generate
from napari_cellsynth.core.metrics import summarize_runs
from napari_cellsynth.core.runtime import OnnxModel

from . import train_classifier, train_ddpm
from .experiment_baseline import markdown_table

SETTINGS = {"full": [], "cut10": ["{rare}=0.1"]}


def classifier(out: Path, args, seed: int, keep: list[str], extra: list[str]) -> dict:
    if not (out / "metrics_test.json").is_file():
        train_classifier.main(["--data", args.data, "--label-map", args.label_map, "--seed", str(seed),
                               "--epochs", str(args.epochs), "--width", str(args.width), "--out", str(out),
                               "--resume", "--quiet", *(["--keep-fraction", *keep] if keep else []),
                               *(["--extra-train", *extra] if extra else [])])
    return json.loads((out / "metrics_test.json").read_text())


def ddpm_bundle(root: Path, args, seed: int, keep: list[str]) -> Path:
    from export.export_ddpm import export_ddpm

    bundle = root / "ddpm-bundle"
    if (bundle / "card.json").is_file():
        return bundle
    common = ["--data", args.data, "--label-map", args.label_map, "--split-seed", str(seed), "--seed", str(seed),
              "--base", str(args.ddpm_base), "--quiet", "--resume", *(["--keep-fraction", *keep] if keep else [])]
    train_ddpm.main([*common, "--steps", str(args.ddpm_steps), "--out", str(root / "ddpm-base")])
    train_ddpm.main([*common, "--steps", str(args.finetune_steps), "--init-from", str(root / "ddpm-base"),
                     "--only-classes", args.rare, "--out", str(root / "ddpm-rare")])
    return export_ddpm(root / "ddpm-rare", bundle)


def generated(root: Path, bundle: Path, real_run: Path, args, seed: int) -> Path:
    path = root / "generated.npz"
    if path.is_file():
        return path
    counts = json.loads((real_run / "config.json").read_text())["counts"]["train"]
    needed = max(counts.values()) - counts[args.rare]
    settings = GenerationSettings(args.rare, needed, "ddim", args.sample_steps, args.guidance, seed, batch_size=64)
    print(f"generating {needed} {args.rare} cells", file=sys.stderr)
    result = run_to_end(generate(OnnxModel(bundle, kind="ddpm"), settings))
    with atomic_open(path, "wb") as fh:
        np.savez(fh, images=result.images, labels=np.array([args.rare] * len(result.images)),
                 provenance=np.array(json.dumps(result.provenance)))
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m training.experiment_ddpm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map", default="jurkat4")
    parser.add_argument("--rare", default="M")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--ddpm-base", type=int, default=64)
    parser.add_argument("--ddpm-steps", type=int, default=20000)
    parser.add_argument("--finetune-steps", type=int, default=4000)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    runs: dict[str, list] = {}
    for setting in args.settings:
        keep = [spec.format(rare=args.rare) for spec in SETTINGS[setting]]
        for seed in args.seeds:
            root = out / setting / f"seed{seed}"
            real_run = root / "classifier-real"
            runs.setdefault(f"{setting}: real only", []).append(classifier(real_run, args, seed, keep, []))
            bundle = ddpm_bundle(root, args, seed, keep)
            images = generated(root, bundle, real_run, args, seed)
            runs.setdefault(f"{setting}: real + DDPM", []).append(
                classifier(root / "classifier-real+ddpm", args, seed, keep, [str(images)]))
    summary = {name: summarize_runs(metrics) for name, metrics in runs.items()}
    summary["command"] = "python -m training.experiment_ddpm " + " ".join(argv or sys.argv[1:])
    write_json_atomic(out / "summary.json", summary)
    tables = "\n".join(markdown_table(s, name) for name, s in summary.items() if name != "command")
    (out / "summary.md").write_text(tables)
    print(tables)
    return summary


if __name__ == "__main__":
    main()
