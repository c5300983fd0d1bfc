"""Train a Brownian Bridge Diffusion Model (BBDM) that translates a chromosome's DAPI crop into its FISH colours.

    # all chromosomes of the data set (the M-FISH builder's chromosomes.npz), test slides held out
    cellsynth train bbdm --data runs/mfish/chromosomes.npz --exclude-slides V26 A20 \
        --steps 20000 --out runs/bbdm-all
    # fine-tune on the translocations (the rare class)
    cellsynth train bbdm --data runs/mfish/chromosomes.npz --exclude-slides V26 A20 \
        --init-from runs/bbdm-all --only-translocations --steps 4000 --out runs/bbdm-transloc

The bridge of paper 004 eqs. 1–3: x_t = (1 - m_t) x_0 + m_t y + sqrt(δ_t) ε with m_t = t/T and
δ_t = 2s(m_t - m_t²).  x_0 is the RGB crop (three fluorophore planes; ``--target fluorophores``: all
five planes, what the translocation classifier of docs/results.md §11 reads), y the DAPI crop repeated
on the target's channels (the bridge needs both ends in one space).  The network predicts the BBDM
objective x_t - x_0 = m_t (y - x_0) + sqrt(δ_t) ε from (x_t, t), with an L1 (BBDM's default) or L2
loss.  Adam at 1e-4, batch 8 and a plateau learning-rate schedule (factor 0.5, patience 3000,
floor 5e-7) follow paper 004's appendix A.  Both ends are 8-bit; they are scaled to [-1, 1].
EMA weights, checkpoints and ``--resume``; ``loss.png`` and ``samples_<step>.png`` (DAPI, real,
generated through the shared numpy bridge sampler) show progress.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_cellsynth.core.atomic import write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.core.samplers import bridge
from napari_cellsynth.core.schedules import BridgeSchedule
from napari_cellsynth.training.data.labelled_crops import CropBatches
from napari_cellsynth.training.data.translocations import load_pairs
from napari_cellsynth.training.records.bbdm_run import BbdmRun, BbdmSettings
from napari_cellsynth.training.nets.unet import bridge_unet
from napari_cellsynth.training.reports.plots import dapi_fish_grid, plot_loss
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.checkpoints import (add_run_arguments, ema_update, refuse_to_overwrite,
                                                            restore_checkpoint, save_checkpoint, save_snapshot)
from napari_cellsynth.training.trainers.forward_process import TorchBridge
from napari_cellsynth.training.trainers.loop import Every, endless, training_loop

EIGHT_BIT = {"low": 0.0, "high": 255.0}
TARGETS = {"rgb": ["R", "G", "B"], "fluorophores": [f"plane {k}" for k in range(1, 6)]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth train bbdm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="chromosomes.npz of training.data.mfish_dataset (dapi, rgb, ...)")
    p.add_argument("--exclude-slides", nargs="+", default=[], help="slides never trained on (the test slides)")
    p.add_argument("--only-translocations", action="store_true", help="fine-tune on translocation = 1 only")
    p.add_argument("--target", default="rgb", choices=list(TARGETS),
                   help="what DAPI is translated into: rgb (three fluorophore planes) or fluorophores (all five)")
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--variance-scale", type=float, default=1.0, help="s in δ_t = 2s(m_t - m_t²)")
    p.add_argument("--loss", default="l1", choices=["l1", "l2"])
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2, 2])
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--snapshot-every", type=int, default=2000,
                   help="keep the EMA weights (fp16, snapshots/ema_<step>.pt) every N steps, for a quality curve over "
                        "training (experiments.bridge_curve) or exporting one of them (export bbdm --snapshot); "
                        "0: none")
    p.add_argument("--sample-steps", type=int, default=200, help="skip-step sampling for the sample grid")
    add_run_arguments(p)
    return p


def condition(dapi: torch.Tensor, channels: int) -> torch.Tensor:
    """y: the (normalised) DAPI plane repeated on the target's channels."""
    return dapi.expand(-1, channels, -1, -1)


def bridge_loss(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, schedule: BridgeSchedule, kind: str):
    bridge = TorchBridge(schedule, x0.device)  # the forward process of the schedule the bridge sampler uses
    t = torch.randint(1, schedule.num_timesteps + 1, (len(x0),), device=x0.device)
    noise = torch.randn_like(x0)
    xt = bridge.forward(x0, y, t, noise)
    target = bridge.target(x0, y, t, noise)
    prediction = model(xt, t)
    return (prediction - target).abs().mean() if kind == "l1" else nn.functional.mse_loss(prediction, target)


