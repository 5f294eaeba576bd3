"""``bench/results/cost.json``: the four cost figures of the project, each written by the benchmark that
measures it, with the CPU it was measured on, the prices' date, the targets and whether each is met.

- ``all_in_usd_per_million``: ``python -m bench.cost`` (12-MP uploads at the default 1,024 MB, every service
  priced from the requests the run made);
- ``backfill_10m_minutes``, ``backfill_10m_usd``: ``python -m bench.backfill_cost`` (from the former's
  per-image figures and the index's write limits);
- ``put_vectors_calls_per_1000_images``: ``python -m bench.backfill_cost --local-run`` (the PutVectors
  requests of a local backfill of 1,000 objects, counted by the local S3 Vectors front).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.machine import RESULTS, machine

SUMMARY = RESULTS / "cost.json"
TARGETS = {
    "all_in_usd_per_million": 3.00,
    "backfill_10m_minutes": 70.0,
    "backfill_10m_usd": 25.0,
    "put_vectors_calls_per_1000_images": 10.0,
}


def update(figures: dict[str, Any], source: str, path: Path = SUMMARY, **details: Any) -> dict[str, Any]:
    """Merge ``figures`` (some of ``TARGETS``' keys) measured by ``source`` into the summary, with this
    machine's CPU; ``details`` go under ``details[<source>]``."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    m = machine()
    cpu = {"model": m["model"], "int8_flags": m["int8_flags"], "kernel_path": m["kernel_path"]}
    for key, value in figures.items():
        if key not in TARGETS:
            raise KeyError(f"{key} is not a cost.json figure ({', '.join(TARGETS)})")
        data[key] = value
        data.setdefault("measured", {})[key] = {
            "by": source,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": cpu,
        }
    data["cpu"] = cpu  # the CPU of the latest figure (each figure's own is under "measured")
    data["targets"] = TARGETS
    data["met"] = {k: data[k] <= t for k, t in TARGETS.items() if k in data}
    if details:
        data.setdefault("details", {})[source] = details
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return data
