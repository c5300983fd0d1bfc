"""What every exporter shares: ONNX export of a forward pass, library versions, parity numbers.

torch is imported where a function needs it, so that ``export int8`` (onnx and ONNX Runtime only) runs without it."""

from __future__ import annotations

import platform
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import napari_cellsynth

    return {"napari_cellsynth": napari_cellsynth.__version__, "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def export_onnx(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                input_names: list[str], output_names: list[str], opset: int = 17) -> None:
    """One forward pass to one ``.onnx`` file, batch dimension dynamic on every input and output."""
    import torch

    module.eval()
    dynamic = {name: {0: "batch"} for name in input_names + output_names}
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(tmp), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    import onnx

    onnx.checker.check_model(str(tmp))
    tmp.replace(path)


def store_weights_fp16(path: Path, min_elements: int = 64) -> int:
    """Store the graph's float32 weights (initializers of at least ``min_elements``) as float16, each read
    back through a Cast to float32: the file halves and the network still computes in float32 (ONNX Runtime
    folds the casts when it loads the graph), so only the weights' rounding differs.  Returns how many
    weights were converted."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT, name=f"{name}__cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return len(casts)


def fresh_staging(out: Path) -> Path:
    """An empty sibling folder to build a bundle in; :func:`publish` moves it into place."""
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, out: Path) -> Path:
    """Replace ``out`` with the finished staging folder (a half-written bundle is never at ``out``)."""
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def parity(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], atol: float, rtol: float) -> dict:
    """Largest absolute and relative difference per output; raises above tolerance."""
    report = {}
    for name, want in expected.items():
        got = actual[name]
        diff = np.abs(want - got)
        scale = np.abs(want).max() or 1.0
        report[name] = {"max_abs": float(diff.max()), "max_rel_to_range": float(diff.max() / scale)}
        if not np.allclose(got, want, atol=atol, rtol=rtol):
            raise AssertionError(f"ONNX Runtime output '{name}' differs from torch by up to {diff.max():.3g} "
                                 f"(atol {atol}, rtol {rtol}); the export is wrong")
    return report


def publish_checked(staging: Path, out: Path, card, module: torch.nn.Module, feeds: dict[str, np.ndarray],
                    output: str, parity_on: str, atol: float, rtol: float) -> Path:
    """Run the torch module and the staged ONNX graph on the same real inputs (``feeds``, in the order of
    the module's arguments), record how closely they agree in the card, and publish the bundle."""
    from napari_cellsynth.core.bundle import save_bundle
    import torch

    from napari_cellsynth.core.runtime import OnnxModel

    with torch.inference_mode():
        expected = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    got = OnnxModel(staging, kind=card.kind, providers=["CPUExecutionProvider"]).run(feeds)
    save_bundle(staging, card.with_sections(export={"opset": 17, "parity_on": parity_on,
                                                    "parity": parity({output: expected}, got, atol, rtol)}))
    return publish(staging, out)


def export_parser(prog: str, doc: str, run_help: str):
    """The options every exporter's command line starts with: ``RUN --out BUNDLE [--name NAME]``."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help=run_help)
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--name", help="bundle name in the card (default: the folder name)")
    return parser


def snapshot_steps(run: Path, prefix: str = "ema") -> list[int]:
    """The steps of a run's fp16 snapshots: ``snapshots/ema_<step>.pt`` (``train ddpm|bbdm --snapshot-every``) or,
    with ``prefix="G"``, a GAN's generator snapshots ``snapshots/G_<step>.pt``."""
    return sorted(int(p.stem[len(prefix) + 1:]) for p in (Path(run) / "snapshots").glob(f"{prefix}_*.pt"))


def load_snapshot(run: Path, step: int, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with the EMA snapshot of ``step`` loaded (in fp32)."""
    path = Path(run) / "snapshots" / f"ema_{step:06d}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; snapshots of this run: steps {snapshot_steps(run) or 'none'}")
    import torch

    weights = torch.load(path, weights_only=True, map_location="cpu")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    return model.eval()


@dataclass(frozen=True)
class TrainedWeights:
    """Which of a run's EMA weights are exported: the step they were kept at, and the run's last loss (None for a
    snapshot)."""

    step: int
    final_loss: float | None


def load_last_ema(run: Path, model: torch.nn.Module) -> tuple[torch.nn.Module, TrainedWeights]:
    """``model`` with the EMA weights of the run's ``last.pt`` loaded, and which they are."""
    import torch

    state = torch.load(Path(run) / "last.pt", weights_only=True, map_location="cpu")
    model.load_state_dict(state["ema"])
    weights = TrainedWeights(int(state["step"]), state["history"][-1]["loss"] if state["history"] else None)
    return model.eval(), weights


def export_main(prog: str, doc: str, export_fn, argv: list[str] | None) -> None:
    """The command line every exporter shares: ``RUN --out BUNDLE [--name NAME]``; prints the parity."""
    import json

    parser = export_parser(prog, doc, "a training run folder")
    parser.add_argument("--data", help="the training data, where the run's recorded path no longer holds "
                                       "(a run trained on another machine); DDPM runs")
    parser.add_argument("--snapshot", type=int, help="DDPM, BBDM and GAN runs: export the EMA (or generator) snapshot "
                                                     "of this step")
    args = parser.parse_args(argv)
    options = {k: v for k, v in (("data", args.data), ("snapshot", args.snapshot)) if v is not None}
    path = export_fn(args.run, args.out, args.name, **options)
    print(f"wrote {path}: parity {json.loads((path / 'card.json').read_text())['export']['parity']}")
