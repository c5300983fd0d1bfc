"""Diffusion sampling speed and quality: DDPM-1000, DDIM-50 and DPM-Solver++(2M)-20, ONNX Runtime vs torch.

    python bench/bench_generate.py --run runs/ddpm-jurkat4 --bundle bundles/ddpm-jurkat4 \
        --classifier bundles/jurkat4 --class M --count 64 [--clip-x0 3] [--out bench/results/generate.json]
    python bench/bench_generate.py --bundle zoo:ddpm-jurkat4-cut10-v --classifier zoo:classifier-jurkat4-features \
        --class M --reference val --backends onnxruntime diffusers      # from the bundles alone

``--run`` (the training run's folder) is needed only for the torch backends and ``--reference train``; without it
the data, label map and size policy come from the bundle's card and the split from ``--split-seed``, checked
against the card's recorded training counts.

The same EMA weights run through ONNX Runtime (the plugin's runtime) and torch eager, each
backend in its own process; both drive the same numpy samplers (``torch-bf16``: the network under bf16
autocast, scored for quality too, since it changes the numbers).  ``onnxruntime-int8``: the bundle's network
quantised to int8 (:func:`build_int8_graph`), scored for quality too.  ``--backends diffusers`` adds what a user
would otherwise pick: diffusers' ``DDIMScheduler`` and ``DPMSolverMultistepScheduler`` (order 2 or 3,
DPM-Solver++) driving the same ONNX model, with the bundle's schedule given to them as ``trained_betas``
(and their own zero-terminal-SNR rescaling), the same noise draws and the same batching.  Reports
images/s per sampler and backend, and FID/KID on the classifier bundle's ResNet features between the
generated images (ONNX Runtime and diffusers sides) and the real crops of that class.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from isolated import run_isolated  # this folder (run as a script)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"ddpm-1000": ("ddpm", 1000, 0.0), "ddim-50": ("ddim", 50, 0.0), "dpm-solver-20": ("dpm_solver_pp_2m", 20, 0.0),
            "ddim-100-eta1": ("ddim", 100, 1.0), "ddim-250-eta1": ("ddim", 250, 1.0),
            **{f"ddim-{n}": ("ddim", n, 0.0) for n in (10, 20, 100)},
            **{f"dpm2m-{n}": ("dpm_solver_pp_2m", n, 0.0) for n in (10, 20, 50, 100)},
            **{f"dpm3m-{n}": ("dpm_solver_pp_3m", n, 0.0) for n in (10, 20, 50, 100)}}  # (sampler, steps, η)
DEFAULT_SETTINGS = ["ddpm-1000", "ddim-50", "dpm-solver-20"]
DIFFUSERS_SAMPLERS = ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m")


def diffusers_generator(sampler: str):
    """A generator kind for ``core.generate.GENERATORS["ddpm"]`` whose sampling a diffusers scheduler drives: the same
    model, noise and batches as ours (no guidance, no thresholds: the schedulers' own defaults, x0 clipping off)."""
    from napari_cellsynth.core.generate import DiffusionGenerator

    sampling = diffusers_sampling(sampler)

    class DiffusersGenerator(DiffusionGenerator):
        def sample(self, settings, model, n, rng):
            return sampling(model, settings, n, rng)

    return DiffusersGenerator()


def diffusers_sampling(sampler: str):
    """``(model, settings, n, rng)`` → a progress generator of ``n`` images sampled by a diffusers scheduler around
    the bundle's ONNX model."""
    import torch
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from napari_cellsynth.core.schedules import KINDS

    def sampling(model, settings, n, rng):
        card = model.card
        schedule = card.ddpm.schedule
        common = {"num_train_timesteps": schedule.num_timesteps,
                  "trained_betas": KINDS[schedule.kind](schedule.num_timesteps, **schedule.params),
                  "prediction_type": "v_prediction" if schedule.prediction == "v" else "epsilon",
                  "rescale_betas_zero_snr": schedule.zero_terminal_snr, "timestep_spacing": settings.spacing_for(model)}
        if sampler == "ddim":
            scheduler = DDIMScheduler(clip_sample=False, **common)
        else:
            scheduler = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", final_sigmas_type="zero",
                                                    solver_order=3 if sampler == "dpm_solver_pp_3m" else 2, **common)
        scheduler.set_timesteps(settings.steps)
        x = torch.from_numpy(rng.standard_normal((n, card.n_channels, *card.image_size)).astype(np.float32))
        cls = np.full(n, card.classes.index(settings.class_name), dtype=np.int64)
        output = card.outputs["names"][0]
        for i, t in enumerate(scheduler.timesteps):
            predicted = model.run({"x": x.numpy(), "t": np.full(n, int(t), dtype=np.int64), "class": cls})[output]
            x = scheduler.step(torch.from_numpy(predicted), t, x).prev_sample
            yield i + 1, len(scheduler.timesteps)
        return x.numpy()

    return sampling


