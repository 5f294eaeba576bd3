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

Detection reads ``/proc/cpuinfo`` (the flags the kernel reports after checking OS support), which is what
the gate's emulated CPUs fake too (``layer.convert.cpu_paths``).
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class SessionTuning:
    """Session options for the int8 model on one CPU (see the module docstring for why each is set)."""

    config: tuple[tuple[str, str], ...] = ()
    optimization: str = "basic"  # model.onnx is saved pre-optimized ("extended") by the build


def int8_tuning(cpu: CpuInfo, quantization: Mapping[str, Any] | None = None) -> SessionTuning:
    q = quantization or {}
    if cpu.arch in ("aarch64", "arm64"):
        return SessionTuning(config=(("mlas.disable_kleidiai", "1"),))
    # 7-bit weights (reduce_range) cannot saturate; u8 weights never meet the u8×s8 kernel.
    if cpu.exact_u8s8 or q.get("reduce_range") or q.get("weight_type") == "uint8":
        return SessionTuning()
    return SessionTuning(config=(("session.x64quantprecision", "1"),), optimization="extended")


_MODEL_RE = re.compile(r"\s+")


def describe(cpu: CpuInfo) -> str:
    """One line for logs and reports: model, path and the int8 flags."""
    flags = ",".join(sorted(cpu.flags)) or "none"
    return f"{_MODEL_RE.sub(' ', cpu.model)} [{cpu.kernel_path}; int8 flags: {flags}]"
