"""``clip-lambda bench`` (bench/run.py) runs end to end and writes its three artefacts (timings are reported,
never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main

pytestmark = pytest.mark.slow


def test_bench_writes_json_markdown_and_plot(model_dir: Path, tmp_path: Path) -> None:
    rc = main(
        [
            "--model",
            str(model_dir),
            "--count",
            "2",
            "--out",
            str(tmp_path),
            "--contenders",
            "ours-int8",
            "ours-fp32",
            "--workloads",
            "png-640x480",
            "model-only",
        ]
    )
    assert rc == 0
    result = json.loads((tmp_path / "latest.json").read_text())
    int8 = result["summary"]["ours-int8"]
    assert set(int8["workloads"]) == {"png-640x480", "model-only"}
    assert int8["workloads"]["model-only"]["n"] == 2 and int8["peak_rss_mib"] > 0
    assert int8["cosine_to_ours_fp32"]["png-640x480"] >= 0.999  # same image, same weights
    assert "| model-only | ours-int8 |" in (tmp_path / "latest.md").read_text()
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_name_the_machine(model_dir: Path, tmp_path: Path) -> None:
    from layer.cpu import CpuInfo

    cpu = CpuInfo.detect()
    assert main(["--model", str(model_dir), "--count", "1", "--out", str(tmp_path), "--contenders", "ours-int8",
                 "--workloads", "model-only"]) == 0  # fmt: skip
    machine = json.loads((tmp_path / "latest.json").read_text())["machine"]
    assert (machine["kernel_path"], machine["cpu"]) == (cpu.kernel_path, cpu.model)
    assert machine["int8_flags"] == sorted(cpu.flags)
    assert cpu.kernel_path in (tmp_path / "latest.md").read_text()
