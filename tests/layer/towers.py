"""Helpers of the tests on one tower of a model directory: a session loaded as the runtime loads it on this
CPU, and CLIP token-id rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layer.cpu import CpuInfo, probe_u8s8
from layer.manifest import TowerSpec
from layer.settings import EngineSettings
from layer.tower import TowerSession


def load(model_dir: Path, spec: TowerSpec, **kw: object) -> TowerSession:
    options: dict[str, object] = {"precision": "int8", "cpu": CpuInfo.detect(), "engine": EngineSettings()}
    options.update(threads=1, probe=probe_u8s8())
    options.update(kw)
    return TowerSession.load(model_dir, spec, **options)  # type: ignore[arg-type]


def token_ids(*rows: list[int], context: int = 77) -> np.ndarray:
    out = np.full((len(rows), context), 49407, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row) + 2] = [49406, *row, 49407]
    return out
