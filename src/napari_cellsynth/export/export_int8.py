"""An int8 variant of a classifier bundle: static quantisation calibrated on the bundle's own training crops,
accepted only when its calls agree with float32's on held-out crops.

    cellsynth export int8 zoo:classifier-jurkat4 --out bundles/jurkat4-int8 [--data jurkat_cells.npz]

The new bundle is the old one plus ``model.int8.onnx`` and the card's ``variants.int8`` section: the top-1
agreement with float32 and the tolerance it met, the test macro-F1 of both, what was calibrated on, the layers kept
in float32, and both speeds on the CPU that exported it.  The runtime runs int8 where it pays
(:mod:`napari_cellsynth.core.precision`) and records the choice in provenance.

* Calibration: up to ``--calibration`` crops (512) drawn with ``--seed`` from the data's crops outside the bundle's
  test split (``arrays.npz``'s ``test_source_index``); ranges by min–max, weights per output channel.
* Agreement: on the test split when the bundle records it (the data must be the file it indexes), else on the
  crops not drawn for calibration (up to 4,096).
* Kept in float32: the convolutions that read the input (the standardised intensities have long tails) and the
  linear heads (the logits).  With them quantised, ``classifier-jurkat4`` agreed on 98.9 % of its test crops;
  kept, on 100 %.
* Refused, with nothing written, when the calls agree on fewer than ``--tolerance`` (0.995) of the crops, or when
  any class keeps fewer than ``--class-tolerance`` (0.95) of the crops float32 calls it.  The second gate is for
  the rare classes this product is for: ``classifier-translocations`` agreed on 99.7 % of its 973 test crops, yet
  lost 3 of its 19 translocation calls.  Calls follow the card's decision thresholds when it has them.

It needs only onnx and ONNX Runtime (no torch).  ``--out`` must not be the input bundle.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_cellsynth.core.bundle import load_arrays, read_card, save_bundle
from napari_cellsynth.core.datasets import read_crops

from napari_cellsynth.core.images import ImageInputError, prepare
from napari_cellsynth.core.precision import cpu_int8_dot, cpu_name
from napari_cellsynth.core.runtime import OnnxModel, make_session
from napari_cellsynth.core.zoo import resolve
from napari_cellsynth.export.common import fresh_staging, publish

INT8_FILE = "model.int8.onnx"
TOLERANCE = 0.995
CLASS_TOLERANCE = 0.95
MAX_CHECK = 4096


def weights_as_fp32(path: Path):
    """The graph with weights stored as float16 (``store_weights_fp16``: an fp16 initializer read through a Cast)
    turned back into float32 initializers, which the quantiser reads; other graphs unchanged."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "Cast" and len(n.input) == 1 and n.input[0] in inits
                 and n.input[0].endswith("__fp16")]:
        half = inits.pop(node.input[0])
        graph.initializer.remove(half)
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(half).astype(np.float32), node.output[0]))
        graph.node.remove(node)
    return model


def kept_fp32(model) -> list[str]:
    """The nodes left in float32: convolutions that read a graph input, and the linear heads (Gemm, MatMul)."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node
            if (n.op_type == "Conv" and n.input[0] in inputs) or n.op_type in ("Gemm", "MatMul")]


def quantize_int8(model, batches: list[dict[str, np.ndarray]], out: Path, keep: list[str],
                  op_types: list[str] | None = None) -> list[str]:
    """Write ``model`` quantised to int8 (QDQ, per-channel weights, unsigned activations) at ``out``, with ranges from
    the feeds ``batches`` (real inputs, normalised); ``keep`` names the nodes left in float32, ``op_types`` the
    operators quantised (default: all ONNX Runtime can).  Returns ``keep``."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        onnx.save(model, str(fp32))
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        staged = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(staged), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep,
                        op_types_to_quantize=op_types)
        onnx.checker.check_model(str(staged))
        shutil.move(str(staged), out)
    return keep


