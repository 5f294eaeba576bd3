"""The accuracy gate: the int8 model must agree with its fp32 export on every calibration image."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from layer.embedder import Embedder

DEFAULT_MIN_COSINE = 0.999


class GateFailed(RuntimeError):
    def __init__(self, result: GateResult) -> None:
        super().__init__(
            f"accuracy gate failed: int8 vs fp32 cosine min {result.cosine_min:.5f} "
            f"(worst: {result.worst}) < threshold {result.threshold}; "
            "try --precision fp32 or other quantization settings"
        )
        self.result = result


@dataclass(frozen=True)
class GateResult:
    n_images: int
    cosine_min: float
    cosine_mean: float
    worst: str
    threshold: float
    passed: bool
    per_image: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_gate(
    int8: Embedder, fp32: Embedder, images: list[tuple[str, np.ndarray]], threshold: float = DEFAULT_MIN_COSINE
) -> GateResult:
    """Cosine of each image's int8 vector to its fp32 vector, both from the same preprocessed pixels."""
    cosines: dict[str, float] = {}
    for name, pixels in images:
        a = int8.embed_pixels(pixels[None])[0][0].astype(np.float64)
        b = fp32.embed_pixels(pixels[None])[0][0].astype(np.float64)
        cosines[name] = float(a @ b)
    worst = min(cosines, key=lambda k: cosines[k])
    vals = np.array(list(cosines.values()))
    return GateResult(
        n_images=len(cosines),
        cosine_min=round(float(vals.min()), 6),
        cosine_mean=round(float(vals.mean()), 6),
        worst=worst,
        threshold=threshold,
        passed=bool(vals.min() >= threshold),
        per_image={k: round(v, 6) for k, v in cosines.items()},
    )
