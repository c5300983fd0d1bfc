"""Where a DDPM starts (``cellsynth train ddpm --init-from RUN_OR_BUNDLE``): a training run, or a bundle.

- A ``cellsynth train ddpm`` run: its ``config.json`` and the EMA weights of ``last.pt``.
- A DDPM bundle, a folder or ``zoo:NAME``, so a user can fine-tune a shipped generator on their own cells
  without its training run.  The exporter keeps torch's parameter names on the ONNX initializers, except for the
  GroupNorm scales and shifts: torch writes GroupNorm as InstanceNormalization, then a Mul and an Add with unnamed
  constants.  Those are matched to the U-Net's GroupNorm layers in the order the forward pass runs them.  Each
  self-attention's input projection is an unnamed MatMul constant in the node named after its module.  The
  rebuilt network must then give the bundle's outputs on noised inputs, else it is refused.

The fine-tuning run keeps the start's network shape, normalisation and noise schedule, which the weights learnt.
Its classes may differ: a class takes the embedding of the start's class whose original labels hold all of its own
(Jurkat's Prophase … Telophase each start from the 4-class model's M), else of the start's class of the same name,
else the unconditional (null) embedding; the null class keeps the start's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from napari_cellsynth.training.nets.unet import UNet, unet_from_net
from napari_cellsynth.training.records.ddpm_run import DdpmRun, DdpmSettings


@dataclass
class GeneratorStart:
    """What a fine-tuning run inherits, and from where."""

    spec: str  # as given to --init-from
    source: str  # the resolved run folder, or the bundle with its model's sha256
    kind: str  # "run" or "bundle"
    classes: list[str]
    label_map: dict[str, list[str]] | None
    channels: list[str]
    image_size: list[int]
    normalization: dict
    schedule: dict
    net: dict
    state: dict[str, torch.Tensor]
    train_counts: dict[str, int] | None = None
    started_from: dict | str | None = None  # the start's own start, when it was fine-tuned too
    split: dict | None = None  # the split it learnt from (seed, stratification classes), where recorded

    def record(self) -> dict:
        """What the run's config and bundle card keep of it, its own start included: which classes and how many
        crops of each every link of the chain learnt from."""
        return {"spec": self.spec, "from": self.source, "kind": self.kind, "classes": self.classes, "label_map": self.label_map,
                "train_counts": self.train_counts, "split": self.split, "init_from": self.started_from}


def is_bundle(spec: str) -> bool:
    return str(spec).startswith("zoo:") or (Path(spec) / "card.json").is_file()


def read_start(spec: str) -> GeneratorStart:
    """A run folder or a DDPM bundle; a one-line ``ValueError`` naming the fix when it is neither."""
    if is_bundle(spec):
        return start_from_bundle(spec)
    run = Path(spec)
    if not ((run / "config.json").is_file() and (run / "last.pt").is_file()):
        raise ValueError(f"--init-from {spec}: neither a cellsynth train ddpm run (config.json, last.pt) nor a DDPM "
                         "bundle (card.json, or zoo:NAME); pass the --out folder of a DDPM run or a bundle")
    try:
        record = DdpmRun.read(run)
    except ValueError as err:
        raise ValueError(f"--init-from {spec}: {err}") from err
    state = torch.load(run / "last.pt", weights_only=True, map_location="cpu")["ema"]
    return GeneratorStart(spec, str(run.resolve()), "run", record.classes, record.label_map, record.channels,
                          record.image_size, record.normalization, record.schedule, record.net, state,
                          record.train_counts, record.init_from, record.split)


def start_from_bundle(spec: str) -> GeneratorStart:
    import onnx
    from onnx import numpy_helper

    from napari_cellsynth.core.runtime import OnnxModel

    bundle = OnnxModel(spec, kind="ddpm", providers=["CPUExecutionProvider"])  # sha256-checked; fp32 for the parity
    card = bundle.card
    net = card.trained.net or {}
    if not {"base", "channel_mult", "attention_gates", "dropout", "num_classes"} <= set(net):
        raise ValueError(f"--init-from {spec}: its card does not record the U-Net's shape (training.net); "
                         "fine-tune from its training run instead")
    model = unet_from_net(net, card.n_channels, card.image_size[-1])
    graph = onnx.load(str(bundle.folder / "model.onnx")).graph
    named = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = model.state_dict()
    norms = forward_order_group_norms(model, card.n_channels, card.image_size)
    try:
        affine = group_norm_constants(graph, named)
    except ValueError as err:
        raise ValueError(f"--init-from {spec}: {err}; fine-tune from its training run instead") from err
    if len(affine) != len(norms):
        raise ValueError(f"--init-from {spec}: its graph has {len(affine)} GroupNorm scale/shift pairs, the U-Net "
                         f"{len(norms)}; fine-tune from its training run instead")
    recovered = {key: named[key] for key in state if key in named}
    recovered |= {key: value for key, value in attention_projections(graph, named).items() if key in state}
    for name, (scale, shift) in zip(norms, affine):
        recovered[f"{name}.weight"], recovered[f"{name}.bias"] = scale.reshape(-1), shift.reshape(-1)
    missing = [k for k in state if k not in recovered or tuple(state[k].shape) != recovered[k].shape]
    if missing:
        raise ValueError(f"--init-from {spec}: {len(missing)} weights could not be recovered from its ONNX graph "
                         f"(first: {missing[0]}); fine-tune from its training run instead")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in recovered.items()})
    check_parity(model, bundle, card.ddpm.null_class, spec)
    return GeneratorStart(spec, f"{spec} (sha256 {card.model_sha256[:12]})", "bundle", list(card.classes),
                          card.trained.label_map, list(card.channels), list(card.image_size), card.normalization,
                          card.ddpm.schedule.to_card(), net, model.state_dict(), card.trained.counts,
                          card.trained.init_from, card.trained.split)


def check_start(start: GeneratorStart, channels: list[str], size: list[int], report=print) -> None:
    """The run's data must have the start's channel count and crop size, which its weights and normalisation fit;
    channels of other names are reported (their intensities are scaled by the start's normalisation)."""
    if len(channels) != len(start.channels):
        raise ValueError(f"--init-from {start.source} was trained on {len(start.channels)} channels "
                         f"({', '.join(start.channels)}), this data has {len(channels)}; give crops with those channels, "
                         "or train from scratch")
    if list(size) != list(start.image_size):
        raise ValueError(f"--init-from {start.source} was trained on {start.image_size[0]}×{start.image_size[1]} "
                         f"crops, this data's are {size[0]}×{size[1]}; pass --size {start.image_size[-1]}")
    if list(channels) != list(start.channels):
        report(f"channels {', '.join(channels)} are taken for the start's {', '.join(start.channels)}, in that order, "
               "and scaled by the start's normalisation")


def resumed_settings(settings: DdpmSettings, saved: DdpmRun) -> DdpmSettings:
    """``--resume`` of a run: the options left unset are the ones it ran with (its record), so the network,
    schedule and optimizer rebuilt match its checkpoint; a fine-tuned run must be resumed with its ``--init-from``."""
    started = saved.init_from
    if started and not settings.init_from:
        spec = started.get("spec", started.get("from")) if isinstance(started, dict) else started
        raise ValueError(f"{settings.out} was fine-tuned from {spec}; resume it with --init-from {spec}")
    ran = {**{key: saved.net[key] for key in NET_DEFAULTS}, "stratify_by": (saved.split or {}).get("stratify_by"),
           **schedule_options(saved.schedule),
           "class_lr": saved.settings.class_lr if saved.settings else None,  # the optimizer's parameter groups
           "sampling": saved.settings.sampling if saved.settings else None}
    return replace(settings, **{key: value for key, value in ran.items() if getattr(settings, key) is None})


def schedule_options(card: dict) -> dict:
    """A schedule card as the ``cellsynth train ddpm`` options that rebuild it."""
    return {"schedule": card["kind"], "schedule_params": json.dumps(card.get("params", {})),
            "timesteps": card["num_timesteps"], "prediction": card.get("prediction", "epsilon"),
            "zero_terminal_snr": card.get("zero_terminal_snr", False)}


NET_DEFAULTS = {"base": 64, "channel_mult": [1, 2, 2], "attention_gates": False, "dropout": 0.1}


def resolve_net(settings: DdpmSettings, start: GeneratorStart | None) -> DdpmSettings:
    """The U-Net options: those left unset are the start's when fine-tuning, else :data:`NET_DEFAULTS`.  A shape
    option that differs from the start's is refused (its weights fit only their shape); dropout may change."""
    resolved = {}
    for key, default in NET_DEFAULTS.items():
        given = getattr(settings, key)
        if start is None:
            resolved[key] = default if given is None else given
            continue
        theirs = list(start.net[key]) if key == "channel_mult" else start.net[key]
        if given is None:
            resolved[key] = theirs
        elif key != "dropout" and given != theirs:
            option = "--" + key.replace("_", "-")
            raise ValueError(f"--init-from {start.source} has a U-Net with {option} {theirs}, this run asks for "
                             f"{given}: its weights fit only their shape; leave {option} unset to take the start's")
    return replace(settings, **resolved)


def forward_order_group_norms(model: UNet, channels: int, image_size) -> list[str]:
    """The U-Net's GroupNorm layers in the order one forward pass runs them (the order of the exported graph)."""
    names = {module: name for name, module in model.named_modules() if isinstance(module, torch.nn.GroupNorm)}
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(names[m])) for m in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, *image_size), torch.zeros(1, dtype=torch.long),
                         torch.zeros(1, dtype=torch.long))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def group_norm_constants(graph, named: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each InstanceNormalization's following Mul and Add constants (GroupNorm's scale and shift), in graph order.
    Between them the exporter puts a Reshape back to the input's shape."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def next_with_constant(output: str, op: str):
        for _ in range(3):  # through the Reshape
            nodes = consumers.get(output, [])
            if len(nodes) != 1:
                return None
            node = nodes[0]
            constants = [i for i in node.input if i in named]
            if node.op_type == op and len(constants) == 1:
                return node, named[constants[0]]
            output = node.output[0]
        return None

    pairs = []
    for node in graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        scale = next_with_constant(node.output[0], "Mul")
        shift = scale and next_with_constant(scale[0].output[0], "Add")
        if not shift:
            raise ValueError("a GroupNorm of the graph has no scale and shift after it")
        pairs.append((scale[1], shift[1]))
    return pairs


