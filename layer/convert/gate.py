"""The accuracy gate: each int8 tower must agree with its fp32 export on every calibration input (images for
the vision tower, texts for the text tower), on this machine (here) and on the other CPU paths
(``layer.convert.cpu_paths``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_MIN_COSINE = 0.999  # int8 vs fp32, every image, every CPU path
# The same image's int8 vectors on two CPUs. x86 paths compute identical integers and identical float
# kernels (the Softmax is decomposed for that), so anything short of ~bit-identical is a regression;
# arm64 differs from x86 in float kernels (LayerNormalization, SVE exp), which requantization amplifies.
SAME_ARCH_AGREEMENT = 0.99999
CROSS_ARCH_AGREEMENT = 0.9995


class GateFailed(RuntimeError):
    def __init__(self, result: GateResult, tower: str = "", hint: str = "") -> None:
        super().__init__(
            f"{tower + ' ' if tower else ''}accuracy gate failed: int8 vs fp32 cosine min {result.cosine_min:.5f} "
            f"(worst: {result.worst}) < threshold {result.threshold}; "
            + (hint or "leave out --no-recover to let the build find an int8 mix that meets it, or --precision fp32")
        )
        self.result = result


@dataclass(frozen=True)
class GateResult:
    n_inputs: int
    cosine_min: float
    cosine_mean: float
    worst: str
    threshold: float
    passed: bool
    per_input: dict[str, float]  # each gate input's cosine, by name (an image's or a text's)
    unit: str = "images"  # what the inputs were: "images" | "texts"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    names: list[str], int8: np.ndarray, fp32: np.ndarray, threshold: float = DEFAULT_MIN_COSINE, unit: str = "images"
) -> GateResult:
    """Cosine of each input's int8 vector to its fp32 vector."""
    vals = np.sum(int8.astype(np.float64) * fp32.astype(np.float64), axis=1)
    cosines = dict(zip(names, (float(v) for v in vals), strict=True))
    worst = min(cosines, key=lambda k: cosines[k])
    return GateResult(
        n_inputs=len(cosines),
        cosine_min=round(float(vals.min()), 6),
        cosine_mean=round(float(vals.mean()), 6),
        worst=worst,
        threshold=threshold,
        passed=bool(vals.min() >= threshold),
        per_input={k: round(v, 6) for k, v in cosines.items()},
        unit=unit,
    )
