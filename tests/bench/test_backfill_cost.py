"""bench/backfill_cost.py: the backfill's time and price follow from the measured cost per image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import backfill_cost


def test_time_and_price_follow_the_measured_row(tmp_path: Path) -> None:
    cost = {
        "measured_at": "2026-11-29T00:00:00Z",
        "sizes": [
            {"memory_mb": 1024, "prefetch": 0, "ms_per_image": 130.0, "gb_s_per_image": 0.13},
            {"memory_mb": 1024, "prefetch": 2, "ms_per_image": 80.0, "gb_s_per_image": 0.08},
        ],
    }
    (tmp_path / "cost.json").write_text(json.dumps(cost))
    out = tmp_path / "backfill.json"
    argv = ["--cost", str(tmp_path / "cost.json"), "--out", str(out), "--batch-size", "50", "--concurrency", "400"]
    assert backfill_cost.main([*argv, "--no-index"]) == 0
    result = json.loads(out.read_text())
    assert result["ms_per_image"] == 80.0  # the read-ahead row
    one_m, ten_m, hundred_m = result["plans"]
    assert [p["images"] for p in result["plans"]] == [1_000_000, 10_000_000, 100_000_000]
    # 400 batches of 50 at 80 ms per image: 400 x 50 / 4 s = 5,000 images/s; 10 M in 2,000 s.
    assert ten_m["images_per_s"] == pytest.approx(5000) and ten_m["hours"] == pytest.approx(2000 / 3600)
    assert ten_m["write_units_per_s"] == pytest.approx(15000)
    assert ten_m["usd"]["lambda_compute"] == pytest.approx(10e6 * 0.08 * 0.0000166667, abs=0.01)
    assert ten_m["usd"]["dynamodb"] == pytest.approx(10e6 * (3 * 0.625 + 0.125) / 1e6, abs=0.01)
    assert ten_m["usd"]["lambda_requests"] == pytest.approx(200_000 * 0.2 / 1e6, abs=0.01)
    assert hundred_m["usd_total"] == pytest.approx(10 * ten_m["usd_total"], rel=1e-3)
    assert one_m["usd_total"] == pytest.approx(ten_m["usd_total"] / 10, rel=1e-2)
    assert "10,000,000" in out.with_suffix(".md").read_text()


def test_a_cost_file_without_read_ahead_rows_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cost.json").write_text(json.dumps({"sizes": [{"memory_mb": 1024, "prefetch": 0}]}))
    with pytest.raises(SystemExit, match=r"bench\.cost"):
        backfill_cost.main(["--cost", str(tmp_path / "cost.json"), "--out", str(tmp_path / "o.json")])


def test_the_vector_index_caps_the_rate_and_adds_its_writes(tmp_path: Path) -> None:
    cost = {"sizes": [{"memory_mb": 1024, "prefetch": 2, "ms_per_image": 80.0, "gb_s_per_image": 0.08}]}
    (tmp_path / "cost.json").write_text(json.dumps(cost))
    runs = {}
    for flag in ([], ["--no-index"]):
        out = tmp_path / f"b{len(flag)}.json"
        assert backfill_cost.main(["--cost", str(tmp_path / "cost.json"), "--out", str(out), *flag]) == 0
        runs[bool(flag)] = json.loads(out.read_text())["plans"][1]  # 10 M
    indexed, plain = runs[False], runs[True]
    assert indexed["images_per_s"] == 1000 < plain["images_per_s"]  # 1,000 PutVectors per second per index
    assert indexed["hours"] == pytest.approx(10e6 / 1000 / 3600)
    assert indexed["usd"]["s3_vectors"] == pytest.approx(10e6 * 2300 / 1e9 * 0.20, abs=0.01)
    assert indexed["usd"]["dynamodb"] == pytest.approx(plain["usd"]["dynamodb"] + 10e6 * 0.125 / 1e6, abs=0.01)