def attention_projections(graph, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``nn.MultiheadAttention.in_proj_weight`` of each attention module: the transposed constant of the MatMul node
    the exporter names ``/<module path>/MatMul`` (e.g. ``/mid_attn/attn/MatMul``)."""
    found = {}
    for node in graph.node:
        constants = [i for i in node.input if i in named and i.startswith("onnx::")]
        if node.op_type == "MatMul" and node.name.endswith("/attn/MatMul") and len(constants) == 1:
            module = node.name.strip("/")[:-len("/MatMul")].replace("/", ".")
            found[f"{module}.in_proj_weight"] = named[constants[0]].T
    return found


def check_parity(model: UNet, bundle, null_class: int, spec: str, tolerance: float = 1e-3) -> None:
    """The rebuilt network must give the bundle's output on noised inputs of every class and the null class."""
    rng = np.random.default_rng(0)
    n = null_class + 1
    x = rng.standard_normal((n, bundle.card.n_channels, *bundle.card.image_size)).astype(np.float32)
    t = np.linspace(0, 999, n).astype(np.int64)
    cls = np.arange(n, dtype=np.int64)
    want = next(iter(bundle.run(bundle.card.feeds(x, t, cls)).values()))
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(cls)).numpy()
    error = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))
    if error > tolerance:
        raise ValueError(f"--init-from {spec}: the weights rebuilt from its ONNX graph differ from it (relative "
                         f"error {error:.2g}); fine-tune from its training run instead")


def class_rows(start: GeneratorStart, classes: list[str], label_map: dict[str, list[str]] | None,
               report=print) -> list[int]:
    """For each of the run's classes (then its null class), the row of the start's class embedding it begins from."""
    def originals(name: str, mapping: dict | None) -> set[str]:
        return set(mapping.get(name, [name])) if mapping else {name}

    rows = []
    for name in classes:
        own = originals(name, label_map)
        holding = [k for k, theirs in enumerate(start.classes) if own and own <= originals(theirs, start.label_map)]
        if holding:
            rows.append(holding[0])
        elif name in start.classes:
            rows.append(start.classes.index(name))
        else:
            rows.append(len(start.classes))
            report(f"class {name}: no counterpart among the start's classes ({', '.join(start.classes)}); its "
                   "embedding starts from the unconditional one")
    return rows + [len(start.classes)]


def load_start(model: UNet, start: GeneratorStart, rows: list[int]) -> None:
    """The start's weights into ``model``, the class embedding taken row by row (:func:`class_rows`)."""
    state = dict(start.state)
    state["class_emb.weight"] = start.state["class_emb.weight"][rows].clone()
    model.load_state_dict(state)
