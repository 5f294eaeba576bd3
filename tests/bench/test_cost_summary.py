"""The project's cost figures in one file (bench/cost_summary.py): each figure merged with who measured it, on
which CPU, and whether it meets its target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import cost_summary
from bench.cost_summary import TARGETS, update

MACHINE = {"model": "AMD EPYC 7R13", "int8_flags": ["avx2"], "kernel_path": "x86-avx2", "summary": "x"}


@pytest.fixture(autouse=True)
def this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost_summary, "machine", lambda: dict(MACHINE))


def test_figures_from_each_benchmark_are_merged_and_judged_against_their_targets(tmp_path: Path) -> None:
    path = tmp_path / "results" / "cost.json"
    update({"all_in_usd_per_million": 2.5}, "bench.cost", path, memory_mb=1024)
    data: dict[str, Any] = update({"backfill_10m_minutes": 90.0, "backfill_10m_usd": 20.0}, "bench.backfill_cost", path)
    assert data == json.loads(path.read_text())
    assert (data["all_in_usd_per_million"], data["backfill_10m_minutes"], data["backfill_10m_usd"]) == (2.5, 90.0, 20.0)
    assert data["met"] == {"all_in_usd_per_million": True, "backfill_10m_minutes": False, "backfill_10m_usd": True}
    assert data["targets"] == TARGETS and data["details"] == {"bench.cost": {"memory_mb": 1024}}
    measured = data["measured"]["backfill_10m_minutes"]
    assert measured["by"] == "bench.backfill_cost" and measured["at"].endswith("Z")
    assert (
        measured["cpu"] == data["cpu"] == {"model": "AMD EPYC 7R13", "int8_flags": ["avx2"], "kernel_path": "x86-avx2"}
    )
    assert data["measured"]["all_in_usd_per_million"]["by"] == "bench.cost"  # each figure keeps its own source


def test_a_target_is_met_at_its_value_and_an_unknown_figure_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cost.json"
    assert update({"put_vectors_calls_per_1000_images": TARGETS["put_vectors_calls_per_1000_images"]}, "x", path)[
        "met"
    ] == {"put_vectors_calls_per_1000_images": True}
    with pytest.raises(KeyError, match=r"not a cost\.json figure"):
        update({"usd": 1.0}, "x", path)
