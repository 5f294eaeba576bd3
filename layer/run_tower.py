"""``python -m layer.run_tower MODEL_DIR TOWER INPUTS.npy OUT.npy``: one int8 tower of a model directory on
its inputs (preprocessed pixels or token ids), exactly as the runtime loads it on the CPU it detects.

The build's gate runs this in emulated CPUs (``layer.convert.cpu_paths``), where only the engine's packages
are installed: it imports numpy, onnxruntime and the engine, nothing of the build. Prints one JSON line: the
CPU report (with what the u8×s8 probe measured) and the seconds per input.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from layer.cpu import CpuInfo, probe_u8s8
from layer.errors import ModelDirError
from layer.manifest import Manifest
from layer.settings import EngineSettings
from layer.tower import TowerSession


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, name, inputs_path, out_path = argv
    spec = Manifest.read(model_dir).towers.get(name)
    if spec is None:
        raise ModelDirError(f"{model_dir} has no {name} tower")
    cpu = CpuInfo.detect()
    probe = probe_u8s8(cpu.arch)
    tower = TowerSession.load(
        Path(model_dir), spec, precision="int8", cpu=cpu, engine=EngineSettings(), threads=1, probe=probe
    )
    inputs = np.load(inputs_path)
    t0 = time.perf_counter()
    vectors, _ = tower.embed(inputs)
    seconds = (time.perf_counter() - t0) / max(1, len(inputs))
    np.save(out_path, vectors)
    report = {**cpu.to_dict(), "probe": probe.to_dict(), **tower.report()}
    print(json.dumps({"cpu": report, "seconds_per_input": round(seconds, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
