"""``python -m layer.convert.embed_tokens MODEL_DIR IDS.npy OUT.npy``: the text tower on token ids, in the
session the runtime makes for it (``layer.embedder.load_text_tower``: the CPU's int8 tuning from the text
tower's own quantization settings, every graph optimization for the fp32 export), one text per run.

The text gate runs it here and in emulated CPUs (``layer.convert.cpu_paths``), where only the engine's
packages are installed: it imports numpy, onnxruntime and the engine, nothing of the build. Prints one JSON
line: the CPU report and the seconds per text.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from layer.cpu import CpuInfo, SessionTuning, int8_tuning
from layer.embedder import l2_normalize
from layer.errors import ModelDirError
from layer.manifest import Manifest, TextTower
from layer.session import SessionSettings, create_session


class TextSession:
    """The text tower of a model directory, as the runtime loads it on this CPU."""

    def __init__(
        self, model_dir: str | Path, *, precision: Literal["int8", "fp32"] = "int8", threads: int | None = None
    ):
        model_dir = Path(model_dir)
        tower = Manifest.read(model_dir).text_tower
        if tower is None:
            raise ModelDirError(f"{model_dir} has no text tower (built with --no-text)")
        self.tower: TextTower = tower
        self.cpu = CpuInfo.detect()
        tuning = int8_tuning(self.cpu, tower.quantization) if precision == "int8" else SessionTuning(optimization="all")
        self.settings = SessionSettings.auto(threads=threads, optimization=tuning.optimization, config=tuning.config)
        self.session = create_session(
            model_dir / (tower.file if precision == "int8" else tower.fp32_file), self.settings
        )

    def features(self, ids: np.ndarray) -> np.ndarray:
        """Raw ``text_embeds`` [N, dim] of int64 ids [N, context], one text per session run (dynamic int8
        scales activations per tensor: a batch would couple its texts)."""
        name, out = self.tower.input_name, self.tower.output_name
        return np.concatenate([self.session.run([out], {name: ids[i : i + 1]})[0] for i in range(len(ids))])

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Unit vectors [N, dim]."""
        return l2_normalize(self.features(ids))[0]

    def cpu_report(self) -> dict[str, Any]:
        return {
            **self.cpu.to_dict(),
            "session_config": dict(self.settings.config),
            "graph_optimization": self.settings.optimization,
        }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, ids_path, out_path = argv
    text = TextSession(model_dir, threads=1)
    ids = np.load(ids_path)
    t0 = time.perf_counter()
    vectors = text.embed(ids)
    seconds = (time.perf_counter() - t0) / max(1, len(ids))
    np.save(out_path, vectors)
    print(json.dumps({"cpu": text.cpu_report(), "seconds_per_text": round(seconds, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
