"""Which int8 kernel path this CPU takes in onnxruntime, and the session options that keep it exact.

The model's MatMuls multiply uint8 activations by signed int8 weights. How a CPU computes those products
decides whether the result is exact:

- x86 with VNNI (AVX512-VNNI, AVX-VNNI) or AMX, and arm64 (NEON, dot product, i8mm): 32-bit accumulation,
  exact.
- x86 with AVX2 or AVX-512 but no VNNI: VPMADDUBSW adds pairs of u8×s8 products in a saturating 16-bit
  lane, which clips large pairs (min cosine to fp32 0.9989 measured on an AVX2 EPYC). onnxruntime's
  ``session.x64quantprecision`` converts the weights to u8 at load (an exact, XOR-0x80 re-encoding with
  adjusted zero points), which moves the products to a 16-bit-widening kernel that cannot saturate. It only
  acts at graph level "extended" and costs ~190 ms of session creation, so it is set only on those CPUs.

arm64 CPUs with SME take KleidiAI's dynamic-quantization GEMM in onnxruntime ≥ 1.22, which quantizes
activations per row instead of per tensor: other vectors than every other CPU (cosine 0.6 under QEMU's SME
emulation). ``mlas.disable_kleidiai`` keeps them on the common path; no Lambda CPU has SME today.

The path's name comes from ``/proc/cpuinfo`` (the flags the kernel reports after checking OS support, which
is what the gate's emulated CPUs fake too: ``layer.convert.cpu_paths``), but the decision to re-encode does
not trust it: QEMU and some hypervisors report flags the kernels do not match. ``probe_u8s8`` runs one tiny
int8 MatMul whose u8×s8 pairs overflow a 16-bit lane (255·127·2 > 32,767) in onnxruntime itself, and the
session is tuned by what it computed (``int8_tuning``): ~5 ms, once per process.
"""

from __future__ import annotations

import base64
import platform
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

CPUINFO = Path("/proc/cpuinfo")

# The flags that decide the int8 kernel path (names as /proc/cpuinfo spells them).
INT8_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimddp",
    "i8mm",
    "sve",
    "sme",
)

# kernel path → (u8×s8 exact?, what it is). The order is the detection priority within an architecture.
KERNEL_PATHS: dict[str, tuple[bool, str]] = {
    "x86-amx": (True, "AMX tiles (TDPBUSD), exact"),
    "x86-avx512-vnni": (True, "AVX512-VNNI (VPDPBUSD), exact"),
    "x86-avx-vnni": (True, "AVX-VNNI (VEX VPDPBUSD), exact"),
    "x86-avx512": (False, "AVX-512 without VNNI (VPMADDUBSW saturates): weights re-encoded u8 at load"),
    "x86-avx2": (False, "AVX2 without VNNI (VPMADDUBSW saturates): weights re-encoded u8 at load"),
    "x86-sse": (False, "SSE only: weights re-encoded u8 at load"),
    "arm64-i8mm": (True, "NEON i8mm (UMMLA/SMMLA), exact"),
    "arm64-dotprod": (True, "NEON dot product (UDOT/SDOT), exact"),
    "arm64-neon": (True, "NEON widening multiply-accumulate, exact"),
}


@dataclass(frozen=True)
class CpuInfo:
    arch: str  # "x86_64" | "aarch64"
    model: str
    flags: frozenset[str] = field(default_factory=frozenset)  # the INT8_FLAGS this CPU has

    @property
    def kernel_path(self) -> str:
        f = self.flags
        if self.arch in ("aarch64", "arm64"):
            return "arm64-i8mm" if "i8mm" in f else "arm64-dotprod" if "asimddp" in f else "arm64-neon"
        if "amx_int8" in f:
            return "x86-amx"
        if "avx512_vnni" in f:
            return "x86-avx512-vnni"
        if "avx_vnni" in f:
            return "x86-avx-vnni"
        if "avx512f" in f and "avx512bw" in f:
            return "x86-avx512"
        return "x86-avx2" if "avx2" in f else "x86-sse"

    @property
    def exact_u8s8(self) -> bool:
        return KERNEL_PATHS[self.kernel_path][0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "model": self.model,
            "int8_flags": sorted(self.flags),
            "kernel_path": self.kernel_path,
            "exact_u8s8": self.exact_u8s8,
        }

    @classmethod
    def parse(cls, text: str, arch: str) -> CpuInfo:
        """From the text of ``/proc/cpuinfo`` (its first processor block: Lambda CPUs are homogeneous)."""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                if fields:
                    break
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        words = set((fields.get("flags") or fields.get("features") or "").split())
        model = fields.get("model name") or _arm_model(fields) or "unknown"
        return cls(arch=arch, model=model, flags=frozenset(f for f in INT8_FLAGS if f in words))

    @staticmethod
    def describes_other_arch(text: str, arch: str) -> bool:
        """True when /proc/cpuinfo was written for another architecture than this process runs on: an arm64
        process under QEMU < 8.1 user-mode emulation reads the x86 host's file (onnxruntime's cpuinfo
        library then hangs or crashes)."""
        arm_text = "CPU implementer" in text or "Features" in text
        return arm_text != (arch in ("aarch64", "arm64"))

    @classmethod
    def detect(cls, path: Path = CPUINFO) -> CpuInfo:
        arch = platform.machine().lower()
        try:
            return cls.parse(path.read_text(errors="replace"), arch)
        except OSError:
            return cls(arch=arch, model="unknown")