def torch_bridge_fn(model: nn.Module):
    def net(x, t):
        with torch.inference_mode():
            return model(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    return net


def sample_grid(model, schedule, pairs, target: str, normalization, steps: int, path: Path, n: int = 8) -> None:
    """Rows: DAPI, real FISH, BBDM from that DAPI (shared numpy bridge sampler, seed 0); the first three
    channels of a five-plane target."""
    from napari_cellsynth.core.images import denormalize, normalize

    model.eval()
    pick = np.random.default_rng(0).choice(len(pairs["dapi"]), min(n, len(pairs["dapi"])), replace=False)
    y = np.repeat(normalize(pairs["dapi"][pick], {"type": "minmax_range", "low": [0.0], "high": [255.0]}),
                  pairs[target].shape[1], axis=1)
    fake = run_to_end(bridge(torch_bridge_fn(model), y, schedule, steps, np.random.default_rng(0)))
    fake = denormalize(fake, normalization, np.uint8, (0, 255))
    dapi_fish_grid(pairs["dapi"][pick], pairs[target][pick][:, :3], fake[:, :3], "BBDM", path)


def train(args) -> Path:
    """Train (or fine-tune) one BBDM run into ``args.out``; returns the run folder."""
    out = Path(args.out)
    refuse_to_overwrite(out, args.resume)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    pairs = load_pairs(args.data, args.exclude_slides, args.only_translocations)
    if args.target not in pairs:
        raise ValueError(f"{args.data} has no {args.target} planes; rebuild it with python -m "
                         "napari_cellsynth.training.data.mfish_dataset")
    target = pairs[args.target]
    channels, size = target.shape[1], target.shape[-1]
    schedule = BridgeSchedule(args.timesteps, args.variance_scale)
    normalization = {"type": "minmax_range", "low": [EIGHT_BIT["low"]] * channels,
                     "high": [EIGHT_BIT["high"]] * channels}
    net = {"base": args.base, "channel_mult": args.channel_mult, "dropout": args.dropout}
    record = BbdmRun(
        data=str(Path(args.data).resolve()), channels=TARGETS[args.target][:channels], image_size=[size, size],
        normalization=normalization, condition_normalization={"type": "minmax_range", "low": [0.0], "high": [255.0]},
        net=net, exclude_slides=args.exclude_slides, target=args.target, schedule=schedule.to_card(), loss=args.loss,
        train_count=int(len(target)), settings=BbdmSettings.from_namespace(args),
        only_translocations=args.only_translocations, init_from=args.init_from)
    write_json_atomic(out / "config.json", record.to_dict())
    model = bridge_unet(net, channels, size)
    if args.init_from:
        model.load_state_dict(torch.load(Path(args.init_from) / "last.pt", weights_only=True, map_location="cpu")["ema"])
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3000, cooldown=3000,
                                                         threshold=1e-4, min_lr=5e-7)
    stacked = np.concatenate([pairs["dapi"], target], axis=1)  # flips and rotations hit both ends alike
    joint = {"type": "minmax_range", "low": [0.0] * (channels + 1), "high": [255.0] * (channels + 1)}
    batches = CropBatches(stacked, pairs["translocation"], joint, args.batch_size, augment=True, seed=args.seed,
                          brightness=False)
    history, step = [], 0
    if args.resume and (out / "last.pt").is_file():
        step, history, state = restore_checkpoint(out, model, ema, optimizer, batches)
        plateau.load_state_dict(state["plateau"])
    stream = endless(batches)

    def one_step(step: int) -> dict:
        both, _ = next(stream)
        model.train()
        loss = bridge_loss(model, both[:, 1:], condition(both[:, :1], channels), schedule, args.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        plateau.step(loss.item())
        ema_update(ema, model, step + 1, args.ema)
        return {"loss": loss.item()}

    every = {"checkpoint": Every(args.ckpt_every, lambda s: save_checkpoint(out, model, ema, optimizer, s, history,
                                                                           batches, plateau=plateau.state_dict())),
             "snapshot": Every(args.snapshot_every,
                               lambda s: save_snapshot(out / "snapshots" / f"ema_{s:06d}.pt", ema)),
             "samples": Every(args.sample_every, lambda s: sample_grid(ema, schedule, pairs, args.target, normalization,
                                                                       args.sample_steps, out / f"samples_{s:06d}.png"))}
    run_to_end(training_loop(one_step, step, args.steps, history, every, describe=lambda e: f"loss {e['loss']:.4f}",
                             extra_log=lambda step: {"lr": optimizer.param_groups[0]["lr"]}, quiet=args.quiet))
    if history:
        plot_loss(history, out / "loss.png", f"bridge {args.loss.upper()} loss")
    return out


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train bbdm"))
