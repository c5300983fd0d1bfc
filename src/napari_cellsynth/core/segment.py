"""Segment cells, nuclei or chromosomes with Cellpose 3 (frame by frame for stacks and time series).

A model is a built-in name (``cyto3``, ``nuclei``, … downloaded by Cellpose on first use, which
needs internet), the path of a model file trained with ``training/trainers/cellpose.py``, or a
``cellpose`` bundle (a folder, or ``zoo:NAME``): ``card.json`` with the network's widths and
``arrays.npz`` with its weights, checked by sha256 and never unpickled.  A path that does not exist is
refused here: Cellpose itself would silently fall back to downloading cyto3.

Given a :class:`~napari_cellsynth.core.jobs.CancelToken`, :func:`segment` runs each frame in a helper thread
and checks the token before every batch of tiles the network runs, so that a cancelled job stops within
one batch of tiles rather than at the end of a large frame.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import CELLPOSE_NBASE, CELLPOSE_THRESHOLDS, check_kind, load_arrays, read_card, verify_files
from .images import ImageInputError
from .jobs import CancelToken, check_cancelled, in_thread
from .numba_cached import import_cellpose
from .zoo import PREFIX, open_zoo, resolve

BUILT_IN = ("cyto3", "nuclei", "cyto2", "cyto", "tissuenet_cp3", "livecell_cp3", "bact_fluor_cp3",
            "bact_phase_cp3", "deepbacs_cp3", "yeast_BF_cp3", "yeast_PhC_cp3")


@dataclass
class SegmentSettings:
    model: str  # a built-in name or a model file
    diameter: float | None = None  # None: the model's own (its training diameter)
    channels: tuple[int, int] = (0, 0)  # Cellpose's [cytoplasm, nucleus] convention; 0 = grayscale
    flow_threshold: float | None = None  # None: the model's own (a bundle's card), else Cellpose's 0.4
    cellprob_threshold: float | None = None  # None: the model's own (a bundle's card), else Cellpose's 0.0
    min_size: int = 15

    def __post_init__(self):
        if self.diameter is not None and not self.diameter > 0:
            raise ValueError(f"object diameter {self.diameter} px: give one above 0 (--diameter), or leave it unset "
                             "for the model's own")
        if self.min_size < 0:
            raise ValueError(f"minimum object size {self.min_size} px: give 0 or more")

    def thresholds(self, model) -> tuple[float, float]:
        """The flow and cell-probability thresholds to run ``model`` with: these settings' where set, else the
        model's own (:func:`load_bundle_model` gives a bundle's model its card's)."""
        own = getattr(model, "mask_thresholds", CELLPOSE_THRESHOLDS)
        return (own[0] if self.flow_threshold is None else float(self.flow_threshold),
                own[1] if self.cellprob_threshold is None else float(self.cellprob_threshold))


CELLPOSE_STYLE = 256  # Cellpose's inference keeps a style vector this wide per image (its own last width)


def _pad_style(net) -> None:
    """Let a network narrower than Cellpose's own run through Cellpose's inference, which stores a 256-wide
    style vector per image: its style is padded with zeros.  The style is only returned, never used for masks."""
    forward = net.forward

    def padded(data):
        y, style, *rest = forward(data)
        wide = style.new_zeros((style.shape[0], CELLPOSE_STYLE))
        wide[:, :style.shape[1]] = style
        return (y, wide, *rest)
    net.forward = padded