# MIDR part numbers of the Arm cores behind AWS Graviton (arm64 /proc/cpuinfo names no model).
_ARM_PARTS = {
    ("0x41", "0xd0c"): "Arm Neoverse-N1 (Graviton2)",
    ("0x41", "0xd40"): "Arm Neoverse-V1 (Graviton3)",
    ("0x41", "0xd4f"): "Arm Neoverse-V2 (Graviton4)",
    ("0x41", "0xd84"): "Arm Neoverse-V3",
    ("0x41", "0xd08"): "Arm Cortex-A72 (Graviton1)",
}


def _arm_model(fields: Mapping[str, str]) -> str | None:
    key = (fields.get("cpu implementer", "").lower(), fields.get("cpu part", "").lower())
    if key == ("", ""):
        return None
    return _ARM_PARTS.get(key, f"arm64 implementer {key[0]} part {key[1]}")


# The probe: DynamicQuantizeMatMul (the op the int8 towers' MatMuls become) of a float input [8, 128] of 0s and
# 1s (quantized to u8 0 and 255) by an int8 weight [128, 32] of 127s. Exact: 127 × (number of 1s) per
# output; a saturating kernel clips each pair of products at 32,767 instead of 64,770 and returns about half.
# Written by layer.convert.probe_model (tests/layer/convert/test_probe_model.py checks it still writes these).
PROBE_MODEL = (
    "eNrt2D2KwlAUhuEc4+DxjD/xqs1UGcuAU4uNcJkqkMLWJtzEDASS3JAfQmzMBtyUKzMIFm5hOE/5wreBD1F8hkmcbxOVBme1v3+T"
    "R6AIGho1fhmqJKJJ41+iQvu5jrNKQPv1kRc6iDbr3zZTaRwea5VV8SXyVOXVyX4a6vSnz4Uu9V8lqN6VO/+5cG42doC2ZUpo3M6+"
    "MsYYY4wxxhhj7N9zlggWyNfR4A4Nozs46z6a8u10cME4rQiUmNMUQYxpgEgmdhAsCVoxo0lf8VkHaMshGZaQC3p/Iix4ABMfK84="
)
PROBE_INPUT = "a"
PROBE_OUTPUT = "y"
PROBE_SHAPE = (8, 128)
X64_PRECISION = ("session.x64quantprecision", "1")  # weights re-encoded u8 at load; acts at "extended" or above


@dataclass(frozen=True)
class Probe:
    """What onnxruntime's int8 kernels compute on this CPU, measured rather than read from flags."""

    u8s8_exact: bool  # the u8×s8 GEMM as is (no re-encoding) is exact
    reencoded_exact: bool | None  # with session.x64quantprecision (x86 only; None: not needed or not x86)
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe_run(config: tuple[tuple[str, str], ...], optimization: str) -> bool:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[optimization]
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    for key, value in config:
        so.add_session_config_entry(key, value)
    model = zlib.decompress(base64.b64decode(PROBE_MODEL))
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    a = np.ones(PROBE_SHAPE, dtype=np.float32)
    a[:, 0] = 0.0  # the quantization range [0, 1]: 0 → 0, 1 → 255
    exact = a.sum(axis=1, keepdims=True) * 127.0
    y = session.run([PROBE_OUTPUT], {PROBE_INPUT: a})[0]
    return bool(np.allclose(y, exact, rtol=1e-4, atol=1e-2))


@cache
def probe_u8s8(arch: str | None = None) -> Probe:
    """Run the probe (once per process and architecture): as the int8 towers' sessions would run, first
    without re-encoding, then, on x86 where that saturated, with it."""
    arch = (arch or platform.machine()).lower()
    base: tuple[tuple[str, str], ...] = (ARM64_KLEIDIAI_OFF,) if arch in ("aarch64", "arm64") else ()
    t0 = time.perf_counter()
    exact = _probe_run(base, "basic")
    fixed = None if exact or arch not in ("x86_64", "amd64") else _probe_run((X64_PRECISION,), "extended")
    return Probe(u8s8_exact=exact, reencoded_exact=fixed, ms=round((time.perf_counter() - t0) * 1e3, 2))


@dataclass(frozen=True)
class SessionTuning:
    """Session options for the int8 model on one CPU (see the module docstring for why each is set)."""

    config: tuple[tuple[str, str], ...] = ()
    optimization: str = "basic"  # model.onnx is saved pre-optimized ("extended") by the build


ARM64_KLEIDIAI_OFF = ("mlas.disable_kleidiai", "1")


def int8_tuning(
    cpu: CpuInfo, quantization: Mapping[str, Any] | None = None, probe: Probe | None = None
) -> SessionTuning:
    """The int8 session options for this CPU: by what ``probe`` measured when given, else by the flags."""
    q = quantization or {}
    if cpu.arch in ("aarch64", "arm64"):
        return SessionTuning(config=(ARM64_KLEIDIAI_OFF,))
    exact = probe.u8s8_exact if probe is not None else cpu.exact_u8s8
    # 7-bit weights (reduce_range) cannot saturate; u8 weights never meet the u8×s8 kernel.
    if exact or q.get("reduce_range") or q.get("weight_type") == "uint8":
        return SessionTuning()
    return SessionTuning(config=(X64_PRECISION,), optimization="extended")


_MODEL_RE = re.compile(r"\s+")


def describe(cpu: CpuInfo) -> str:
    """One line for logs and reports: model, path and the int8 flags."""
    flags = ",".join(sorted(cpu.flags)) or "none"
    return f"{_MODEL_RE.sub(' ', cpu.model)} [{cpu.kernel_path}; int8 flags: {flags}]"