def in_batches(crops: np.ndarray, input_name: str, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    return [{input_name: crops[i:i + batch_size]} for i in range(0, len(crops), batch_size)]


def sampling_feeds(model: OnnxModel, count: int, sampler: str, steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """The inputs a diffusion bundle's network gets while it makes ``count`` images of each class in fp32 (``x_t``,
    ``t``, ``class`` at every step of ``sampler``): a generator's calibration set, the distribution it runs on."""
    from napari_cellsynth.core.generate import GenerationSettings, generate
    from napari_cellsynth.core.jobs import run_to_end

    feeds, run = [], model.run

    def recording(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds.append({k: np.array(v) for k, v in batch.items()})
        return run(batch)

    model.run = recording
    try:
        for name in model.card.classes:
            run_to_end(generate(model, GenerationSettings(name, count, sampler, steps, seed=seed, batch_size=count)))
    finally:
        model.run = run
    return feeds


def generator_kept_fp32(model) -> list[str]:
    """A denoiser's nodes left in float32: the convolutions that read its noisy input and that write its prediction."""
    inputs, outputs = {i.name for i in model.graph.input}, {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and (n.input[0] in inputs or set(n.output) & outputs)]


def split_crops(card, arrays: dict, data: Path, calibration: int, seed: int) -> tuple[np.ndarray, np.ndarray, object,
                                                                                      str, str]:
    """(calibration crops, check crops, check labels or None, what was checked on, what was calibrated on)."""
    fit = card.size_fit
    crops = read_crops(data, size=fit.size if fit else None, fit=fit.fit if fit else None)
    n, rng = len(crops), np.random.default_rng(seed)
    test = arrays.get("test_source_index")
    if test is not None:
        if len(test) and int(test.max()) >= n:
            raise ImageInputError(f"{data} has {n} crops, but the bundle's test split indexes crop {int(test.max())}: "
                                  "pass the data file the bundle was trained on with --data")
        pool, check, checked_on = np.setdiff1d(np.arange(n), test), np.asarray(test), f"{len(test)} test crops"
        drawn = np.sort(rng.choice(pool, min(calibration, len(pool)), replace=False))
    else:
        order = rng.permutation(n)
        drawn, check = np.sort(order[:min(calibration, n // 2)]), np.sort(order[min(calibration, n // 2):][:MAX_CHECK])
        checked_on = f"{len(check)} crops not used for calibration (the bundle records no test split)"
    if len(drawn) < 16 or len(check) < 16:
        raise ImageInputError(f"{data} gives {len(drawn)} calibration and {len(check)} check crops; int8 needs at "
                              "least 16 of each: pass the bundle's training data with --data")
    labels = crops.labels[check] if crops.labels is not None else None
    return (crops.images[drawn], crops.images[check], labels, checked_on,
            f"{len(drawn)} training crops of {data.name} (outside the test split), drawn with seed {seed}")


def crops_per_second(session, input_name: str, batch: np.ndarray, seconds: float = 1.5) -> float:
    """Median throughput of one batch on this machine (informative: bench/bench_classify.py measures)."""
    feeds = {input_name: np.ascontiguousarray(batch, np.float32)}
    for _ in range(3):
        session.run(None, feeds)
    times, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 5:
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(len(batch) / np.median(times))


def macro_f1(card, labels, predicted: np.ndarray) -> float | None:
    from napari_cellsynth.core.label_maps import apply_bundle_label_map
    from napari_cellsynth.core.metrics import classification_metrics

    if labels is None:
        return None
    try:
        truth, classes = apply_bundle_label_map(labels, card.trained.label_map, card.classes)
    except ValueError:
        return None
    return float(classification_metrics(truth, predicted, classes)["macro_f1"])


def calls(session, input_name: str, batch: np.ndarray, card) -> np.ndarray:
    """Each crop's call, as ``cellsynth classify`` makes it (the card's decision thresholds, else the most
    probable class)."""
    from napari_cellsynth.core.classify import ClassificationResult, softmax

    logits = np.concatenate([session.run(["logits"], {input_name: batch[i:i + 256]})[0]
                             for i in range(0, len(batch), 256)])
    return ClassificationResult(card.classes, softmax(logits), np.zeros((len(logits), 0)), card.decision).predicted


def kept_calls(want: np.ndarray, got: np.ndarray, classes: list[str]) -> dict[str, dict]:
    """Per class that float32 calls at all: how many crops it calls, and the share of them int8 calls alike."""
    return {name: {"fp32_calls": int((want == k).sum()), "kept": float(np.mean(got[want == k] == k))}
            for k, name in enumerate(classes) if (want == k).any()}


def export_int8(bundle: str, out: str | Path, data: str | None = None, tolerance: float = TOLERANCE,
                calibration: int = 512, seed: int = 0, name: str | None = None,
                class_tolerance: float = CLASS_TOLERANCE) -> Path:
    source = resolve(bundle)
    card = read_card(source)
    out = Path(out)
    if card.kind != "classifier":
        raise ValueError(f"{bundle} is a '{card.kind}' bundle; cellsynth export int8 makes int8 variants of "
                         "classifier bundles")
    if out.resolve() == Path(source).resolve():
        raise ValueError(f"--out {out} is the input bundle; write the int8 bundle to a new folder")
    for flag, value in (("--tolerance", tolerance), ("--class-tolerance", class_tolerance)):
        if not 0 < value <= 1:
            raise ValueError(f"{flag} {value}: give the least agreement accepted, in (0, 1], e.g. 0.995")
    if calibration < 16:
        raise ValueError(f"--calibration {calibration}: give at least 16 crops (512 by default)")
    recorded = card.trained.source
    if data and not Path(data).exists():
        raise FileNotFoundError(f"--data {data} does not exist; pass the crops the bundle was trained on")
    data_path = Path(data or recorded or "")
    if not data and (not recorded or not data_path.exists()):
        raise FileNotFoundError(f"the bundle's training data {recorded or '(not recorded)'} is not here; pass --data "
                                "with the crops it was trained on (they calibrate the int8 ranges)")
    fp32 = OnnxModel(source, kind="classifier", providers=["CPUExecutionProvider"], precision="fp32")
    arrays = load_arrays(source, card)
    calib, check, labels, checked_on, calibrated_on = split_crops(card, arrays, data_path, calibration, seed)
    staging = fresh_staging(out)
    try:
        for file in card.files:
            shutil.copy2(Path(source) / file, staging / file)
        graph = weights_as_fp32(Path(source) / "model.onnx")
        kept = quantize_int8(graph, in_batches(prepare(calib, card), fp32.input_names[0]), staging / INT8_FILE,
                             kept_fp32(graph))
        int8, _ = make_session(staging / INT8_FILE, ["CPUExecutionProvider"])
        input_name, batch = fp32.input_names[0], prepare(check, card)
        want, got = calls(fp32.session, input_name, batch, card), calls(int8, input_name, batch, card)
        agreement, per_class = float(np.mean(want == got)), kept_calls(want, got, card.classes)
        if agreement < tolerance:
            raise ValueError(f"int8 calls agree with fp32 on {agreement:.2%} of {checked_on}, below --tolerance "
                             f"{tolerance:.2%}: no int8 variant written (the bundle stays fp32 only)")
        worst = min(per_class, key=lambda c: per_class[c]["kept"])
        if per_class[worst]["kept"] < class_tolerance:
            raise ValueError(f"int8 keeps {per_class[worst]['kept']:.1%} of the {per_class[worst]['fp32_calls']} "
                             f"crops fp32 calls {worst} ({checked_on}), below --class-tolerance {class_tolerance:.0%}: "
                             "no int8 variant written (the bundle stays fp32 only)")
        speed_batch = batch[:64]
        variants = {**card.extra.get("variants", {}), "int8": {
            "file": INT8_FILE, "top1_agreement": agreement, "tolerance": tolerance, "agreement_on": checked_on,
            "kept_calls": per_class, "class_tolerance": class_tolerance,
            "macro_f1": {"fp32": macro_f1(card, labels, want), "int8": macro_f1(card, labels, got)},
            "calibration": calibrated_on, "kept_fp32": kept,
            "format": "QDQ: per-channel int8 weights, uint8 activations, min-max ranges (onnxruntime.quantization)",
            "speed": {"cpu": cpu_name(), "int8_feature": cpu_int8_dot(), "batch": len(speed_batch),
                      "fp32_crops_per_s": round(crops_per_second(fp32.session, input_name, speed_batch)),
                      "int8_crops_per_s": round(crops_per_second(int8, input_name, speed_batch))},
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
        card = replace(card, name=name or card.name, files={**card.files, INT8_FILE: {}}).with_sections(variants=variants)
        save_bundle(staging, card)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish(staging, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cellsynth export int8", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="a classifier bundle folder, or zoo:NAME")
    parser.add_argument("--out", required=True, help="the new bundle folder (the input bundle is left as it is)")
    parser.add_argument("--data", help="the crops the bundle was trained on (default: the path its card records)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="least top-1 agreement with fp32 accepted (default 0.995)")
    parser.add_argument("--class-tolerance", type=float, default=CLASS_TOLERANCE,
                        help="least share of each class's fp32 calls that int8 must call alike (default 0.95)")
    parser.add_argument("--calibration", type=int, default=512, help="training crops to calibrate on (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration draw")
    parser.add_argument("--name", help="bundle name in the card (default: the input's)")
    args = parser.parse_args(argv)
    path = export_int8(args.bundle, args.out, args.data, args.tolerance, args.calibration, args.seed, args.name,
                       args.class_tolerance)
    variant = read_card(path).int8
    speed, f1 = variant.speed, variant.macro_f1
    print(f"wrote {path}: int8 calls agree with fp32 on {variant.top1_agreement:.2%} of {variant.agreement_on}"
          + (f"; macro-F1 fp32 {f1['fp32']:.3f}, int8 {f1['int8']:.3f}" if f1["fp32"] is not None else "")
          + f"; {speed['fp32_crops_per_s']} → {speed['int8_crops_per_s']} crops/s on this CPU (batch {speed['batch']})")