def bundle_card(args) -> dict:
    from napari_cellsynth.core.zoo import resolve

    return json.loads((resolve(args.bundle) / "card.json").read_text())


def network(args, card: dict):
    """The torch network: the run's EMA weights, or (for counting FLOPs, which weights do not change) the card's
    architecture with fresh weights when there is no run."""
    if args.run:
        from napari_cellsynth.export.export_ddpm import load_ddpm_run

        return load_ddpm_run(Path(args.run))[1]
    from napari_cellsynth.training.nets.unet import unet_from_net

    net = card["training"]["net"]
    return unet_from_net(net, len(card["channels"]), int(card["input"]["size"][-1])).eval()


def reference_setup(args) -> dict:
    """Where the real reference cells come from: the training run's config (``--run``), or the bundle's card and
    ``--split-seed``."""
    if args.run:
        config = json.loads((Path(args.run) / "config.json").read_text())
        return {"data": args.data or config["data"], "size": config.get("size"), "fit": config.get("fit"),
                "label_map": config["label_map"], "split_seed": config["args"]["split_seed"], "train_counts": None}
    if args.reference == "train":
        raise SystemExit("--reference train needs --run (the generator's train_index.npz); use --reference val, "
                         "the held-out cells")
    card = bundle_card(args)
    record = (card.get("training") or {}).get("data") or {}
    if not (args.data or record.get("source")) or "label_map" not in record:
        raise SystemExit(f"{args.bundle}'s card does not say what it was trained on; pass --run, or --data")
    return {"data": args.data or record["source"], "size": card["input"]["size"], "fit": card["input"].get("fit"),
            "label_map": record["label_map"], "split_seed": args.split_seed, "train_counts": record.get("train_counts")}


def check_split(y: np.ndarray, classes: list[str], setup: dict) -> None:
    """The data must be the generator's: each class has at least the training crops its card records, and the classes
    it kept whole have exactly that many (a thinned class, such as cut10's M, has fewer).  A stratified split has the
    same counts for every seed, so this catches other data or another label map, not another split seed."""
    from napari_cellsynth.training.data.labelled_crops import stratified_split

    if not setup["train_counts"]:
        return
    train = stratified_split(y, setup["split_seed"])["train"]
    counts = {name: int(np.sum(y[train] == k)) for k, name in enumerate(classes)}
    recorded = setup["train_counts"]
    if any(counts.get(name, 0) < n for name, n in recorded.items()) or \
            not any(counts.get(name) == n for name, n in recorded.items()):
        raise SystemExit(f"{setup['data']} gives training counts {counts}, but the generator learnt from {recorded}: "
                         "pass the data it was trained on (--data), or its run (--run)")


def compute_ceiling(args) -> dict:
    """The machine's convolution ceiling, measured: GFLOP/s of a large 3×3 convolution (batch 32, 64 → 64 channels,
    40 × 40, the U-Net's first level) in torch, fp32 and bf16 autocast, best of 5; and the network's FLOPs per image
    per call (torch's FlopCounterMode, a multiply-add counted as 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    card = bundle_card(args)
    net = network(args, card)
    size = card["input"]["size"]
    x = torch.zeros(1, len(card["channels"]), *size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x, torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    data = torch.randn(32, 64, 40, 40)
    flops = 2 * 32 * 64 * 64 * 9 * 40 * 40
    ceiling = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            conv(data)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                conv(data)
                times.append(time.perf_counter() - started)
        ceiling[name] = flops / min(times) / 1e9
    return {"network_gflop_per_image_call": counter.get_total_flops() / 1e9, "conv_ceiling_gflops": ceiling,
            "torch_threads": torch.get_num_threads()}


def int8_graph_path(args, setting: str) -> Path:
    return Path(args.scratch) / f"int8-generator-{setting}.onnx"


def build_int8_graph(args, setting: str) -> dict:
    """The bundle's network quantised to int8 (convolutions only, the first and last kept fp32), calibrated on the
    inputs the network gets while it makes 16 images of each class in fp32 with the setting's sampler, at a seed
    (``--seed`` + 1000) that the timed and scored images do not use.  Run in its own process, before the timed
    ones: the calibration's ONNX Runtime threads would slow a timed run in the same process."""
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.export.export_int8 import (generator_kept_fp32, quantize_int8, sampling_feeds,
                                                     weights_as_fp32)

    model = OnnxModel(args.bundle, kind="ddpm", providers=["CPUExecutionProvider"])
    sampler, steps, _ = SETTINGS[setting]
    graph = weights_as_fp32(model.folder / "model.onnx")
    feeds = sampling_feeds(model, 16, sampler, steps, args.seed + 1000)
    kept = quantize_int8(graph, feeds, int8_graph_path(args, setting), generator_kept_fp32(graph), op_types=["Conv"])
    return {"int8_graph": str(int8_graph_path(args, setting)), "calibration_batches": len(feeds), "kept_fp32": kept}


