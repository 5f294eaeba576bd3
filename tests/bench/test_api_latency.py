"""The warm API latency measurement (bench/api_latency.py), its figures on tiny inputs (the measurement
itself runs against the image in tests/container/test_measurements.py)."""

from __future__ import annotations

from bench.api_latency import markdown, percentile, summary


def test_percentiles_are_nearest_rank_values_of_the_sample() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order does not matter
    assert [percentile(values[::-1], q) for q in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0 and percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 99) == 3.0  # never past the largest


def test_the_summary_and_its_table() -> None:
    walls = [10.04, 12.0, 11.0, 50.0]
    s = summary(walls)
    assert s == {"p50": 11.5, "p90": 50.0, "p99": 50.0, "max": 50.0}
    result = {"memory_mb": 1769, "jpeg_bytes": 412_345, "requests": 4, "warmup": 1, "loadavg": "0.10 0.20 0.30",
              "function_ms": summary([9.0, 9.0, 10.0, 30.0]), "client_wall_ms": s}  # fmt: skip
    text = markdown(result)
    assert "1920x1080 JPEG (412 kB), 4 sequential requests after 1 warm-up; API function at 1769 MB" in text
    assert "`docker run --cpus 1.00 --memory 1769m`" in text
    assert "| function (REPORT duration) | 10 | 30 | 30 | 30 |" in text
    assert "| client wall (front + RIE) | 12 | 50 | 50 | 50 |" in text