def cellpose_from_weights(state: dict, nbase=CELLPOSE_NBASE, channels: int = 2):
    """A CellposeModel on the CPU whose network has the widths ``nbase`` and the weights ``state`` (arrays or
    tensors of any float dtype, e.g. fp16 from a bundle; they are loaded as float32)."""
    models = import_cellpose().models
    from cellpose.resnet_torch import CPnet

    from .bundle import BundleError

    model = models.CellposeModel(gpu=False, pretrained_model=False, model_type=None, mkldnn=False, nchan=channels)
    net = CPnet([channels, *nbase], 3, sz=3, mkldnn=False, max_pool=True)
    own = net.state_dict()
    if set(own) != set(state):
        raise BundleError(f"the Cellpose weights do not fit a network of widths {list(nbase)} "
                          f"({len(set(own) ^ set(state))} tensors differ); the bundle's card and weights disagree")
    for key, tensor in own.items():  # copied in place, each in its tensor's own dtype (fp16 weights become fp32)
        value = state[key]
        tensor.copy_(tensor.new_tensor(np.asarray(value.cpu().numpy() if hasattr(value, "numpy") else value)))
    if nbase[-1] != CELLPOSE_STYLE:
        _pad_style(net)
    model.net = net.to(model.device).eval()
    model.nbase = [channels, *nbase]
    model.diam_mean = float(net.diam_mean.item())
    model.diam_labels = float(net.diam_labels.item())
    return model


def load_bundle_model(folder):
    """The Cellpose model of a ``cellpose`` bundle (a folder or ``zoo:NAME``), its files checked by sha256."""
    folder = resolve(folder)
    card = read_card(folder)
    check_kind(card, "cellpose", str(folder))
    verify_files(folder, card)
    net = card.cellpose
    model = cellpose_from_weights(load_arrays(folder, card), net.nbase, net.nchan)
    model.mask_thresholds = net.mask_thresholds
    return model


def model_thresholds(model: str) -> tuple[float, float] | None:
    """The flow and cell-probability thresholds a model runs with by default, without loading its weights or
    downloading anything: a bundle's card's, Cellpose's own for other models, None while a zoo bundle is not
    downloaded yet or its card cannot be read."""
    if not is_bundle(model):
        return CELLPOSE_THRESHOLDS
    try:
        if str(model).startswith(PREFIX) and open_zoo().where(str(model)[len(PREFIX):]) == "not downloaded":
            return None
        return read_card(resolve(model)).cellpose.mask_thresholds
    except (OSError, ValueError):  # BundleError is a ValueError
        return None


def is_bundle(model: str) -> bool:
    return str(model).startswith("zoo:") or (Path(model) / "card.json").is_file()


CELLPOSE_HOST = ("www.cellpose.org", 443)  # where Cellpose downloads its built-in models from


def builtin_weights(name: str) -> Path:
    """Where Cellpose keeps a built-in model's weights (its ``model_path``, without downloading them)."""
    models = import_cellpose().models

    basename = f"{name}torch_0" if name in ("cyto", "cyto2", "nuclei") else name
    return Path(models.MODEL_DIR) / basename


