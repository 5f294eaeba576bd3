"""The measurements behind the README's cold-start and cost tables, on a tiny run: they run, name their
machine, and produce the fields the tables are made of (figures are not asserted: they are measurements)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layer.cpu import CpuInfo

pytestmark = pytest.mark.container


def test_cold_start_measurement_runs(lambda_image: str, tmp_path: Path) -> None:
    from bench import cold_start as measure_cold_start

    out = tmp_path / "cold_start.json"
    assert measure_cold_start.main(["--image", lambda_image, "--memory", "1769", "--runs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["machine"]["kernel_path"] == CpuInfo.detect().kernel_path
    for fn in ("S3 function", "API function"):
        m = result["functions"][fn]
        assert 0 < m["init_ms"] < 10_000 and m["first_invoke_ms"] > 0 and m["second_invoke_ms"] > 0
    assert result["init_breakdown_ms"] and "INIT" in out.with_suffix(".md").read_text()
    assert result["machine"]["summary"] in out.with_suffix(".md").read_text()


def test_cost_measurement_runs(lambda_image: str, tmp_path: Path) -> None:
    from bench import cost as measure_cost

    out = tmp_path / "cost.json"
    argv = ["--image", lambda_image, "--memory", "1769", "--batch-size", "2", "--batches", "1", "--out", str(out)]
    assert measure_cost.main(argv) == 0
    result = json.loads(out.read_text())
    (row,) = result["sizes"]
    assert row["memory_mb"] == 1769 and row["ms_per_image"] > 0 and row["usd_per_million_images"] > 0
    assert {"InferenceTime", "DecodeTime", "S3ReadTime"} <= set(row["stage_ms_per_image"])
    assert result["machine"]["kernel_path"] == CpuInfo.detect().kernel_path
