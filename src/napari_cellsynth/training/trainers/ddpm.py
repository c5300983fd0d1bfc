"""Train a class-conditional DDPM noise predictor (loss of paper 000 eq. 3), or fine-tune one on a rare class.

    # base model on all classes (the training split of the classifier's seeded split)
    cellsynth train ddpm --data ../shared/data/jurkat/jurkat_cells.npz --label-map jurkat4 \
        --schedule sigmoid --steps 20000 --out runs/ddpm-jurkat4
    # fine-tune on the rare class (paper 003's procedure)
    cellsynth train ddpm --data ... --label-map jurkat4 --init-from runs/ddpm-jurkat4 \
        --only-classes M --steps 4000 --out runs/ddpm-jurkat4-M
    # fine-tune a shipped generator on finer classes: the four mitotic phases start from its M
    cellsynth train ddpm --data ... --label-map jurkat7 --init-from zoo:ddpm-jurkat4-full-v \
        --steps 2000 --out runs/ddpm-jurkat7-from-zoo

Intensities are scaled per channel to [-1, 1] between the 0.1 and 99.9 percentiles of the
training split (recorded for the bundle).  Classes are dropped to the null class with
probability ``--p-uncond`` so that classifier-free guidance works.  EMA weights are kept;
checkpoints (``last.pt``) allow ``--resume``; ``loss.png`` and ``samples_<step>.png`` (DDIM
through the shared numpy samplers) show progress.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.denoisers import Denoiser, guided
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.samplers import ddim, timesteps
from napari_cellsynth.core.schedules import NoiseSchedule
from napari_cellsynth.training.data.labelled_crops import (SAMPLINGS, CropBatches, add_generator_data_arguments,
                                                           fit_record, load_labelled, robust_range, sampling_weights,
                                                           split_record, stratification, training_indices)
from napari_cellsynth.training.nets.unet import UNet
from napari_cellsynth.training.records.ddpm_run import DdpmRun, DdpmSettings
from napari_cellsynth.training.reports.plots import plot_loss
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.checkpoints import (add_run_arguments, ema_update, refuse_to_overwrite,
                                                            restore_checkpoint, save_checkpoint, save_snapshot)
from napari_cellsynth.training.trainers.devices import torch_device
from napari_cellsynth.training.trainers.forward_process import TorchNoising
from napari_cellsynth.training.trainers.loop import Every, endless, training_loop
from napari_cellsynth.training.trainers.starting_generator import (check_start, class_rows, load_start, read_start,
                                                                    resolve_net, resumed_settings, schedule_options)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth train ddpm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_data_arguments(p)
    p.add_argument("--only-classes", nargs="+", help="train on these classes only (fine-tuning on a rare class)")
    p.add_argument("--schedule", choices=["linear", "cosine", "sigmoid"],
                   help="noise schedule (default sigmoid); fine-tuning keeps the start's")
    p.add_argument("--schedule-params", help='JSON, e.g. {"start": -3, "end": 3, "tau": 1} (default {}; fine-tuning: '
                                             "the start's)")
    p.add_argument("--timesteps", type=int, help="diffusion steps of the schedule (default 1000; fine-tuning: the "
                                                 "start's)")
    p.add_argument("--prediction", choices=["epsilon", "v"],
                   help="network target: v = √ᾱ ε - √(1-ᾱ) x_0 (the default: stable at high noise, clean cells from "
                        "fast samplers, docs/results.md §6b) or the noise ε (paper 000); fine-tuning keeps the start's")
    p.add_argument("--base", type=int, help="U-Net channels at full resolution (default 64; fine-tuning: the start's)")
    p.add_argument("--channel-mult", type=int, nargs="+", help="channel multiplier per level (default 1 2 2; "
                                                                "fine-tuning: the start's)")
    p.add_argument("--attention-gates", action=argparse.BooleanOptionalAction,
                   help="attention gates on the skips (paper 003; default off; fine-tuning: the start's)")
    p.add_argument("--dropout", type=float, help="default 0.1; fine-tuning: the start's unless given")
    p.add_argument("--steps", type=int, default=20000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--sampling", choices=SAMPLINGS,
                   help="shuffle (default): each crop once a pass; balanced: every class drawn equally often (with "
                        "replacement), e.g. when fine-tuning on finer classes of a few cells each")
    p.add_argument("--class-lr", type=float, default=None,
                   help="learning rate of the class embedding alone (no weight decay), e.g. 50x --lr when fine-tuning "
                        "on new or finer classes, whose rows start from the start's class and move slowly at --lr "
                        "(default: --lr)")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--snapshot-every", type=int, default=2000,
                   help="keep the EMA weights (fp16, snapshots/ema_<step>.pt) every N steps, for a quality curve over "
                        "training (experiments.kid_curve) or exporting one of them (export ddpm --snapshot); 0: none")
    p.add_argument("--p-uncond", type=float, default=0.1)
    p.add_argument("--zero-terminal-snr", action=argparse.BooleanOptionalAction,
                   help="rescale the schedule so that its last step is pure noise (Lin et al. 2024; needs v-prediction); "
                        "on by default with v-prediction, off with ε; fine-tuning keeps the start's")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (on the CPU: measure first)")
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA when present, else CPU), cpu, cuda")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes of training, with a checkpoint (resume later with --resume)")
    p.add_argument("--init-from", metavar="RUN_OR_BUNDLE",
                   help="start from a DDPM run folder (its EMA weights) or a DDPM bundle (a folder or zoo:NAME): the "
                        "network shape, normalisation and schedule are the start's (options given otherwise are "
                        "refused); new classes start from the start's class that holds their labels "
                        "(training/trainers/starting_generator.py)")
    add_run_arguments(p, fine_tuning=False)
    return p


def torch_model_fn(model: nn.Module):
    device = next(model.parameters()).device

    def net(x, t, cls):
        with torch.inference_mode():
            args = (torch.from_numpy(a).to(device) for a in (x, t, cls))
            return model(*args).float().cpu().numpy()
    return net


def sample_grid(model, schedule, classes, image_shape, path: Path, per_class: int = 6, steps: int = 25) -> None:
    """DDIM samples of every class with the shared numpy sampler; one row per class, first channels as RGB."""
    from matplotlib.figure import Figure

    model.eval()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(classes)), per_class)
    noise = rng.standard_normal((len(labels), *image_shape)).astype(np.float32)
    denoise = Denoiser(guided(torch_model_fn(model), labels, len(classes), 1.0), schedule)
    spacing = "trailing" if schedule.prediction == "v" else "leading"
    images = run_to_end(ddim(denoise, noise, schedule, timesteps(schedule.num_timesteps, steps, spacing), rng))
    fig = Figure(figsize=(per_class * 1.1, len(classes) * 1.15))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for ax, image, k in zip(axes.ravel(), images, labels):
        shown = np.clip((image[:3] + 1) / 2, 0, 1)
        ax.imshow(shown.transpose(1, 2, 0) if len(shown) == 3 else shown[0], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if ax in axes[:, 0]:
            ax.set_ylabel(classes[k], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


SCHEDULE_DEFAULTS = {"schedule": "sigmoid", "schedule_params": "{}", "timesteps": 1000}


def run_schedule(settings: DdpmSettings, start_schedule: dict | None) -> tuple[NoiseSchedule, DdpmSettings]:
    """The run's noise schedule, and the settings with the schedule options it resolved.  Options left unset are the
    start's when fine-tuning (which the network learnt), else a sigmoid schedule of 1,000 steps with v-prediction
    and zero terminal SNR: at equal training ε-prediction gave pixel noise with every fast sampler (KID × 10³ about
    1,000 against 6.5–6.7, docs/results.md §6b).  A fine-tuning run given another schedule is refused."""
    base = NoiseSchedule.from_card(start_schedule) if start_schedule else None
    defaults = schedule_options(start_schedule) if start_schedule else SCHEDULE_DEFAULTS
    settings = replace(settings, **{k: v for k, v in defaults.items() if getattr(settings, k) is None})
    prediction = "v" if settings.prediction is None else settings.prediction
    settings = replace(settings, prediction=prediction, zero_terminal_snr=prediction == "v"
                       if settings.zero_terminal_snr is None else settings.zero_terminal_snr)
    schedule = NoiseSchedule(settings.schedule, settings.timesteps, json.loads(settings.schedule_params),
                             settings.prediction, settings.zero_terminal_snr)
    if base and schedule.to_card() != base.to_card():
        raise ValueError(f"--init-from {settings.init_from} learnt the schedule {base.to_card()}, this run asks for "
                         f"{schedule.to_card()}: fine-tuning must keep it; leave --schedule, --schedule-params, "
                         "--timesteps, --prediction and --zero-terminal-snr unset to take the start's")
    return schedule, settings


def parameter_groups(model: UNet, class_lr: float | None) -> list[dict]:
    """The optimizer's parameter groups: one, or, with ``class_lr``, the class embedding in a group of its own at
    that rate and without weight decay (the rest keep the optimizer's rate and decay)."""
    if class_lr is None or model.class_emb is None:
        return [{"params": list(model.parameters())}]
    own = list(model.class_emb.parameters())
    rest = [q for q in model.parameters() if all(q is not e for e in own)]
    return [{"params": rest}, {"params": own, "lr": class_lr, "weight_decay": 0.0}]


def train(args: argparse.Namespace) -> Path:
    """Train (or fine-tune) one DDPM run into ``args.out``; returns the run folder."""
    settings = DdpmSettings.from_namespace(args)  # the options, typed; those left unset are resolved below
    out = Path(settings.out)
    refuse_to_overwrite(out, settings.resume)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    saved = out / "config.json"
    if settings.resume and saved.is_file():
        settings = resumed_settings(settings, DdpmRun.read(out))
    settings = replace(settings, sampling=settings.sampling or "shuffle")
    start = read_start(settings.init_from) if settings.init_from else None
    data = load_labelled(settings.data, settings.label_map, settings.labels_csv, size=settings.size, fit=settings.fit)
    index = training_indices(data.y, data.classes, settings.split_seed, settings.keep_fraction, settings.only_classes,
                             stratification(data, settings.stratify_by)[0])
    images = data.crops.images
    if start:
        check_start(start, data.crops.channels, list(images.shape[-2:]),
                    report=lambda line: None if settings.quiet else print(line))
    settings = resolve_net(settings, start)
    normalization = start.normalization if start else robust_range(images[index])
    schedule, settings = run_schedule(settings, start.schedule if start else None)
    device = torch_device(settings.device)
    record = DdpmRun(
        data=str(Path(settings.data).resolve()), label_map=data.label_map, classes=data.classes,
        channels=data.crops.channels, image_size=list(images.shape[-2:]), dtype=str(images.dtype),
        value_range=[float(images.min()), float(images.max())], normalization=normalization,
        schedule=schedule.to_card(), train_counts=data.counts(index),
        net={"base": settings.base, "channel_mult": settings.channel_mult, "attention_gates": settings.attention_gates,
             "dropout": settings.dropout, "num_classes": len(data.classes)},
        settings=settings, **fit_record(data, settings), split=split_record(data, settings),
        init_from=start.record() if start else None)
    write_json_atomic(out / "config.json", record.to_dict())
    np.savez(out / "train_index.npz", index=index)
    model = UNet(images.shape[1], len(data.classes), settings.base, tuple(settings.channel_mult),
                 attention_gates=settings.attention_gates, dropout=settings.dropout, image_size=int(images.shape[-1]))
    if start and not (settings.resume and (out / "last.pt").is_file()):
        load_start(model, start, class_rows(start, data.classes, data.label_map,
                                            report=lambda line: None if settings.quiet else print(line)))
    model.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(parameter_groups(model, settings.class_lr), lr=settings.lr, weight_decay=1e-4)
    batches = CropBatches(images[index], data.y[index], normalization, settings.batch_size, augment=True,
                          seed=settings.seed, brightness=False, device=device,
                          weights=sampling_weights(data.y[index], settings.sampling))
    history, step = [], 0
    if settings.resume and (out / "last.pt").is_file():
        step, history, _ = restore_checkpoint(out, model, ema, optimizer, batches)
    noising = TorchNoising(schedule, device)  # the forward process of the schedule the samplers use
    stream = endless(batches)

    def one_step(step: int) -> dict:
        x0, y = next(stream)
        model.train()
        t = torch.randint(0, schedule.num_timesteps, (len(x0),), device=device)
        noise = torch.randn_like(x0)
        xt = noising.add_noise(x0, noise, t)
        y = torch.where(torch.rand(len(y), device=device) < settings.p_uncond, torch.full_like(y, len(data.classes)), y)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            prediction = model(xt, t, y)
        loss = nn.functional.mse_loss(prediction.float(), noising.target(x0, noise, t))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, model, step + 1, settings.ema)
        return {"loss": loss.detach()}

    every = {"checkpoint": Every(settings.ckpt_every, lambda s: save_checkpoint(out, model, ema, optimizer, s, history,
                                                                           batches)),
             "snapshot": Every(settings.snapshot_every,
                               lambda s: save_snapshot(out / "snapshots" / f"ema_{s:06d}.pt", ema)),
             "samples": Every(settings.sample_every, lambda s: sample_grid(ema, schedule, data.classes, images.shape[1:],
                                                                       out / f"samples_{s:06d}.png"))}
    run_to_end(training_loop(one_step, step, settings.steps, history, every, settings.max_minutes,
                             describe=lambda e: f"loss {e['loss']:.4f}", quiet=settings.quiet))
    if history:
        plot_loss(history, out / "loss.png", f"{'ε' if settings.prediction == 'epsilon' else 'v'} MSE")
    return out


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train ddpm"))
