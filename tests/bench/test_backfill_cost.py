"""bench/backfill_cost.py: the backfill's time and price follow from the measured cost per image, its request
counts and the vector index's write limits; the figures land in the cost summary with their targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import backfill_cost

# A bench/cost.py row: 80 ms billed per image at 1,024 MB, and what one image asked of each service.
ROW = {
    "memory_mb": 1024, "prefetch": 2, "ms_per_image": 80.0, "gb_s_per_image": 0.08, "item_write_units": 1.0,
    "requests_per_image": {"GET": 1.0, "HEAD": 1.0, "GetItem": 1.0, "BatchGetItem.keys": 1.0, "PutItem": 1.0,
                           "PutVectors": 0.1, "PutVectors.bytes": 2400.0},
}  # fmt: skip


def run(tmp_path: Path, *argv: str, row: dict | None = None) -> tuple[dict, dict]:
    cost = {"measured_at": "2026-12-01T00:00:00Z", "sizes": [{**ROW, "prefetch": 0, "ms_per_image": 130.0}, row or ROW]}
    (tmp_path / "cost.json").write_text(json.dumps(cost))
    out, summary = tmp_path / "backfill.json", tmp_path / "summary.json"
    args = ["--cost", str(tmp_path / "cost.json"), "--out", str(out), "--summary", str(summary), *argv]
    assert backfill_cost.main(args) == 0
    return json.loads(out.read_text()), json.loads(summary.read_text())


def test_the_defaults_come_from_the_index_limits_and_the_figures_reach_the_summary(tmp_path: Path) -> None:
    """At 80 ms per object: 2,500 x 0.08 = 200 batches at once, batches of 375 (60 s x 0.5 / 0.08): the index's
    2,500 vectors/s is the limit, so 10 M take 4,000 s."""
    result, summary = run(tmp_path)
    assert (result["ms_per_image"], result["batch_size"], result["concurrency"]) == (80.0, 375, 200)
    ten = result["plans"][1]
    assert ten["images_per_s"] == pytest.approx(2500) and ten["limited_by"] == "the index's 2,500 vectors/s"
    assert ten["minutes"] == pytest.approx(10e6 / 2500 / 60)
    assert ten["put_vectors_requests"] == pytest.approx(10e6 / 375, abs=1)
    assert ten["usd"]["lambda_compute"] == pytest.approx(10e6 * 0.08 * 0.0000166667, abs=0.01)
    # One write unit, two reads (the check and the read back after the index write) per image.
    assert ten["usd"]["dynamodb"] == pytest.approx(10e6 * (0.625 + 2 * 0.125) / 1e6, abs=0.01)
    assert ten["usd"]["s3"] == pytest.approx(10_000 * 0.005 / 1e3 + 10e6 * 2 * 0.0004 / 1e3, abs=0.01)
    # 375 vectors of 2,400 B a request (879 KB, over the 128 KB minimum): the bytes themselves.
    assert ten["usd"]["s3_vectors"] == pytest.approx(26_667 * 375 * 2400 / 2**30 * 0.20, rel=1e-3)
    assert summary["backfill_10m_minutes"] == pytest.approx(66.7) and summary["met"]["backfill_10m_minutes"]
    assert summary["backfill_10m_usd"] == ten["usd_total"]
    assert summary["measured"]["backfill_10m_usd"]["cpu"]["model"] and summary["targets"]["backfill_10m_usd"] == 25


def test_small_batches_pay_the_minimum_put_size_and_slow_lambda_limits_the_rate(tmp_path: Path) -> None:
    result, _ = run(tmp_path, "--batch-size", "10", "--concurrency", "100")
    ten = result["plans"][1]
    assert ten["images_per_s"] == pytest.approx(100 / 0.08) and ten["limited_by"] == "Lambda concurrency"
    assert ten["usd"]["s3_vectors"] == pytest.approx(1e6 * 128 * 1024 / 2**30 * 0.20, rel=1e-3)  # 128 KB each


def test_a_cost_file_without_read_ahead_rows_or_request_counts_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cost.json").write_text(json.dumps({"sizes": [{"memory_mb": 1024, "prefetch": 0}]}))
    with pytest.raises(SystemExit, match=r"bench\.cost"):
        backfill_cost.main(["--cost", str(tmp_path / "cost.json"), "--out", str(tmp_path / "o.json")])
    old = {k: v for k, v in ROW.items() if k != "requests_per_image"}
    (tmp_path / "cost.json").write_text(json.dumps({"sizes": [old]}))
    with pytest.raises(SystemExit, match="request counts"):
        backfill_cost.main(["--cost", str(tmp_path / "cost.json"), "--out", str(tmp_path / "o.json")])
