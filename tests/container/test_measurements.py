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
    assert measure_cost.main([*argv, "--prefetch", "0", "2", "--s3-first-byte-ms", "30", "--s3-mbps", "50"]) == 0
    result = json.loads(out.read_text())
    assert [(r["memory_mb"], r["prefetch"]) for r in result["sizes"]] == [(1769, 0), (1769, 2)]
    for row in result["sizes"]:
        assert row["ms_per_image"] > 0 and row["usd_per_million_images"] > 0
        assert row["usd_all_in"] > row["usd_per_million_images"] > row["usd_compute"]
        inference = row["stage_ms_per_image"]["InferenceTime"]
        arm64_ms = row["ms_per_image"] - inference + measure_cost.ARM64_INFERENCE_MS_PER_VCPU / 1.0  # 1769 MB
        assert row["ms_per_image_arm64_est"] == pytest.approx(arm64_ms, abs=0.2)
        assert row["usd_all_in_arm64_est"] > row["usd_compute_arm64_est"] > 0
        assert {"InferenceTime", "DecodeTime", "S3ReadTime"} <= set(row["stage_ms_per_image"])
        assert row["stage_ms_per_image"]["S3ReadTime"] >= 30  # every read went through the latency proxy
    assert result["s3_latency"] == {"first_byte_ms": 30.0, "mbps": 50.0}
    assert result["machine"]["kernel_path"] == CpuInfo.detect().kernel_path


def test_init_levers_measurement_runs(lambda_image: str, tmp_path: Path) -> None:
    from bench import init_levers

    out = tmp_path / "levers.json"
    assert init_levers.main(["--image", lambda_image, "--memory", "1769", "--runs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [lever["lever"] for lever in result["levers"]] == [name for name, _, _ in init_levers.LEVERS]
    for lever in result["levers"]:
        assert lever["without_ms"] > 0 and lever["with_ms"] > 0
        assert lever["gain_ms"] == round(lever["without_ms"] - lever["with_ms"], 1)
    assert all(p["warm_inference_ms"] > 0 for name, p in result["probes"].items() if name.startswith("ONNX"))
    assert any(name.startswith("handler.") for name, _ in result["importtime_ms"])
    assert result["machine"]["summary"] in out.with_suffix(".md").read_text()


def test_api_latency_measurement_runs(lambda_image: str, tmp_path: Path) -> None:
    from bench import api_latency

    out = tmp_path / "api.json"
    assert api_latency.main(["--image", lambda_image, "--warmup", "1", "--requests", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["memory_mb"] == api_latency.template_api_memory() == 1769
    assert result["requests"] == 3
    for key in ("function_ms", "client_wall_ms"):
        assert 0 < result[key]["p50"] <= result[key]["p99"] <= result[key]["max"]
    assert result["client_wall_ms"]["max"] >= result["function_ms"]["p50"]  # the wall includes the function
