"""One tower's session: the model file a ``TowerSpec`` names, tuned for this CPU, run one input at a time.

Both towers (image and text) load, run and normalize the same way, here: the image tower's inputs are
preprocessed pixels [N, 3, H, W], the text tower's token ids [N, context]. Inputs run through the model one
at a time: dynamic int8 quantization scales each activation per tensor, so inside a batch an input's
vector would depend on its batch-mates (cosine 0.99987 measured); a run per input keeps every vector a
function of its own input only, at almost no cost on CPU, where one ViT-B/32 image is already ~4 GFLOP of
GEMMs that saturate the cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from layer.cpu import CpuInfo, Probe, SessionTuning, int8_tuning
from layer.embedding import l2_normalize
from layer.errors import ModelDirError
from layer.manifest import TowerSpec
from layer.session import SessionSettings, create_session
from layer.settings import EngineSettings

Precision = Literal["int8", "fp32"]
FP32_TUNING = SessionTuning(optimization="all")  # the plain export: every graph optimization at load


class TowerSession:
    """``spec``'s model in a session for this CPU: the int8 file with the CPU's int8 tuning, or the fp32
    export with every graph optimization."""

    def __init__(self, spec: TowerSpec, path: Path, settings: SessionSettings, precision: Precision) -> None:
        self.spec, self.path, self.settings, self.precision = spec, path, settings, precision
        self.session = create_session(path, settings)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        spec: TowerSpec,
        *,
        precision: Precision,
        cpu: CpuInfo,
        engine: EngineSettings,
        threads: int | None = None,
        probe: Probe | None = None,
    ) -> TowerSession:
        """Threads and spinning from ``engine`` (this sandbox's CPU budget) unless ``threads`` is given; the
        graph level and the session options from the tower (its quantization) and the CPU (what ``probe``
        measured it computes)."""
        int8 = precision == "int8" and spec.precision == "int8"
        path = Path(model_dir) / (spec.file if int8 or spec.precision == "fp32" else spec.fp32_file)
        if not path.exists():
            raise ModelDirError(f"{path} not found")
        tuning = int8_tuning(cpu, spec.quantization, probe) if int8 else FP32_TUNING
        settings = SessionSettings.auto(engine, threads=threads, optimization=tuning.optimization, config=tuning.config)
        return cls(spec, path, settings, "int8" if int8 else "fp32")

    @property
    def dim(self) -> int:
        out = self.session.get_outputs()[0].shape[-1]
        return int(out) if isinstance(out, int) else self.spec.dim

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """Raw outputs [N, dim] for inputs [N, ...], one input per session run."""
        name, out = self.spec.input_name, self.spec.output_name
        rows = [self.session.run([out], {name: inputs[i : i + 1]})[0] for i in range(inputs.shape[0])]
        return np.concatenate(rows, axis=0)

    def embed(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors [N, dim] and their norms [N]."""
        return l2_normalize(self.features(inputs))

    def report(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "file": self.path.name,
            "session_config": dict(self.settings.config),
            "graph_optimization": self.settings.optimization,
        }
