"""Train a Wasserstein GAN on labelled crops: WGAN-div (paper 001) or WGAN-GP (papers 000, 001).

    # one model per minority class, as paper 001 does (its settings: n_critic 4, lr 2e-4, batch 16;
    # Prophase: n_critic 10, lr 2e-5)
    cellsynth train gan --data ../shared/data/jurkat/jurkat_cells.npz --label-map jurkat7 \
        --only-class Metaphase --loss wgan-div --steps 20000 --out runs/gan-metaphase
    # one class-conditional model (projection critic) for all classes
    cellsynth train gan --data ... --label-map jurkat7 --loss wgan-div --out runs/gan-all

The crops are the classifier's training split (``--split-seed``), so no test cell is ever seen.
Intensities are scaled per channel to [-1, 1] between the training crops' 0.1 and 99.9 percentiles.
Paper 001 enlarged each minority class to 800–1000 images with affine, perspective, contrast and
noise transforms before GAN training; here every batch is drawn with flips and 90° turns instead.
Adam with the betas of each loss's original paper (WGAN-div: 0.5, 0.999; WGAN-GP: 0, 0.9).
The generator's EMA weights are what is exported.  Written: ``last.pt`` (``--resume``),
``critic.png`` (critic loss and the Wasserstein estimate over generator steps, which paper 001
watches for convergence), ``samples_<step>.png``, and fp16 EMA generator snapshots
``snapshots/G_<step>.pt`` every ``--snapshot-every`` steps, from which ``training.select_gan``
picks the checkpoint by KID on classifier features once it levels off, as paper 001 does with FID.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.training.data.labelled_crops import (CropBatches, add_generator_data_arguments, fit_record,
                                                           load_labelled, robust_range, split_record, stratification,
                                                           training_indices)
from napari_cellsynth.training.records.gan_run import GanRun, GanSettings
from napari_cellsynth.training.nets.wgan import Critic, Generator
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.checkpoints import ema_update, refuse_to_overwrite, save_snapshot
from napari_cellsynth.training.trainers.devices import torch_device
from napari_cellsynth.training.trainers.loop import Every, training_loop
from napari_cellsynth.training.trainers.wgan_losses import DIV_POINTS, LOSSES, critic_loss

BETAS = {"wgan-div": (0.5, 0.999), "wgan-gp": (0.0, 0.9)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth train gan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_data_arguments(p)
    p.add_argument("--only-class", help="an unconditional GAN of this class alone (paper 001's per-class models)")
    p.add_argument("--loss", default="wgan-div", choices=LOSSES)
    p.add_argument("--div-points", default="interpolates", choices=DIV_POINTS,
                   help="where WGAN-div's gradient term is taken (paper 001: interpolates)")
    p.add_argument("--n-critic", type=int, default=4, help="critic updates per generator update (001: 4; Prophase 10)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both nets (001: 2e-4; Prophase 2e-5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--latent", type=int, default=128)
    p.add_argument("--base", type=int, default=64)
    p.add_argument("--steps", type=int, default=20000, help="generator updates")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--snapshot-every", type=int, default=2000)
    p.add_argument("--sample-every", type=int, default=2000,
                   help="steps between sample grids (and one at the end); 0: none")
    p.add_argument("--ckpt-every", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def plot_critic(history: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    steps = [h["step"] for h in history]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(steps, [h["critic_loss"] for h in history], label="critic loss")
    ax.plot(steps, [h["wasserstein"] for h in history], label="E[D(real)] - E[D(fake)]")
    ax.set_xlabel("generator step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def sample_grid(generator: Generator, classes: list[str], latent: int, path: Path, per_class: int = 8) -> None:
    from matplotlib.figure import Figure

    device = next(generator.parameters()).device
    rows = classes if generator.num_classes else classes[:1]
    torch_rng = torch.Generator().manual_seed(0)
    z = torch.randn(len(rows) * per_class, latent, generator=torch_rng).to(device)
    cls = torch.arange(len(rows)).repeat_interleave(per_class).to(device)
    with torch.no_grad():
        images = generator.eval()(z, cls if generator.num_classes else None).float().cpu().numpy()
    fig = Figure(figsize=(per_class * 1.1, len(rows) * 1.15))
    axes = fig.subplots(len(rows), per_class, squeeze=False)
    for ax, image in zip(axes.ravel(), images):
        shown = np.clip((image[:3] + 1) / 2, 0, 1)
        ax.imshow(shown.transpose(1, 2, 0) if len(shown) == 3 else shown[0], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    for row, name in enumerate(rows):
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def train(args) -> Path:
    """Train one WGAN run into ``args.out``; returns the run folder."""
    out = Path(args.out)
    refuse_to_overwrite(out, args.resume)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    device = torch_device(args.device)
    data = load_labelled(args.data, args.label_map, args.labels_csv, size=args.size, fit=args.fit)
    only = [args.only_class] if args.only_class else None
    index = training_indices(data.y, data.classes, args.split_seed, args.keep_fraction, only,
                             stratification(data, args.stratify_by)[0])
    images = data.crops.images
    if len(index) == 0:
        raise ValueError(f"no training crops for {args.only_class or 'any class'} in {args.data}")
    classes = [args.only_class] if args.only_class else data.classes
    y = np.zeros(len(index), np.int64) if args.only_class else data.y[index]
    num_classes = 0 if args.only_class else len(classes)
    normalization = robust_range(images[index])
    channels, size = images.shape[1], int(images.shape[-1])
    net = {"latent": args.latent, "base": args.base, "num_classes": num_classes, "channels": channels, "size": size}
    record = GanRun(
        data=str(Path(args.data).resolve()), label_map=data.label_map, classes=classes, channels=data.crops.channels,
        image_size=[size, size], dtype=str(images.dtype), value_range=[float(images.min()), float(images.max())],
        normalization=normalization, loss=args.loss,
        train_counts={c: int((y == k).sum()) for k, c in enumerate(classes)}, net=net,
        settings=GanSettings.from_namespace(args), div_points=args.div_points if args.loss == "wgan-div" else None,
        **fit_record(data, args), split=split_record(data, args))
    write_json_atomic(out / "config.json", record.to_dict())
    generator = Generator(channels, size, args.latent, args.base, num_classes).to(device)
    critic = Critic(channels, size, args.base, num_classes).to(device)
    g_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=BETAS[args.loss])
    opt_d = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=BETAS[args.loss])
    # a class smaller than a batch (Anaphase: 7 training cells) is repeated until it fills one; flips
    # and turns make the repeats differ (paper 001 enlarged such classes by augmentation, too)
    repeats = -(-args.batch_size // len(index))
    batches = CropBatches(np.tile(images[index], (repeats, 1, 1, 1)), np.tile(y, repeats), normalization,
                          args.batch_size, augment=True, seed=args.seed, brightness=False, device=device)
    penalty_rng = torch.Generator().manual_seed(args.seed + 1)
    history, step = [], 0
    if args.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", weights_only=True, map_location="cpu")
        for module, key in ((generator, "generator"), (critic, "critic"), (g_ema, "g_ema")):
            module.load_state_dict(state[key])
        for opt, key in ((opt_g, "opt_g"), (opt_d, "opt_d")):
            if key in state:
                opt.load_state_dict(state[key])
        step, history = state["step"], state["history"]
        batches.generator.set_state(state["batch_rng"])

    def real_batches():
        while True:
            for x, labels in batches:
                if len(x) == args.batch_size:  # full batches only: the penalty averages over the batch
                    yield x, labels

    def fake(labels):
        z = torch.randn(len(labels), args.latent, device=device)
        return generator(z, labels if num_classes else None)

    stream = real_batches()

    def one_step(step: int) -> dict:
        generator.train()
        for _ in range(args.n_critic):
            real, labels = next(stream)
            with torch.no_grad():
                fakes = fake(labels)
            loss_d, distance = critic_loss(critic, real, fakes, labels if num_classes else None, args.loss,
                                           args.div_points, penalty_rng)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        labels = next(stream)[1]
        loss_g = -critic(fake(labels), labels if num_classes else None).float().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema_update(g_ema, generator, step + 1, args.ema)
        return {"critic_loss": loss_d.detach(), "wasserstein": distance}

    def snapshot(step: int) -> None:
        save_snapshot(out / "snapshots" / f"G_{step:06d}.pt", g_ema)

    def checkpoint(step: int) -> None:
        with atomic_open(out / "last.pt", "wb") as fh:
            torch.save({"generator": generator.state_dict(), "critic": critic.state_dict(),
                        "g_ema": g_ema.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                        "step": step, "history": history, "batch_rng": batches.generator.get_state()}, fh)

    every = {"snapshot": Every(args.snapshot_every, snapshot), "checkpoint": Every(args.ckpt_every, checkpoint),
             "samples": Every(args.sample_every,
                              lambda s: sample_grid(g_ema, classes, args.latent, out / f"samples_{s:06d}.png"))}
    run_to_end(training_loop(one_step, step, args.steps, history, every, args.max_minutes,
                             describe=lambda e: f"critic {e['critic_loss']:.3f}", quiet=args.quiet, unit="G step"))
    if history:
        plot_critic(history, out / "critic.png")
    return out


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train gan"))