def run_one(backend: str, setting: str, args) -> dict:
    from napari_cellsynth.core import generate as generate_module
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.generate import GenerationSettings, generate
    from napari_cellsynth.core.runtime import OnnxModel

    gan = setting.startswith("gan:")
    model = OnnxModel(setting[4:] if gan else args.bundle, kind="gan" if gan else "ddpm",
                      providers=["CPUExecutionProvider"])
    if backend in ("torch", "torch-bf16"):
        import torch

        if not args.run:
            raise SystemExit(f"the {backend} backend runs the training run's weights: pass --run, or leave it out")
        net = network(args, model.card)

        def run(feeds):
            # torch-bf16: bf16 autocast (AMX/AVX-512 BF16 where the CPU has them), the sampler's arithmetic in fp32
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=backend == "torch-bf16"):
                out = net(*(torch.from_numpy(feeds[k]) for k in ("x", "t", "class")))
            return {model.card.outputs["names"][0]: out.float().numpy()}
        model.run = run  # same sampler code, torch network
    sampler, steps, eta = SETTINGS["ddim-20"] if gan else SETTINGS[setting]  # a GAN ignores the sampler
    if backend == "onnxruntime-int8":  # the graph build_int8_graph wrote, in this process's own session
        from napari_cellsynth.core.runtime import make_session

        model.session = make_session(int8_graph_path(args, setting), ["CPUExecutionProvider"])[0]
    if backend == "diffusers":
        if sampler not in DIFFUSERS_SAMPLERS or eta or args.guidance != 1 or args.clip_x0 or args.threshold:
            raise SystemExit(f"diffusers rows: DDIM (η 0) and DPM-Solver++ 2M/3M only, without guidance or "
                             f"thresholds; leave {setting} out or drop the diffusers backend")
        generate_module.GENERATORS["ddpm"] = diffusers_generator(sampler)  # same model, noise and batches
    class_name = args.class_name if args.class_name in model.card.classes else model.card.classes[0]
    settings = GenerationSettings(class_name, args.count, sampler, steps, args.guidance, seed=args.seed, eta=eta,
                                  spacing=args.spacing, batch_size=args.batch_size, clip_x0=args.clip_x0,
                                  threshold=args.threshold)
    started = time.perf_counter()
    generated = run_to_end(generate(model, settings))
    seconds = time.perf_counter() - started
    path = Path(args.scratch) / f"{backend}-{Path(setting).name if gan else setting}.npz"
    np.savez(path, images=generated.images)
    return {"backend": backend, "setting": setting, "images": args.count, "seconds": seconds,
            "images_per_s": args.count / seconds, "images_file": str(path),
            "network_calls": generated.provenance["network_calls"], "spacing": generated.provenance["spacing"]}


