"""The cold-start measurement (bench/cold_start.py), its arithmetic and table on tiny inputs (the measurement
itself runs against the image in tests/container/test_measurements.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.cold_start import markdown, median, summarize
from infra.local.container_rie import Report


class Function:
    def __init__(self, reports: list[Report]) -> None:
        self._reports = reports

    def reports(self) -> list[Report]:
        return self._reports

    def logs(self) -> str:
        return "the container's log"


def test_the_first_report_carries_init_and_the_second_the_warm_invoke() -> None:
    fn = Function([Report("a", 100.0, 101.0, init_ms=800.0, invoke_ms=95.0), Report("b", 30.0, 31.0, invoke_ms=29.0)])
    got = summarize(fn, [950.0, 40.0])  # type: ignore[arg-type]
    assert got == {"init_ms": 800.0, "first_invoke_ms": 95.0, "second_invoke_ms": 29.0, "first_request_wall_ms": 950.0}
    with pytest.raises(RuntimeError, match="expected two REPORT lines with an INIT"):
        summarize(Function([Report("a", 1.0, 1.0, init_ms=None)]), [1.0])  # type: ignore[arg-type]


def test_medians_per_field_and_the_table() -> None:
    rows = [{"init_ms": 800.0, "first_invoke_ms": 90.0}, {"init_ms": 900.04, "first_invoke_ms": 100.0},
            {"init_ms": 2000.0, "first_invoke_ms": 95.0}]  # fmt: skip
    assert median(rows) == {"init_ms": 900.0, "first_invoke_ms": 95.0}
    fn: dict[str, Any] = {"init_ms": 900.0, "first_invoke_ms": 95.0, "second_invoke_ms": 30.0,
                          "first_request_wall_ms": 1100.0}  # fmt: skip
    result = {"memory_mb": 3538, "runs": 3, "loadavg": "1.00", "functions": {"S3 function": fn},
              "init_breakdown_ms": {"import handler.s3": 300.4, "engine": 500.0}}  # fmt: skip
    text = markdown(result)
    assert "`docker run --cpus 2.00 --memory 3538m` (Lambda 3538 MB), median of 3 cold containers" in text
    assert "| S3 function | 900 | 95 | 30 | 1100 |" in text
    assert text.endswith("- import handler.s3: 300\n- engine: 500\n")
