"""The self-check: each loaded tower embeds its manifest canary (a small synthetic image, a short text) on the
CPU the function got, and the vectors are compared with the build's.

Two comparisons per tower: with the fp32 export's vector (the build's accuracy gate, valid on any CPU), and
with the shipped model's own vector for this architecture where the build computed one (x86 natively,
arm64 under emulation), at the agreement the gate demands between CPU paths (bit-identical in practice on
x86). A corrupted weight, a kernel that saturates where the flags promised it would not, or another
onnxruntime build fails one of them. The engine never raises for it: the functions read ``passed`` and
refuse to write vectors (``handler``).
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from layer.limits import Limits
from layer.manifest import IMAGE, TEXT, decode_vector

if TYPE_CHECKING:
    from layer.embedder import Embedder

FP32_AGREEMENT = 0.99999  # an fp32 session against the build's fp32 vector: float noise only


@dataclass(frozen=True)
class TowerCheck:
    tower: str
    passed: bool
    cosine_fp32: float | None = None
    min_cosine: float | None = None
    agreement: float | None = None  # with the build's int8 vector of this architecture
    agreement_threshold: float | None = None
    kernel_path: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class SelfCheck:
    passed: bool
    towers: tuple[TowerCheck, ...]
    ms: float

    @property
    def reason(self) -> str:
        return "; ".join(f"{t.tower}: {t.reason}" for t in self.towers if not t.passed) or ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a NaN cosine (a model that computes NaN) is written as null, never as ``NaN``."""
        d = asdict(self)
        d["towers"] = [
            {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(t).items()
                if v is not None
            }
            for t in self.towers
        ]
        return d


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


def _canary_vector(engine: Embedder, tower: str, given: dict[str, Any]) -> np.ndarray:
    from layer.embedder import pixel_values

    if tower == IMAGE:
        # The engine's preprocessing, but not the caller's limits (a MAX_IMAGE_PIXELS set below the canary's
        # 3,072 pixels must not fail the model).
        data = base64.b64decode(given["png_base64"])
        pixels, _, _ = pixel_values(data, engine.config, Limits(), fast_jpeg=engine.fast_jpeg, exif=engine.exif)
        return engine.image.embed(pixels[None])[0][0]
    if tower == TEXT and engine.text is not None:
        return engine.text.embed(str(given["text"])).vector
    raise ValueError(f"no canary runner for the {tower} tower")


def reference_path(vectors: dict[str, str], kernel_path: str, agreement: dict[str, float]) -> tuple[str, float] | None:
    """The build's vector to compare with on ``kernel_path``, and how close it must be: the same path's; else
    another x86 path's (x86 paths compute identical vectors); else another arm64 path's, more loosely."""
    if kernel_path in vectors:
        return kernel_path, agreement.get("same_path", FP32_AGREEMENT)
    family = kernel_path.split("-", maxsplit=1)[0]
    other = next((p for p in sorted(vectors) if p.split("-")[0] == family), None)
    if other is None:
        return None
    key = "same_arch" if family == "x86" else "arm64_other_path"
    return other, agreement.get(key, FP32_AGREEMENT)


def check_tower(engine: Embedder, tower: str, kernel_path: str) -> TowerCheck:
    session = engine.towers()[tower]
    canary = session.spec.canary
    if canary is None:
        return TowerCheck(tower, True, reason="the manifest has no canary for this tower: not checked")
    try:
        vector = _canary_vector(engine, tower, canary.input)
    except Exception as exc:  # a broken model file fails here: the check reports it, the caller decides
        return TowerCheck(tower, False, reason=f"the canary did not run: {type(exc).__name__}: {exc}")
    cos = _cos(vector, decode_vector(canary.fp32))
    if session.precision == "fp32":
        ok = cos >= FP32_AGREEMENT
        why = None if ok else f"fp32 vector differs from the build's: cosine {cos:.7f} < {FP32_AGREEMENT}"
        return TowerCheck(tower, ok, cosine_fp32=round(cos, 7), min_cosine=FP32_AGREEMENT, reason=why)
    problems = []
    if not cos >= canary.min_cosine:  # not `<`: a NaN vector (a NaN weight) must fail, not pass
        problems.append(f"cosine to fp32 {cos:.6f} < the gate's {canary.min_cosine}")
    agreement = threshold = None
    reference = reference_path(canary.int8, kernel_path, canary.agreement)
    if reference is not None:
        ref_path, threshold = reference
        agreement = _cos(vector, decode_vector(canary.int8[ref_path]))
        if not agreement >= threshold:
            problems.append(f"differs from the build's {ref_path} vector: cosine {agreement:.7f} < {threshold}")
    return TowerCheck(
        tower,
        not problems,
        cosine_fp32=round(cos, 7),
        min_cosine=canary.min_cosine,
        agreement=None if agreement is None else round(agreement, 8),
        agreement_threshold=threshold,
        kernel_path=kernel_path,
        reason="; ".join(problems) or None,
    )


def run_self_check(engine: Embedder) -> SelfCheck:
    """Every loaded tower's canary, on this CPU."""
    t0 = time.perf_counter()
    checks = tuple(check_tower(engine, name, engine.cpu.kernel_path) for name in engine.towers())
    ms = round((time.perf_counter() - t0) * 1e3, 2)
    return SelfCheck(passed=all(c.passed for c in checks), towers=checks, ms=ms)
