"""Time and price of a backfill of 1 M / 10 M / 100 M images, from the measured cost per image and S3
Vectors' write limits; and the PutVectors requests of a real (local) backfill of 1,000 objects.

    .venv/bin/python -m bench.backfill_cost [--memory 1024] [--batch-size N] [--concurrency N]
    .venv/bin/python -m bench.backfill_cost --local-run --model build/model

Reads this CPU's bench/results/<cpu kind>/lambda_cost.json (``python -m bench.cost``: billed ms per 12-MP
image at each memory size with S3 latency and read-ahead, and the requests each image made to DynamoDB, S3
and S3 Vectors, counted) and prices the template's backfill: a Step Functions Distributed Map over the
bucket (ListObjectsV2, 1,000 keys a page) whose Express child executions each invoke the S3 function with a
batch of objects, as many at once as ``clip-lambda backfill`` derives from the index's limits
(infra/backfill.py: batches of 100-500, one PutVectors each; 2,500 vectors/s x seconds per object at once):

- time = images / throughput; throughput = concurrency / seconds per object, capped by the index's 2,500
  vectors/s and 1,000 requests/s (one PutVectors per batch) per index;
- Lambda: GB-s per image x price, plus $0.20 per million invocations (one per batch);
- Step Functions: Express child executions ($1.00 per million, plus their duration at 64 MB and
  $0.00001667 per GB-s, in 100 ms units) and one Standard state transition ($0.025 per 1,000) per child;
- S3: one LIST per 1,000 keys ($0.005 per 1,000), and the GETs and HEADs per image the cost run counted;
- DynamoDB on-demand: the reads and the write units per image the cost run counted (a lean item: 1 unit);
- S3 Vectors: $0.20 per GB of logical data written (the vector size the cost run counted), at least 128 KB
  a request (see bench/cost.py), one request per batch.

``--local-run`` runs the backfill for real on the local stack (moto, the template's Distributed Map emulated,
two S3 functions under the RIE, the vector index's front counting requests) over 1,000 small objects at the
derived batch size, and counts its PutVectors. Writes bench/results/<cpu kind>/backfill_cost.json and .md, and
the 10 M figures (or the count) into bench/results/cost.json.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from bench import cost_summary
from bench.cost import GB, GB_SECOND_USD, PRICES, PRICES_DATE, REQUEST_USD, S3_VECTORS_MIN_PUT_BYTES
from bench.machine import results_dir, write_report
from handler.vector_index import MAX_WRITE_BATCH, WRITE_REQUESTS_PER_S, WRITE_VECTORS_PER_S
from infra.backfill import index_batch_size, index_concurrency

RESULTS = results_dir()
SCALES = (1_000_000, 10_000_000, 100_000_000)
EXPRESS_EXECUTION_USD = 1.00 / 1e6
EXPRESS_GB_SECOND_USD = 0.00001667
EXPRESS_MEMORY_GB = 64 / 1024
STANDARD_TRANSITION_USD = 0.025 / 1e3
S3_LIST_USD = 0.005 / 1e3  # per ListObjectsV2 page of up to 1,000 keys
NEW_TABLE_WRITE_UNITS_S = 4_000
S3_GETS_PER_PREFIX_S = 5_500
ACCOUNT_CONCURRENCY = 1_000
FUNCTION_TIMEOUT_S = 60  # template S3FunctionTimeout
LOCAL_OBJECTS = 1_000


def measured_row(cost: dict[str, Any], memory: int) -> dict[str, Any]:
    rows = [r for r in cost["sizes"] if r["memory_mb"] == memory and r.get("prefetch", 0) > 0]
    if not rows:
        raise SystemExit(f"no read-ahead row at {memory} MB in lambda_cost.json: run python -m bench.cost first")
    if "requests_per_image" not in rows[0]:
        raise SystemExit("lambda_cost.json predates the request counts: run python -m bench.cost again")
    return rows[0]


def plan(row: dict[str, Any], images: int, batch_size: int, concurrency: int) -> dict[str, Any]:
    seconds = row["ms_per_image"] / 1e3
    batch_s = batch_size * seconds
    children = math.ceil(images / batch_size)
    puts_per_batch = math.ceil(batch_size / MAX_WRITE_BATCH)
    lambda_per_s = concurrency / seconds
    per_s = min(lambda_per_s, WRITE_VECTORS_PER_S, WRITE_REQUESTS_PER_S * batch_size / puts_per_batch)
    limit = "the index's 2,500 vectors/s" if per_s == WRITE_VECTORS_PER_S else "Lambda concurrency"
    if per_s < min(lambda_per_s, WRITE_VECTORS_PER_S):
        limit = "the index's 1,000 requests/s"
    req = row["requests_per_image"]
    vector_bytes = req.get("PutVectors.bytes", 0.0)  # logical bytes written per image (per vector)
    request_bytes = max(S3_VECTORS_MIN_PUT_BYTES, vector_bytes * batch_size / puts_per_batch)
    p = PRICES
    usd = {
        "lambda_compute": images * row["gb_s_per_image"] * GB_SECOND_USD,
        "lambda_requests": children * REQUEST_USD,
        "step_functions": children
        * (
            EXPRESS_EXECUTION_USD
            + EXPRESS_MEMORY_GB * math.ceil(batch_s * 10) / 10 * EXPRESS_GB_SECOND_USD
            + STANDARD_TRANSITION_USD
        ),
        "s3": math.ceil(images / 1000) * S3_LIST_USD + images * (req.get("GET", 0) + req.get("HEAD", 0)) * p["s3_get"],
        "dynamodb": images
        * (
            req.get("PutItem", 0) * row["item_write_units"] * p["dynamodb_write_unit"]
            + (req.get("GetItem", 0) + req.get("BatchGetItem.keys", 0)) * p["dynamodb_read_unit"]
        ),
        "s3_vectors": children * puts_per_batch * request_bytes / GB * p["s3_vectors_put_gb"],
    }
    return {
        "images": images,
        "minutes": images / per_s / 60,
        "hours": round(images / per_s / 3600, 1),
        "images_per_s": per_s,
        "limited_by": limit,
        "put_vectors_requests": children * puts_per_batch,
        "write_units_per_s": per_s * req.get("PutItem", 0) * row["item_write_units"],
        "usd": {k: round(v, 2) for k, v in usd.items()},
        "usd_total": round(sum(usd.values()), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    r = result
    lines = [
        f"Backfill of 12-MP JPEGs at {r['memory_mb']} MB ({r['ms_per_image']:.0f} ms billed per image, measured "
        f"by bench/cost.py with S3 latency and read-ahead), batches of {r['batch_size']} (one PutVectors each), "
        f"{r['concurrency']} batches at once.",
        "",
        "| images | time | images/s | limited by | DynamoDB write units/s | Lambda compute | Lambda requests "
        "| Step Functions | S3 | DynamoDB | S3 Vectors | total |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in r["plans"]:
        u = p["usd"]
        minutes = p["minutes"]
        shown = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
        lines.append(
            f"| {p['images']:,} | {shown} | {p['images_per_s']:,.0f} | {p['limited_by']} "
            f"| {p['write_units_per_s']:,.0f} | ${u['lambda_compute']:,.2f} | ${u['lambda_requests']:,.2f} "
            f"| ${u['step_functions']:,.2f} | ${u['s3']:,.2f} | ${u['dynamodb']:,.2f} | ${u['s3_vectors']:,.2f} "
            f"| **${p['usd_total']:,.2f}** |"
        )
    lines += [
        "",
        f"Prices: {PRICES_DATE}. Limits: the index takes {WRITE_VECTORS_PER_S:,} vectors and "
        f"{WRITE_REQUESTS_PER_S:,} PutVectors/DeleteVectors requests per second; {r['concurrency']} concurrent "
        f"invocations of the account's default {ACCOUNT_CONCURRENCY:,} (the live functions share them); a new "
        f"on-demand table starts at {NEW_TABLE_WRITE_UNITS_S:,} write units/s; S3 serves "
        f"{S3_GETS_PER_PREFIX_S:,} GET/HEAD per second per prefix.",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- local run
def tiny_jpeg(i: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = (np.random.default_rng(i).random((48, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def local_run(model: Path, batch_size: int) -> dict[str, Any]:
    """A backfill of ``LOCAL_OBJECTS`` objects on the local stack at ``batch_size``: its PutVectors."""
    from contextlib import ExitStack

    from infra.local.distributed_map import LocalDistributedMap
    from infra.local.moto_stack import MotoStack, StackNames
    from infra.local.rie import LocalFunction
    from layer.manifest import Manifest

    reports = "clip-backfill-reports"
    with MotoStack(names=StackNames(dimension=Manifest.read(model).dim, notifications=False)).start() as stack:
        s3 = stack.client("s3")
        s3.create_bucket(Bucket=reports)
        for i in range(LOCAL_OBJECTS):
            s3.put_object(Bucket=stack.names.bucket, Key=f"backfill/{i:04d}.jpg", Body=tiny_jpeg(i))
        env = stack.function_env(MODEL_DIR=str(model), CLIP_LAMBDA_THREADS="1", POWERTOOLS_TRACE_DISABLED="true")
        with ExitStack() as running:
            functions = [running.enter_context(LocalFunction("handler.s3.lambda_handler", env=env,
                                                             name=f"clip-backfill-{n}")) for n in "ab"]  # fmt: skip
            runner = LocalDistributedMap(s3, stack.names.bucket, reports, [f.invoke for f in functions])
            execution = {"prefix": "backfill/", "batch_size": batch_size, "concurrency": 2, "model_id": None,
                         "keys_url_encoded": False}  # fmt: skip
            t0 = time.monotonic()
            result = runner.run(execution, name="cost")
            seconds = time.monotonic() - t0
        calls = dict(stack.vector_calls)
        front = stack._vectors
        written = front.vectors_written if front is not None else 0
    if result.status != "SUCCEEDED" or result.counts.failed:
        raise SystemExit(f"the local backfill did not succeed: {result.status} {result.counts}")
    return {
        "objects": LOCAL_OBJECTS,
        "batch_size": batch_size,
        "batches": result.counts.batches,
        "retries": result.counts.retries,
        "put_vectors_calls": calls.get("PutVectors", 0),
        "vectors_written": written,
        "s3vectors_requests": calls,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory", type=int, default=1024, help="the S3 function's memory size (template default)")
    ap.add_argument("--batch-size", type=int, help="default: derived from the index's limits (infra/backfill.py)")
    ap.add_argument("--concurrency", type=int, help="default: derived from the index's limits")
    ap.add_argument("--cost", type=Path, default=RESULTS / "lambda_cost.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "backfill_cost.json")
    ap.add_argument("--local-run", action="store_true", help="count the PutVectors of a local 1,000-object run")
    ap.add_argument("--model", type=Path, help="--local-run: the model directory the functions load")
    ap.add_argument("--summary", type=Path, default=cost_summary.SUMMARY, help="the cost figures file to update")
    args = ap.parse_args(argv)
    if args.local_run:
        if args.model is None:
            ap.error("--local-run needs --model")
        batch = args.batch_size or index_batch_size(FUNCTION_TIMEOUT_S, 0.2)
        run = local_run(args.model, batch)
        per_1000 = run["put_vectors_calls"] * 1000 / run["objects"]
        print(json.dumps(run))
        cost_summary.update({"put_vectors_calls_per_1000_images": per_1000}, "bench.backfill_cost --local-run",
                            args.summary, **run)  # fmt: skip
        return 0
    cost = json.loads(args.cost.read_text())
    row = measured_row(cost, args.memory)
    seconds = row["ms_per_image"] / 1e3
    batch = args.batch_size or index_batch_size(FUNCTION_TIMEOUT_S, seconds)
    concurrency = args.concurrency or min(index_concurrency(seconds), ACCOUNT_CONCURRENCY)
    result = {
        "memory_mb": args.memory,
        "ms_per_image": row["ms_per_image"],
        "batch_size": batch,
        "concurrency": concurrency,
        "cost_measured_at": cost.get("measured_at"),
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plans": [plan(row, n, batch, concurrency) for n in SCALES],
    }
    print(write_report(result, args.out, markdown))
    ten = next(p for p in result["plans"] if p["images"] == 10_000_000)
    cost_summary.update(
        {"backfill_10m_minutes": round(ten["minutes"], 1), "backfill_10m_usd": ten["usd_total"]},
        "bench.backfill_cost",
        args.summary,
        usd=ten["usd"],
        limited_by=ten["limited_by"],
        batch_size=batch,
        concurrency=concurrency,
        memory_mb=args.memory,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
