"""Export a WGAN run's EMA generator to a bundle: ``model.onnx`` = one pass G(z[, class]) → image.

    cellsynth export gan runs/gan-metaphase --out bundles/gan-metaphase [--snapshot 8000]

Input ``z`` (N×latent float32, standard normal) and, for a class-conditional generator, ``class``
(N int64); output ``images`` (N×C×H×W in [-1, 1], the run's normalisation maps it back to raw
intensities).  ``--snapshot STEP`` exports a snapshot (``snapshots/G_<step>.pt``) instead of the last
weights, e.g. the one chosen by KID.  Parity: torch and ONNX Runtime on seeded latents.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.core.bundle import Card, save_bundle
from napari_cellsynth.core.cards import GanCard
from napari_cellsynth.core.entry import run_entry
from napari_cellsynth.export.common import export_main, export_onnx, fresh_staging, library_versions, publish_checked
from napari_cellsynth.training.nets.wgan import Generator
from napari_cellsynth.training.records.gan_run import GanRun


def load_generator(run: Path, snapshot: int | None = None) -> tuple[GanRun, Generator, int]:
    """The run's record, its EMA generator (the last one, or snapshot ``snapshot``) and its step."""
    record = GanRun.read(run)
    net = record.net
    generator = Generator(net["channels"], net["size"], net["latent"], net["base"], net["num_classes"])
    if snapshot is None:
        snapshots = sorted((run / "snapshots").glob("G_*.pt"))
        last = run / "last.pt"
        if last.is_file():
            state = torch.load(last, weights_only=True, map_location="cpu")
            weights, step = state["g_ema"], int(state["step"])
        elif snapshots:
            weights, step = torch.load(snapshots[-1], weights_only=True, map_location="cpu"), int(snapshots[-1].stem[2:])
        else:
            raise FileNotFoundError(f"{run} holds neither last.pt nor generator snapshots; train it first")
    else:
        path = run / "snapshots" / f"G_{snapshot:06d}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; snapshots: "
                                    f"{sorted(p.name for p in (run / 'snapshots').glob('G_*.pt'))}")
        weights, step = torch.load(path, weights_only=True, map_location="cpu"), snapshot
    generator.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    return record, generator.eval(), step


def export_gan(run: str | Path, out: str | Path, name: str | None = None, atol: float = 1e-3, rtol: float = 1e-3,
               snapshot: int | None = None) -> Path:
    run, out = Path(run), Path(out)
    record, generator, step = load_generator(run, snapshot)
    net, conditional = record.net, record.conditional
    staging = fresh_staging(out)
    example = (torch.zeros(2, net["latent"]),) + ((torch.zeros(2, dtype=torch.long),) if conditional else ())
    export_onnx(generator, example, staging / "model.onnx", list(GanCard.inputs_for(conditional)), ["images"])
    h, w = record.image_size
    settings = record.settings
    card = Card(
        kind="gan", name=name or out.name, classes=record.classes, channels=record.channels,
        input={"size": [int(h), int(w)], "layout": "NCHW", "dtype": record.dtype,
               **({"fit": record.fit} if record.fit else {}),
               "value_range": record.value_range, "name": "z"},
        normalization=record.normalization, outputs={"names": ["images"], "prediction": "image"},
        training={"data": {"source": record.data, "label_map": record.label_map,
                           "train_counts": record.train_counts, "split": record.split},
                  "loss": record.loss, "div_points": record.div_points, "steps": step,
                  "snapshot": snapshot, "net": net, "settings": {"n_critic": settings.n_critic, "lr": settings.lr,
                                                                 "batch_size": settings.batch_size,
                                                                 "ema": settings.ema},
                  "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        versions=library_versions(), files={"model.onnx": {}},
        extra={"gan": {"latent": net["latent"], "conditional": conditional}})
    save_bundle(staging, card)
    rng = np.random.default_rng(0)
    feeds = {"z": rng.standard_normal((16, net["latent"])).astype(np.float32)}
    if conditional:
        feeds["class"] = np.arange(16, dtype=np.int64) % net["num_classes"]
    return publish_checked(staging, out, card, generator, feeds, "images", "16 seeded latents", atol, rtol)


def main(argv: list[str] | None = None) -> None:
    export_main("cellsynth export gan", __doc__, export_gan, argv)


if __name__ == "__main__":
    sys.exit(run_entry(main, "cellsynth export gan"))
