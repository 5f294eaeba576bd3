"""Time and price of a backfill of 1 M / 10 M / 100 M images, from the measured cost per image.

    .venv/bin/python -m bench.backfill_cost [--memory 1024] [--batch-size 50] [--concurrency 500]

Reads this CPU's bench/results/<cpu kind>/lambda_cost.json (``python -m bench.cost``: billed ms per 12-MP
image at each memory size, S3 latency injected, read-ahead on) and prices the template's backfill: a Step
Functions Distributed Map over the bucket (ListObjectsV2, 1,000 keys a page) whose Express child executions
each invoke the S3 function with ``--batch-size`` objects, ``--concurrency`` of them at once.

- time = images / throughput, throughput = concurrency x batch size / (batch size x ms per image); a batch
  is one invocation, so the billed duration per image is the measured one (the read-ahead overlaps the
  S3 reads inside a batch as it does inside an SQS batch);
- Lambda: GB-s per image x price, plus $0.20 per million invocations (one per batch);
- Step Functions: Express child executions ($1.00 per million, plus their duration at 64 MB and
  $0.00001667 per GB-s, in 100 ms units) and, counted conservatively, one Standard state transition
  ($0.025 per 1,000) per child in the map run;
- S3: one LIST per 1,000 keys ($0.005 per 1,000), GET and the HEAD after the write ($0.0004 per 1,000 each);
- DynamoDB on-demand: the GetItem (1 read unit, $0.125 per million) and the PutItem (3 write units of
  ~2.3 KB, $0.625 per million);
- S3 Vectors (the template's default index): $0.20 per GB of vectors written (~2.3 KB each with metadata),
  and its write limits: 1,000 PutVectors requests and 2,500 vectors per second per index. The S3 function
  writes one vector per request, so the index caps a backfill at 1,000 objects/s (``--no-index`` prices
  a stack deployed with VectorIndex=none).
What limits the time is stated with the table: Lambda's account concurrency (1,000 by default), the
table's on-demand write rate (a new table starts at 4,000 write units/s unless pre-warmed) and S3's
5,500 GET/HEAD per second per prefix.
Writes bench/results/<cpu kind>/backfill_cost.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from bench.cost import GB_SECOND_USD, OTHER_USD, PRICES_DATE, REQUEST_USD
from bench.machine import results_dir, write_report

RESULTS = results_dir()
SCALES = (1_000_000, 10_000_000, 100_000_000)
EXPRESS_EXECUTION_USD = 1.00 / 1e6
EXPRESS_GB_SECOND_USD = 0.00001667
EXPRESS_MEMORY_GB = 64 / 1024
STANDARD_TRANSITION_USD = 0.025 / 1e3
S3_LIST_USD = 0.005 / 1e3  # per ListObjectsV2 page of up to 1,000 keys
DDB_WRITE_UNITS_PER_IMAGE = 3
INDEX_WRITE_USD_PER_GB = 0.20
VECTOR_BYTES = 2300  # 512 float32 + key and metadata
INDEX_PUTS_PER_S = 1_000  # PutVectors requests per second per index (one vector each)
NEW_TABLE_WRITE_UNITS_S = 4_000
S3_GETS_PER_PREFIX_S = 5_500
ACCOUNT_CONCURRENCY = 1_000


def measured_row(cost: dict[str, Any], memory: int) -> dict[str, Any]:
    rows = [r for r in cost["sizes"] if r["memory_mb"] == memory and r.get("prefetch", 0) > 0]
    if not rows:
        raise SystemExit(f"no read-ahead row at {memory} MB in lambda_cost.json: run python -m bench.cost first")
    return rows[0]


def plan(row: dict[str, Any], images: int, batch_size: int, concurrency: int, index: bool = True) -> dict[str, Any]:
    ms = row["ms_per_image"]
    batch_s = batch_size * ms / 1e3
    children = math.ceil(images / batch_size)
    per_s = concurrency * batch_size / batch_s
    if index:
        per_s = min(per_s, INDEX_PUTS_PER_S)
    usd = {
        "lambda_compute": images * row["gb_s_per_image"] * GB_SECOND_USD,
        "lambda_requests": children * REQUEST_USD,
        "step_functions": children
        * (
            EXPRESS_EXECUTION_USD
            + EXPRESS_MEMORY_GB * math.ceil(batch_s * 10) / 10 * EXPRESS_GB_SECOND_USD
            + STANDARD_TRANSITION_USD
        ),
        "s3": math.ceil(images / 1000) * S3_LIST_USD + images * (OTHER_USD["s3_get"] + OTHER_USD["s3_head"]),
        # With the index, the function re-reads the item once after writing the vector (handler/indexing.py).
        "dynamodb": images * (OTHER_USD["dynamodb_write"] + OTHER_USD["dynamodb_read"] * (2 if index else 1)),
        "s3_vectors": images * VECTOR_BYTES / 1e9 * INDEX_WRITE_USD_PER_GB if index else 0.0,
    }
    return {
        "images": images,
        "hours": images / per_s / 3600,
        "images_per_s": per_s,
        "write_units_per_s": per_s * DDB_WRITE_UNITS_PER_IMAGE,
        "usd": {k: round(v, 2) for k, v in usd.items()},
        "usd_total": round(sum(usd.values()), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    r = result
    lines = [
        f"Backfill of 12-MP JPEGs at {r['memory_mb']} MB ({r['ms_per_image']:.0f} ms billed per image, measured "
        f"by bench/cost.py with S3 latency and read-ahead), batches of {r['batch_size']}, {r['concurrency']} "
        "batches at once.",
        "",
        "| images | time | images/s | DynamoDB write units/s | Lambda compute | Lambda requests | Step Functions "
        "| S3 | DynamoDB | S3 Vectors | total |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in r["plans"]:
        u = p["usd"]
        hours = p["hours"]
        shown = f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.1f} h"
        lines.append(
            f"| {p['images']:,} | {shown} | {p['images_per_s']:,.0f} | {p['write_units_per_s']:,.0f} "
            f"| ${u['lambda_compute']:,.2f} | ${u['lambda_requests']:,.2f} | ${u['step_functions']:,.2f} "
            f"| ${u['s3']:,.2f} | ${u['dynamodb']:,.2f} | ${u['s3_vectors']:,.2f} | **${p['usd_total']:,.2f}** |"
        )
    lines += [
        "",
        f"Prices: {PRICES_DATE}. Limits: {r['concurrency']} concurrent invocations of the account's default "
        f"{ACCOUNT_CONCURRENCY:,} (the S3 function's live traffic shares them); a new on-demand table starts at "
        f"{NEW_TABLE_WRITE_UNITS_S:,} write units/s (pre-warm it, WarmThroughput, or it throttles and the map "
        f"retries); S3 serves {S3_GETS_PER_PREFIX_S:,} GET/HEAD per second per prefix"
        + (
            f"; the S3 Vectors index takes {INDEX_PUTS_PER_S:,} PutVectors per second (one vector each)."
            if r["index"]
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory", type=int, default=1024, help="the S3 function's memory size (template default)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--no-index", action="store_true", help="a stack deployed with VectorIndex=none")
    ap.add_argument("--cost", type=Path, default=RESULTS / "lambda_cost.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "backfill_cost.json")
    args = ap.parse_args(argv)
    cost = json.loads(args.cost.read_text())
    row = measured_row(cost, args.memory)
    result = {
        "memory_mb": args.memory,
        "ms_per_image": row["ms_per_image"],
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "index": not args.no_index,
        "cost_measured_at": cost.get("measured_at"),
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plans": [plan(row, n, args.batch_size, args.concurrency, not args.no_index) for n in SCALES],
    }
    print(write_report(result, args.out, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