def cellpose_reachable(timeout: float = 1.0) -> bool:
    """Whether Cellpose's model server answers (a TCP connection within ``timeout`` seconds)."""
    import socket

    try:
        with socket.create_connection(CELLPOSE_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def available_builtins(timeout: float = 1.0) -> list[str]:
    """The built-in models that can be used now: those whose weights are cached, or all when the server answers."""
    cached = [name for name in BUILT_IN if builtin_weights(name).is_file()]
    return list(BUILT_IN) if len(cached) < len(BUILT_IN) and cellpose_reachable(timeout) else cached


def check_builtin(name: str) -> None:
    """A one-line error, at once, for a built-in model that is not cached while the server does not answer
    (Cellpose itself fails only after its download times out, with a raw urlopen error)."""
    weights = builtin_weights(name)
    if not weights.is_file() and not cellpose_reachable():
        raise ImageInputError(
            f"Cellpose's built-in model '{name}' is not downloaded ({weights}) and {CELLPOSE_HOST[0]} cannot be "
            f"reached: use zoo:cellpose-chromosomes or a model file, or download it where there is internet and copy "
            f"{weights.parent} here (or point CELLPOSE_LOCAL_MODELS_PATH at a copy)")


def load_model(model: str):
    """A CellposeModel on the CPU for a built-in name, an existing model file or a ``cellpose`` bundle."""
    models = import_cellpose().models

    # MKL-DNN off: with it Cellpose re-scripts the network with torch.jit on every forward pass, which is slower
    # here (16.5-17.8 s against 20.3-22.4 s for the sample metaphase on one core) and fails when two threads
    # of a batch worker run the same model at once ("Can't redefine method ... MkldnnBatchNorm")
    if model in BUILT_IN:
        check_builtin(model)
        return models.CellposeModel(gpu=False, model_type=model, mkldnn=False)
    if is_bundle(model):
        return load_bundle_model(model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"Cellpose model {model!r} is neither a built-in name ({', '.join(BUILT_IN[:4])}, …), "
                                "a cellpose bundle (zoo:NAME) nor an existing model file; train one with "
                                "cellsynth train cellpose")
    try:  # Cellpose's own loader first: it reads its own files of every version (names missing, sizes by file name)
        return models.CellposeModel(gpu=False, pretrained_model=str(path), mkldnn=False)
    except Exception:  # noqa: BLE001 - a narrower network (size mismatch), or no weights: ours reads or names why
        return load_model_file(path)  # its widths read from the file


def network_widths(state: dict) -> tuple[int, ...]:
    """The widths per level of the Cellpose network whose state dict this is (Cellpose's own, or narrower)."""
    try:
        return tuple(int(state[f"downsample.down.res_down_{i}.conv.conv_0.2.weight"].shape[0]) for i in range(4))
    except (KeyError, AttributeError, IndexError):
        raise ImageInputError("not a Cellpose network's weights (no downsampling convolutions); pass a model file "
                              "that cellsynth train cellpose or Cellpose wrote") from None


def load_model_file(path: Path, nbase=None):
    """The CellposeModel of a model file that ``cellsynth train cellpose`` or Cellpose wrote: a state dict, loaded
    with ``weights_only`` (tensors only, never arbitrary objects), its widths read from it unless given, so that a
    network narrower than Cellpose's own (``--nbase``, or trained on from a zoo bundle) segments too."""
    import pickle

    import torch

    from .bundle import BundleError

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:  # torch's message invites an unsafe load: not repeated
        state, why = None, "no tensors alone in it"
    except (RuntimeError, EOFError) as err:
        state, why = None, str(err).splitlines()[0] if str(err) else type(err).__name__
    else:
        why = f"it holds a {type(state).__name__}, not a network's weights"
    if not isinstance(state, dict):
        raise ImageInputError(f"{path} is not a Cellpose model file ({why}); pass one that cellsynth train cellpose "
                              "or Cellpose wrote, or a cellpose bundle")
    widths = network_widths(state)  # also refuses a state dict of another network
    channels = int(state["downsample.down.res_down_0.conv.conv_0.2.weight"].shape[1])
    try:
        return cellpose_from_weights(state, tuple(nbase or widths), channels)
    except BundleError as err:
        raise ImageInputError(f"{path} does not hold the weights of a whole Cellpose network ({err}); pass a model "
                              "file that cellsynth train cellpose wrote, or a cellpose bundle") from None


MIN_SIDE = 8  # smaller frames fail inside Cellpose (1 px wide) or in the object table that follows (under 8 px)


def frames_of(image: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, bool]:
    """The image as a list of 2-D (or 2-D + channels) frames, and whether it was a stack."""
    image = np.asarray(image)
    if image.dtype.kind not in "uif":
        raise ImageInputError(f"image dtype {image.dtype} cannot be segmented; give integer or float pixels")
    spatial = image.ndim - (channel_axis is not None)
    sides = np.delete(np.array(image.shape), channel_axis) if channel_axis is not None else np.array(image.shape)
    if spatial in (2, 3) and sides[-2:].min() < MIN_SIDE:
        raise ImageInputError(f"image of shape {image.shape} has frames under {MIN_SIDE}×{MIN_SIDE} pixels; "
                              "Cellpose needs at least that")
    if spatial == 2:
        return image[None], False
    if spatial == 3:
        if channel_axis is not None and channel_axis != image.ndim - 1:
            image = np.moveaxis(image, channel_axis, -1)
        return image, True
    raise ImageInputError(f"image of shape {image.shape} is not a 2-D image or a stack of 2-D frames "
                          "(T×Y×X); split higher dimensions first")


def _eval_frame(model, frame: np.ndarray, settings: SegmentSettings, on_tiles=None,
                cancel: CancelToken | None = None) -> np.ndarray:
    """Cellpose on one frame; ``on_tiles(n)`` after each batch of ``n`` network tiles, ``cancel`` checked
    before each batch (a forward pre-hook on the network)."""
    done = [0]

    def before_batch(module, inputs):
        check_cancelled(cancel)
        done[0] += int(inputs[0].shape[0])
        if on_tiles is not None:
            on_tiles(done[0])

    net = getattr(model, "net", None)
    handle = net.register_forward_pre_hook(before_batch) if net is not None and (on_tiles or cancel) else None
    flow, cellprob = settings.thresholds(model)
    try:
        masks, _, _ = model.eval(frame, diameter=settings.diameter, channels=list(settings.channels),
                                 channel_axis=-1 if frame.ndim == 3 else None, flow_threshold=flow,
                                 cellprob_threshold=cellprob, min_size=settings.min_size)
    finally:
        if handle is not None:
            handle.remove()
    check_cancelled(cancel)
    return masks


def segment(image: np.ndarray, settings: SegmentSettings, channel_axis: int | None = None,
            model=None, cancel: CancelToken | None = None) -> Generator[tuple, None, np.ndarray]:
    """Yield progress per frame; return int32 labels of the image's spatial shape (T×Y×X for stacks).

    With ``cancel``, each frame runs in a helper thread: progress is yielded while it runs, as
    ``(frame, frames, "frame i of n: k tiles …")``, and the frame stops at its next batch of tiles once the
    token is set."""
    frames, is_stack = frames_of(image, channel_axis)
    if np.issubdtype(frames.dtype, np.floating) and not np.isfinite(frames).all():
        raise ImageInputError("the image contains NaN or infinite pixels; fill them before segmenting")
    model = model or load_model(settings.model)
    labels = np.zeros(frames.shape[:3], np.int32)
    n = len(frames)
    yield 0, n
    for i, frame in enumerate(frames):
        check_cancelled(cancel)
        if cancel is None:
            labels[i] = _eval_frame(model, frame, settings)
        else:
            def step(report, i=i, frame=frame):
                report(i, n, f"frame {i + 1} of {n}: Cellpose")
                return _eval_frame(model, frame, settings,
                                   lambda tiles: report(i, n, f"frame {i + 1} of {n}: {tiles} tiles through the "
                                                              "network"), cancel)
            labels[i] = yield from in_thread(step, cancel, total=n)
        yield i + 1, n
    return labels if is_stack else labels[0]


def estimate_diameter(image: np.ndarray, settings: SegmentSettings, channel_axis: int | None = None, model=None,
                      cancel: CancelToken | None = None) -> float:
    """Median object diameter (pixels) after a first pass at the model's own diameter (first frame);
    ``cancel`` is checked before each batch of tiles."""
    utils = import_cellpose().utils

    frames, _ = frames_of(image, channel_axis)
    model = model or load_model(settings.model)
    first = SegmentSettings(settings.model, None, settings.channels, settings.flow_threshold,
                            settings.cellprob_threshold, settings.min_size)
    if np.issubdtype(frames.dtype, np.floating) and not np.isfinite(frames[0]).all():
        raise ImageInputError("the image contains NaN or infinite pixels; fill them before segmenting")
    masks = _eval_frame(model, frames[0], first, cancel=cancel)
    if masks.max() == 0:
        raise ValueError("no objects found at the model's own diameter; set the diameter by hand")
    return float(utils.diameters(masks)[0])
