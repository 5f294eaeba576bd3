"""Load with faults, at CI size: 500 S3 operations (puts, overwrites, deletes, non-images; 10% of the
notifications twice, shuffled in windows; malformed messages) through two S3 functions under the RIE with
S3 503s and slow reads, DynamoDB throttling and an outage, and function processes killed mid-batch.
`make soak` runs the full 10,000 (bench/soak.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakConfig, markdown, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_table_equals_s3_after_a_faulty_load(model_dir: Path) -> None:
    cfg = SoakConfig(events=500, functions=2, kill_every_s=15.0)
    report = run(cfg, model_dir)
    print(markdown(report))
    check = report["check"]
    assert check["counts"] == {"lost": 0, "stale": 0, "extra": 0, "wrong_kind": 0}, check
    assert check["objects"] > 100 and check["items"] == check["objects"]
    assert check["dlq"] == report["workload"]["malformed"] > 0 and check["dlq_unexpected"] == []
    # The faults really happened, and were survived by retrying.
    faults = report["faults"]
    assert faults["s3"]["throttle"] > 0 and faults["s3"]["slow"] > 0
    assert faults["dynamodb"]["throttle"] > 0 and faults["dynamodb"]["down"] > 0
    assert report["kills"] >= 1 and report["retries"] > 0
    assert report["workload"]["duplicates"] > 20 and report["outcomes"].get("duplicate", 0) > 0
