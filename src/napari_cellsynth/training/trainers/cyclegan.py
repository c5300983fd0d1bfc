"""Train a CycleGAN DAPI ↔ FISH (paper 004's image-to-image baseline against the BBDM).

    cellsynth train cyclegan --data runs/mfish/chromosomes.npz --exclude-slides V26 A20 \
        --target translocations --steps 20000 --out runs/cyclegan-transloc

Domain A: DAPI crops of the training chromosomes (repeated on every target channel, as the BBDM's
condition); domain B: the ``--planes`` (three fluorophore planes as RGB, or all five, which the translocation
classifier reads) of the ``--target`` chromosomes (the translocations, or all).
Unpaired, as CycleGAN is: A and B batches are drawn independently.  Least-squares GAN losses,
cycle-consistency L1 (λ = 10) and identity L1 (0.5 λ), Adam 2e-4 (β₁ = 0.5), a 50-image pool of
generated images for the discriminators (Zhu et al. 2017).  ``samples_<step>.png`` shows DAPI,
the real FISH of that chromosome and G_A→B(DAPI); checkpoints and ``--resume`` as the other trainers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_cellsynth.core.atomic import atomic_open, write_json_atomic
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.core.jobs import run_to_end
from napari_cellsynth.training.data.labelled_crops import CropBatches
from napari_cellsynth.training.data.translocations import load_pairs
from napari_cellsynth.training.records.cyclegan_run import CycleGanRun, CycleGanSettings
from napari_cellsynth.training.nets.cyclegan import build_cyclegan
from napari_cellsynth.training.reports.plots import dapi_fish_grid, plot_loss
from napari_cellsynth.training.trainers.arguments import entry_points
from napari_cellsynth.training.trainers.bbdm import TARGETS
from napari_cellsynth.training.trainers.checkpoints import add_run_arguments, refuse_to_overwrite
from napari_cellsynth.training.trainers.loop import Every, endless, training_loop

NETS = ("g_ab", "g_ba", "d_a", "d_b")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellsynth train cyclegan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="chromosomes.npz of training.data.mfish_dataset")
    p.add_argument("--exclude-slides", nargs="+", default=[], help="slides never trained on (the test slides)")
    p.add_argument("--target", default="translocations", choices=["translocations", "all"],
                   help="which chromosomes' FISH colours make domain B")
    p.add_argument("--planes", default="rgb", choices=list(TARGETS),
                   help="what DAPI is translated into: rgb (three fluorophore planes) or fluorophores (all five)")
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lambda-cycle", type=float, default=10.0)
    p.add_argument("--lambda-identity", type=float, default=0.5, help="× λ_cycle")
    p.add_argument("--pool", type=int, default=50)
    add_run_arguments(p, fine_tuning=False)
    return p


class ImagePool:
    """Half of the time a discriminator sees an older generated image instead of the newest one."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.images, self.generator = size, [], generator

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(1, generator=self.generator) < 0.5:
                k = int(torch.randint(self.size, (1,), generator=self.generator))
                out.append(self.images[k])
                self.images[k] = image
            else:
                out.append(image)
        return torch.stack(out)


def losses(nets, real_a, real_b, pools, args) -> tuple[torch.Tensor, torch.Tensor, dict]:
    mse, l1 = nn.functional.mse_loss, nn.functional.l1_loss
    fake_b, fake_a = nets["g_ab"](real_a), nets["g_ba"](real_b)

    def adversarial(d, x, target):
        out = d(x)
        return mse(out, torch.full_like(out, target))

    gan = adversarial(nets["d_b"], fake_b, 1.0) + adversarial(nets["d_a"], fake_a, 1.0)
    cycle = l1(nets["g_ba"](fake_b), real_a) + l1(nets["g_ab"](fake_a), real_b)
    identity = l1(nets["g_ab"](real_b), real_b) + l1(nets["g_ba"](real_a), real_a)
    loss_g = gan + args.lambda_cycle * cycle + args.lambda_identity * args.lambda_cycle * identity
    loss_d = 0.5 * (adversarial(nets["d_b"], real_b, 1.0) + adversarial(nets["d_b"], pools["b"](fake_b), 0.0)
                    + adversarial(nets["d_a"], real_a, 1.0) + adversarial(nets["d_a"], pools["a"](fake_a), 0.0))
    return loss_g, loss_d, {"gan": gan.item(), "cycle": cycle.item(), "identity": identity.item()}


