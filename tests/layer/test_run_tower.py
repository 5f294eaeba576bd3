"""``python -m layer.run_tower``: one int8 tower on its inputs exactly as the runtime runs it, what the build's
gate runs in emulated CPUs (nothing of the build imported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layer.cpu import CpuInfo, probe_u8s8
from layer.errors import ModelDirError
from layer.tower import TowerSession
from tests.layer.towers import token_ids

pytestmark = pytest.mark.slow

RUN_TOWER = """
import json, sys
from layer.run_tower import main
rc = main(sys.argv[1:])
build_only = ("torch", "onnx", "transformers")
build = sorted(m for m in sys.modules if m.split(".")[0] in build_only or m.startswith("layer.convert"))
print(json.dumps({"rc": rc, "build_modules": build}))
"""


def test_run_tower_embeds_as_the_runtime_and_imports_nothing_of_the_build(
    model_dir: Path, text: TowerSession, tmp_path: Path
) -> None:
    """``python -m layer.run_tower`` (what the gate runs in emulated CPUs) gives the runtime's vectors and
    reports the CPU, the probe and the session it used."""
    import json
    import subprocess
    import sys

    ids = token_ids([320, 2368], [1125, 539, 320, 1929])
    np.save(tmp_path / "ids.npy", ids)
    args = [str(model_dir), "text", str(tmp_path / "ids.npy"), str(tmp_path / "out.npy")]
    done = subprocess.run([sys.executable, "-c", RUN_TOWER, *args], capture_output=True, text=True, check=True)
    report, end = (json.loads(line) for line in done.stdout.splitlines())
    assert end == {"rc": 0, "build_modules": []}
    assert np.array_equal(np.load(tmp_path / "out.npy"), text.embed(ids)[0])
    cpu = CpuInfo.detect()
    assert report["cpu"]["kernel_path"] == cpu.kernel_path and report["cpu"]["file"] == "text_model.onnx"
    assert report["cpu"]["probe"]["u8s8_exact"] == probe_u8s8(cpu.arch).u8s8_exact
    assert report["cpu"]["session_config"] == dict(text.settings.config) and report["seconds_per_input"] >= 0


def test_run_tower_refuses_bad_arguments(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from layer.run_tower import main

    assert main([str(model_dir), "text"]) == 2 and "run_tower" in capsys.readouterr().err
    with pytest.raises(ModelDirError, match="has no audio tower"):
        main([str(model_dir), "audio", str(tmp_path / "in.npy"), str(tmp_path / "out.npy")])
