"""The benchmark's summary, table and plot (bench/report.py), from a tiny raw result: throughput and
percentiles per workload, ratios against fastembed measured in the same run, agreement with our fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.report import PEER, summarise, write_markdown, write_plot


def raw(seconds: list[float], vector: list[float]) -> dict[str, Any]:
    return {"workloads": {"png": seconds, "model-only": seconds}, "last_vectors": {"png": vector},
            "process_start": 100.0, "loaded_at": 101.5, "spawned_at": 99.5, "first_vector_at": 102.25,
            "peak_rss_mib": 512.04}  # fmt: skip


@pytest.fixture
def summary() -> dict[str, Any]:
    return summarise({
        "ours-int8": raw([0.010, 0.010, 0.020, 0.020], [1.0, 0.0]),
        "ours-fp32": raw([0.020, 0.020, 0.040, 0.040], [1.0, 1.0]),
        PEER: raw([0.040, 0.040, 0.080, 0.080], [0.0, 1.0]),
    })  # fmt: skip


def test_figures_per_workload_and_ratios_against_the_peer(summary: dict[str, Any]) -> None:
    ours = summary["ours-int8"]
    png = ours["workloads"]["png"]
    assert (png["n"], png["images_per_s"], png["p50_ms"]) == (4, 66.67, 15.0)
    assert png["p95_ms"] == pytest.approx(float(np.percentile([10, 10, 20, 20], 95)), abs=0.05)
    assert (png["speedup_vs_fastembed"], png["p50_speedup_vs_fastembed"]) == (4.0, 4.0)
    assert summary[PEER]["workloads"]["png"]["speedup_vs_fastembed"] == 1.0
    assert (ours["cold_start_s"], ours["load_s"], ours["peak_rss_mib"]) == (2.75, 1.5, 512.0)
    assert ours["cosine_to_ours_fp32"] == {"png": round(1 / np.sqrt(2), 5)} and summary["ours-fp32"][
        "cosine_to_ours_fp32"
    ] == {"png": 1.0}


def test_without_the_peer_or_our_fp32_there_are_no_ratios() -> None:
    alone = summarise({"ours-int8": raw([0.01], [1.0])})["ours-int8"]
    assert "speedup_vs_fastembed" not in alone["workloads"]["png"] and "cosine_to_ours_fp32" not in alone


def test_the_table_and_the_plot(summary: dict[str, Any], tmp_path: Path) -> None:
    result = {"machine": {"summary": "CPU X", "visible_cpus": 2, "onnxruntime": "1.2", "python": "3.11.9",
                          "cpu": "CPU X", "kernel_path": "x86-avx2"},
              "threads": 2, "images_per_workload": 4, "created_at": "2026-12-01T00:00:00Z",
              "workloads": {"png": "PNGs", "model-only": "tensors"}, "summary": summary}  # fmt: skip
    text = write_markdown(result, tmp_path / "r.md")
    assert text == (tmp_path / "r.md").read_text() and text.startswith("Machine: CPU X, 2 CPUs, onnxruntime 1.2")
    assert "| png | ours-int8 | 66.67 | 15.0 |" in text and "| 4.0 | 4.0 |" in text
    assert "| ours-int8 | 2.75 s | 512.0 |" in text
    write_plot(result, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