def quality(rows: list[dict], args) -> None:
    from napari_cellsynth.core.jobs import run_to_end
    from napari_cellsynth.core.datasets import read_crops
    from napari_cellsynth.core.classify import bundle_features
    from napari_cellsynth.training.reports.generator_metrics import frechet_distance, kernel_inception_distance
    from napari_cellsynth.core.label_maps import apply_label_map
    from napari_cellsynth.core.runtime import OnnxModel
    from napari_cellsynth.training.data.labelled_crops import stratified_split

    classifier = OnnxModel(args.classifier, kind="classifier")
    setup = reference_setup(args)
    crops = read_crops(setup["data"], size=setup["size"], fit=setup["fit"])
    y, classes = apply_label_map(crops.labels, setup["label_map"])
    check_split(y, classes, setup)
    if args.reference == "train":  # the crops the generator was trained on
        with np.load(Path(args.run) / "train_index.npz") as saved:
            index = saved["index"]
    else:  # held-out real cells: the validation part of the classifier's split, never seen by the generator
        index = stratified_split(y, setup["split_seed"])["val"]
    real = crops.images[index[y[index] == classes.index(args.class_name)]]
    args.reference_count = int(len(real))
    real_features = run_to_end(bundle_features(classifier, real))
    if args.floor:  # real cells through the same measure: the floor, and a wrong class for scale
        test = stratified_split(y, setup["split_seed"])["test"]
        for name in (args.class_name, args.floor):
            path = Path(args.scratch) / f"real-test-{name}.npz"
            np.savez(path, images=crops.images[test[y[test] == classes.index(name)]])
            rows.append({"backend": "onnxruntime", "setting": f"real test {name}", "images_file": str(path),
                         "network_calls": 0, "images_per_s": float("nan"), "images": 0})
    for row in rows:
        if row["backend"] == "torch":  # the same sampler code, weights and precision as the onnxruntime row
            continue
        with np.load(row["images_file"]) as saved:
            fake_features = run_to_end(bundle_features(classifier, saved["images"]))
        row["fid_resnet"] = frechet_distance(real_features, fake_features)
        row["kid_resnet"] = kernel_inception_distance(real_features, fake_features,
                                                      subset_size=min(100, len(fake_features)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="the generator's training run (for the torch backends and --reference train)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="without --run: the classifier split's seed, for --reference val (default 0)")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--classifier", required=True, help="classifier bundle for FID/KID features")
    parser.add_argument("--class", dest="class_name", required=True)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--clip-x0", type=float, help="clip every x0 estimate to ±this (normalised scale)")
    parser.add_argument("--threshold", choices=["static", "dynamic"], help="x0 thresholding (see cellsynth generate)")
    parser.add_argument("--spacing", help="timestep spacing (default: the bundle's: trailing for v-prediction)")
    parser.add_argument("--reference", default="train", choices=["train", "val"],
                        help="real cells for FID/KID: the generator's training crops, or the held-out validation split")
    parser.add_argument("--data", help="the training data, where the run's recorded path no longer holds")
    parser.add_argument("--floor", metavar="OTHER_CLASS", help="also score the class's real test-split cells (the "
                        "floor) and OTHER_CLASS's (a wrong class, for scale)")
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"],
                        choices=["onnxruntime", "onnxruntime-int8", "torch", "torch-bf16", "diffusers"])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    parser.add_argument("--gan-bundles", nargs="+", default=[], help="GAN bundles of the same class: one row each "
                                                                      "(one network pass per image)")
    parser.add_argument("--scratch", default="/tmp/cellsynth-bench")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "generate.json"))
    parser.add_argument("--seed", type=int, default=0, help="generation seed (a second seed shows the spread)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    if args.one:
        task = {"ceiling": lambda: compute_ceiling(args), "quantize": lambda: build_int8_graph(args, args.one[1])}
        print(json.dumps(task.get(args.one[0], lambda: run_one(args.one[0], args.one[1], args))()))
        return
    rows = []
    for setting in [*args.settings, *(f"gan:{b}" for b in args.gan_bundles)]:
        if "onnxruntime-int8" in args.backends and not setting.startswith("gan:"):
            run_isolated(__file__, [*sys.argv[1:], "--one", "quantize", setting], pause=0)
        for backend in (["onnxruntime"] if setting.startswith("gan:") else args.backends):
            rows.append(run_isolated(__file__, [*sys.argv[1:], "--one", backend, setting]))
    quality(rows, args)
    ceiling = run_isolated(__file__, [*sys.argv[1:], "--one", "ceiling", "-"], pause=0)
    per_call = ceiling["network_gflop_per_image_call"]
    print(f"network: {per_call:.3f} GFLOP per image per call; convolution ceiling "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ceiling["conv_ceiling_gflops"].items()))
    print(f"{'setting':<15} {'backend':<12} {'calls':>5} {'img/s':>7} {'% ceiling':>9} {'FID (ResNet)':>13} "
          f"{'KID ×1e3':>12}")
    for r in rows:
        fid = f"{r['fid_resnet']:13.2f}" if "fid_resnet" in r else f"{'':>13}"
        kid = f"{1e3 * r['kid_resnet'][0]:7.2f}±{1e3 * r['kid_resnet'][1]:4.2f}" if "kid_resnet" in r else ""
        peak = ceiling["conv_ceiling_gflops"]["bf16" if r["backend"] == "torch-bf16" else "fp32"]
        if r["network_calls"] and not r["setting"].startswith("gan:"):  # achieved GFLOP/s over the ceiling
            r["ceiling_fraction"] = r["images_per_s"] * r["network_calls"] * per_call / peak
        share = f"{100 * r['ceiling_fraction']:8.0f}%" if "ceiling_fraction" in r else f"{'':>9}"
        print(f"{r['setting']:<15} {r['backend']:<12} {r['network_calls']:>5} {r['images_per_s']:7.3f} {share} {fid} "
              f"{kid:>12}")
    from napari_cellsynth.core.atomic import write_json_atomic

    write_json_atomic(args.out, {"class": args.class_name, "count": args.count, "clip_x0": args.clip_x0,
                                 "threshold": args.threshold, "guidance": args.guidance, "seed": args.seed,
                                 "reference": args.reference,
                                 "reference_count": args.reference_count, "bundle": args.bundle, "rows": rows,
                                 "cpus": os.cpu_count(), **ceiling})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
