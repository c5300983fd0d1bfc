"""Which of a bundle's weight variants runs: the float32 graph (``model.onnx``) or an int8 one (``model.int8.onnx``).

A bundle may carry an int8 variant (``cellsynth export int8``), quantised statically with calibration on its own
training crops and accepted only when its top-1 agreement with float32 on held-out crops reached its tolerance; the
card's ``variants`` section records both.  The runtime then picks, for the machine it finds:

* ``CELLSYNTH_PRECISION=fp32`` or ``int8`` (or ``OnnxModel(precision=…)``) when set; int8 asked of a bundle
  without it, or with a variant that failed its tolerance, is refused with one line;
* otherwise (``auto``) int8 when ONNX Runtime runs on the CPU and the CPU has int8 dot-product instructions
  (x86 VNNI or AMX, Arm dot-product): on 2 AVX-512 VNNI cores the network ran 2.7× float32's speed and
  ``cellsynth classify`` 2.2× end to end (``docs/results.md`` §2d); float32 on GPUs and on CPUs without them, where
  the speed-up was not measured.

The choice depends only on the bundle, the providers and the CPU's features, never on a timing, so a rerun on the
same machine runs the same weights; :attr:`RunsAs.record` goes into provenance.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import BundleError

PRECISIONS = ("auto", "fp32", "int8")
FP32_FILE = "model.onnx"
# x86 VNNI (AVX-512 or AVX), AMX, or Arm's dot-product (Linux cpuinfo spells it asimddp)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


@dataclass(frozen=True)
class Int8Variant:
    """A card's int8 variant: its file, its measured top-1 agreement with float32 and the tolerance it met."""

    file: str
    top1_agreement: float
    tolerance: float
    agreement_on: str
    worst_class_kept: float = 1.0  # the least share of a class's fp32 calls that int8 called alike
    class_tolerance: float = 0.0
    speed: dict | None = None  # crops/s of fp32 and int8 on the exporting CPU, and the batch
    macro_f1: dict | None = None  # fp32's and int8's on the held-out crops (None each without labels)

    @classmethod
    def from_card(cls, card) -> "Int8Variant | None":
        data = (card.extra.get("variants") or {}).get("int8")
        if not data:
            return None
        try:
            kept = [float(c["kept"]) for c in (data.get("kept_calls") or {}).values()]
            return cls(str(data["file"]), float(data["top1_agreement"]), float(data["tolerance"]),
                       str(data["agreement_on"]), min(kept, default=1.0), float(data.get("class_tolerance", 0.0)),
                       data.get("speed"), data.get("macro_f1"))
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"bundle '{card.name}': its int8 variant section is incomplete ({err}); re-export it "
                              "with cellsynth export int8") from err

    @property
    def allowed(self) -> bool:
        return self.top1_agreement >= self.tolerance and self.worst_class_kept >= self.class_tolerance

    @property
    def shortfall(self) -> str:
        """Why it is not allowed (empty when it is)."""
        if self.top1_agreement < self.tolerance:
            return (f"its int8 variant agreed with fp32 on {self.top1_agreement:.1%} of {self.agreement_on}, below "
                    f"its tolerance {self.tolerance:.1%}")
        if self.worst_class_kept < self.class_tolerance:
            return (f"its int8 variant kept {self.worst_class_kept:.1%} of a class's fp32 calls, below its class "
                    f"tolerance {self.class_tolerance:.0%}")
        return ""


@dataclass(frozen=True)
class RunsAs:
    """The weights a session runs and why."""

    weights: str  # fp32 | int8
    file: str
    why: str

    @property
    def record(self) -> dict:
        return {"weights": self.weights, "file": self.file, "why": self.why}


@lru_cache(maxsize=1)
def _cpuinfo() -> list[tuple[str, str]]:
    """Linux's /proc/cpuinfo as (key, value) lines; empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    return [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in text.splitlines())]


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform says."""
    name = next((value for key, value in _cpuinfo() if key.lower() == "model name"), "")
    return name or platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_int8_dot() -> str | None:
    """The CPU's int8 dot-product feature (e.g. ``avx512_vnni``), or None when it has none or cannot be read."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "arm64 dot-product"  # every Apple silicon CPU has it
    flags = {flag for key, value in _cpuinfo() if key in ("flags", "Features") for flag in value.split()}
    return next((f for f in INT8_DOT_FLAGS if f in flags), None)


def requested_precision(precision: str | None = None) -> str:
    """``precision``, else ``CELLSYNTH_PRECISION``, else ``auto``; checked."""
    value = (precision or os.environ.get("CELLSYNTH_PRECISION", "") or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"precision {value!r} is unknown: use {', '.join(PRECISIONS)} (CELLSYNTH_PRECISION, or "
                         "cellsynth classify --precision)")
    return value


def choose_weights(card, on_cpu: bool, precision: str | None = None, cpu_feature: str | None | bool = False) -> RunsAs:
    """The weights to run for ``card``: see the module's doc.  ``cpu_feature`` stands in for the CPU's int8
    feature in tests (False: read this machine's)."""
    if not card.ONNX_GRAPH:  # a Cellpose bundle: its weights run in Cellpose's own torch network
        stored = card.cellpose.weights
        return RunsAs("fp32", "arrays.npz", f"Cellpose's network in torch, its weights stored in {stored} and "
                                            "computed in fp32; ONNX Runtime and int8 variants do not apply")
    asked = requested_precision(precision)
    variant = card.int8
    feature = cpu_int8_dot() if cpu_feature is False else cpu_feature
    if asked == "fp32":
        return RunsAs("fp32", FP32_FILE, "asked for")
    if asked == "int8":
        if variant is None:
            raise BundleError(f"bundle '{card.name}' has no int8 variant; make one with cellsynth export int8, or "
                              "use precision fp32")
        if not variant.allowed:
            raise BundleError(f"bundle '{card.name}': {variant.shortfall}; use precision fp32")
        return RunsAs("int8", variant.file, "asked for")
    if variant is None:
        return RunsAs("fp32", FP32_FILE, "the bundle has no int8 variant")
    if not variant.allowed:
        return RunsAs("fp32", FP32_FILE, variant.shortfall)
    if not on_cpu:
        return RunsAs("fp32", FP32_FILE, "runs on a GPU")
    if not feature:
        return RunsAs("fp32", FP32_FILE, "this CPU has no int8 dot-product instructions (VNNI, AMX, Arm dot)")
    return RunsAs("int8", variant.file, f"CPU with {feature}; top-1 agreement with fp32 {variant.top1_agreement:.1%} "
                                        f"on {variant.agreement_on}")