def sample_grid(g_ab: nn.Module, pairs: dict, planes: str, path: Path, n: int = 8) -> None:
    """Rows: DAPI, real FISH, G_A→B(DAPI); the first three channels of a five-plane target."""
    from napari_cellsynth.core.images import denormalize, normalize

    g_ab.eval()
    pick = np.random.default_rng(0).choice(len(pairs["dapi"]), min(n, len(pairs["dapi"])), replace=False)
    channels = pairs[planes].shape[1]
    y = np.repeat(normalize(pairs["dapi"][pick], {"type": "minmax_range", "low": [0.0], "high": [255.0]}), channels,
                  axis=1)
    with torch.inference_mode():
        fake = g_ab(torch.from_numpy(y)).numpy()
    fake = denormalize(fake, {"type": "minmax_range", "low": [0.0] * channels, "high": [255.0] * channels}, np.uint8,
                       (0, 255))
    dapi_fish_grid(pairs["dapi"][pick], pairs[planes][pick][:, :3], fake[:, :3], "CycleGAN", path)
    g_ab.train()


def train(args) -> Path:
    """Train one CycleGAN run into ``args.out``; returns the run folder."""
    out = Path(args.out)
    refuse_to_overwrite(out, args.resume)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    domain_a = load_pairs(args.data, args.exclude_slides, only_translocations=False)
    domain_b = load_pairs(args.data, args.exclude_slides, only_translocations=args.target == "translocations")
    if args.planes not in domain_b:
        raise ValueError(f"{args.data} has no {args.planes!r} planes; rebuild it with the M-FISH data set builder")
    channels, size = domain_b[args.planes].shape[1], domain_b[args.planes].shape[-1]
    eight_bit = {"type": "minmax_range", "low": [0.0] * channels, "high": [255.0] * channels}
    net = {"base": args.base, "blocks": args.blocks}
    write_json_atomic(out / "config.json", CycleGanRun(
        data=str(Path(args.data).resolve()), channels=TARGETS[args.planes][:channels], image_size=[size, size],
        normalization=eight_bit, condition_normalization={"type": "minmax_range", "low": [0.0], "high": [255.0]},
        net=net, exclude_slides=args.exclude_slides, target=args.target,
        counts={"A (DAPI)": int(len(domain_a["dapi"])), "B (FISH)": int(len(domain_b[args.planes]))},
        settings=CycleGanSettings.from_namespace(args), planes=args.planes).to_dict())
    nets = build_cyclegan(net, channels)
    opt_g = torch.optim.Adam([*nets["g_ab"].parameters(), *nets["g_ba"].parameters()], args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*nets["d_a"].parameters(), *nets["d_b"].parameters()], args.lr, betas=(0.5, 0.999))
    batches_a = CropBatches(np.repeat(domain_a["dapi"], channels, axis=1), domain_a["translocation"], eight_bit,
                            args.batch_size, augment=True, seed=args.seed, brightness=False)
    batches_b = CropBatches(domain_b[args.planes], domain_b["translocation"], eight_bit, args.batch_size, augment=True,
                            seed=args.seed + 1, brightness=False)
    pool_rng = torch.Generator().manual_seed(args.seed)
    pools = {"a": ImagePool(args.pool, pool_rng), "b": ImagePool(args.pool, pool_rng)}
    history, step = [], 0
    if args.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", weights_only=True)
        for name in NETS:
            nets[name].load_state_dict(state[name])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng"])
        batches_a.generator.set_state(state["rng_a"])
        batches_b.generator.set_state(state["rng_b"])
        history, step = state["history"], state["step"]
    stream_a, stream_b = endless(batches_a), endless(batches_b)

    def one_step(step: int) -> dict:
        (real_a, _), (real_b, _) = next(stream_a), next(stream_b)
        n = min(len(real_a), len(real_b))
        loss_g, loss_d, parts = losses(nets, real_a[:n], real_b[:n], pools, args)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward(retain_graph=False)
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)  # the generators' step left gradients in D: start clean
        loss_d.backward()
        opt_d.step()
        return {"loss": loss_g.item(), "d": loss_d.item(), **parts}

    def checkpoint(step: int) -> None:
        with atomic_open(out / "last.pt", "wb") as fh:
            torch.save({**{name: nets[name].state_dict() for name in NETS}, "opt_g": opt_g.state_dict(),
                        "opt_d": opt_d.state_dict(), "step": step, "history": history,
                        "rng": torch.get_rng_state(), "rng_a": batches_a.generator.get_state(),
                        "rng_b": batches_b.generator.get_state()}, fh)

    every = {"checkpoint": Every(args.ckpt_every, checkpoint),
             "samples": Every(args.sample_every, lambda s: sample_grid(nets["g_ab"], domain_b, args.planes,
                                                                       out / f"samples_{s:06d}.png"))}
    run_to_end(training_loop(one_step, step, args.steps, history, every,
                             describe=lambda e: f"G {e['loss']:.3f} D {e['d']:.3f}", quiet=args.quiet))
    if history:
        plot_loss(history, out / "loss.png", "generator loss")
        (out / "history.json").write_text(json.dumps(history))
    return out


config, main = entry_points(build_parser, train)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth train cyclegan"))
