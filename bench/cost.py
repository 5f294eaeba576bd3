"""Cost of the S3 function per image at Lambda memory sizes, reproduced with `docker run --cpus --memory`.

    .venv/bin/python -m bench.cost --image clip-lambda:test [--memory 512 1024 1769] [--prefetch 0 2]

Lambda gives a function CPU time in proportion to its memory (1,769 MB = one vCPU), while the process
sees 2 CPUs up to 3,008 MB. ``docker run --cpus M/1769 --memory M`` reproduces that slice (CFS quota over
the visible CPUs), and ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=M`` lets the function size its thread pool as on
Lambda. For each size and read-ahead depth (``S3_PREFETCH``): a fresh container under the RIE behind moto
(S3 → SQS → function → DynamoDB on loopback), one warm-up batch (its INIT is recorded), then ``--batches``
batches of ``--batch-size`` 12-MP JPEGs (scikit-learn's china.jpg and flower.jpg upscaled to 4000x3000,
quality 90: phone-photo sized files), each batch one invoke, as the template's SQS event source delivers
them. The function reads S3 through a proxy that adds S3's latency (``--s3-first-byte-ms``, default 30 ms
before the first byte, and ``--s3-mbps``, 50 MB/s per connection): on loopback a read costs nothing, which
would hide what read-ahead saves.

Billing: duration billed per 1 ms (x86_64 $0.0000166667, arm64 $0.0000133334 per GB-s) plus $0.20 per
million requests; one invoke carries ``--batch-size`` images. arm64 is not measured here (no arm64 CPU;
QEMU's speed says nothing): its columns take this CPU's billed time per image, replace the measured
inference time by the README's Graviton2 estimate (``ARM64_INFERENCE_MS_PER_VCPU``, from peak int8
multiply-accumulates per cycle) divided by the size's vCPU share, and keep the rest (decode, I/O) as
measured. The all-in column adds the per-image charges of the other services: DynamoDB, S3 and S3 Vectors
from the requests the run made, counted by operation (proxies in front of moto, the local S3 Vectors front)
and the items' write units; SQS from the mapping's batch size (``PRICES``, list prices, us-east-1, dated).
INIT (billed for container images) is amortized over a warm environment's life and left out. Writes
bench/results/<cpu kind>/lambda_cost.json, .md, and the all-in figure at the default size into
bench/results/cost.json (``bench.cost_summary``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench import cost_summary
from bench.machine import results_dir, write_report
from handler import item
from handler.sinks.dynamodb import from_dynamodb
from infra.local.container_rie import ContainerFunction, image_model_dim
from infra.local.faults import FaultProxy
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.poller import SqsPoller
from layer.settings import LAMBDA_MB_PER_VCPU

RESULTS = results_dir()  # bench/results/<this CPU kind>/
GB_SECOND_USD = 0.0000166667  # x86_64
GB_SECOND_USD_ARM64 = 0.0000133334
REQUEST_USD = 0.20 / 1e6
# README, "CPU paths": Graviton2's int8 rate ≈ an AVX2 core's exact u8 kernel, ~100-130 ms per image on one vCPU.
ARM64_INFERENCE_MS_PER_VCPU = 115.0
SIZES = (512, 768, 1024, 1536, 1769, 3008)
DEFAULT_MEMORY_MB = 1024  # template.yaml's S3FunctionMemorySize
PRICES_DATE = "us-east-1 list prices as published in 2025-2026; no pricing page is reachable here: check before quoting"
# Unit prices of every service an upload touches (us-east-1). The per-image charges are the measured request
# counts of the run times these (``other_usd``), not assumed counts.
PRICES = {
    "dynamodb_write_unit": 0.625 / 1e6,  # on-demand, per write request unit (1 KB of item)
    "dynamodb_read_unit": 0.125 / 1e6,  # on-demand, per read request unit (strongly consistent, 4 KB)
    "s3_get": 0.0004 / 1e3,  # GET and HEAD (S3 Standard)
    "sqs_request": 0.40 / 1e6,  # standard queue
    "s3_vectors_put_gb": 0.20,  # per GB of logical data written (vector, key, metadata)
    "s3_vectors_storage_gb_month": 0.06,  # per GB-month stored (recurring: not in the per-upload figure)
}
# A PutVectors is billed for at least 128 KB of logical data (reported by third parties, not on an AWS page
# reachable here; AWS's best practices only say that batching writes lowers their cost): a request of 10
# vectors of ~2.4 KB is billed as 128 KB. Counted per request, so the batching's effect is in the figure.
S3_VECTORS_MIN_PUT_BYTES = 128 * 1024
GB = 2**30
SQS_BATCH = 10  # template S3BatchSize: the event source mapping's receive + delete per batch


def other_usd(ops: dict[str, float], images: int, write_units: float, batch_size: int = SQS_BATCH) -> dict[str, float]:
    """Per-image USD of every service but Lambda, from a run's request counts (``ops``: DynamoDB operations,
    S3 methods, S3 Vectors operations and ``PutVectors.bytes``) and its items' mean write units."""
    p = PRICES
    puts = ops.get("PutVectors", 0.0)
    billed = max(puts * S3_VECTORS_MIN_PUT_BYTES, ops.get("PutVectors.bytes", 0.0)) if puts else 0.0
    return {
        "dynamodb_write": ops.get("PutItem", 0.0) * write_units * p["dynamodb_write_unit"] / images,
        "dynamodb_read": (ops.get("GetItem", 0.0) + ops.get("BatchGetItem.keys", 0.0))
        * p["dynamodb_read_unit"]
        / images,
        "s3_get_head": (ops.get("GET", 0.0) + ops.get("HEAD", 0.0)) * p["s3_get"] / images,
        # S3's SendMessage per object, the mapping's receive and delete per batch; idle polling left out.
        "sqs": (1 + 2 / batch_size) * p["sqs_request"],
        "s3_vectors_put": billed / GB * p["s3_vectors_put_gb"] / images,
    }


def twelve_mp_jpegs() -> list[bytes]:
    from sklearn.datasets import load_sample_image

    out = []
    for name in ("china.jpg", "flower.jpg"):
        img = Image.fromarray(load_sample_image(name)).resize((4000, 3000), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


STAGES = ("S3ReadTime", "DecodeTime", "PreprocessTime", "InferenceTime", "WriteTime")


def stage_ms_per_image(logs: str, skip_invokes: int) -> dict[str, float]:
    """Mean per-image time of each stage, from the function's EMF metric lines (one per invoke)."""
    blobs = []
    for line in logs.splitlines():
        if line.startswith("{") and '"CloudWatchMetrics"' in line:
            blobs.append(json.loads(line))
    totals: dict[str, list[float]] = {k: [] for k in STAGES}
    for blob in blobs[skip_invokes:]:
        for key in STAGES:
            value = blob.get(key, [])
            totals[key] += value if isinstance(value, list) else [value]
    return {k: round(statistics.fmean(v), 1) for k, v in totals.items() if v}


def requests_so_far(stack: MotoStack, s3_proxy: FaultProxy, ddb_proxy: FaultProxy) -> dict[str, float]:
    """Every billed request the stack's services saw so far, by operation (and PutVectors' logical bytes)."""
    front = stack._vectors
    return {
        **{k: float(v) for k, v in ddb_proxy.operations.items()},
        **{k: float(v) for k, v in s3_proxy.operations.items() if k in ("GET", "HEAD")},
        **{k: float(v) for k, v in stack.vector_calls.items()},
        "PutVectors.bytes": float(front.put_bytes if front is not None else 0),
    }


def put_batch(stack: MotoStack, photos: list[bytes], prefix: str, n: int) -> None:
    s3 = stack.client("s3")
    for i in range(n):
        s3.put_object(Bucket=stack.names.bucket, Key=f"{prefix}/{i:03d}.jpg", Body=photos[i % len(photos)])


@dataclass(frozen=True)
class S3Latency:
    first_byte_ms: float = 30.0
    mbps: float = 50.0  # MB/s per connection


def measure_size(
    image: str,
    memory: int,
    photos: list[bytes],
    batch_size: int,
    batches: int,
    prefetch: int,
    latency: S3Latency,
    dimension: int,
) -> dict[str, Any]:
    # A fresh stack per size: its own queue and table, no leftovers between sizes. DynamoDB and S3 behind
    # proxies that count the requests by operation (S3's also adds its latency); S3 Vectors' front counts its own.
    with (
        MotoStack(names=StackNames(visibility_timeout=900, dimension=dimension)) as stack,
        FaultProxy(
            stack.endpoint,
            mode="slow",
            flavor="s3",
            delay_s=latency.first_byte_ms / 1e3,
            bytes_per_s=latency.mbps * 1e6,
        ) as s3_proxy,
        FaultProxy(stack.endpoint, mode="pass", flavor="dynamodb") as ddb_proxy,
    ):
        sqs = stack.client("sqs")
        while msgs := sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1).get("Messages"):
            for m in msgs:  # the s3:TestEvent queued when the notification was configured
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
        env = stack.function_env(
            POWERTOOLS_TRACE_DISABLED="true",
            AWS_ENDPOINT_URL_S3=s3_proxy.endpoint,
            AWS_ENDPOINT_URL_DYNAMODB=ddb_proxy.endpoint,
            S3_PREFETCH=str(prefetch),
        )
        fn = ContainerFunction(image, "handler.s3.lambda_handler", env=env, memory_mb=memory, timeout_s=900)
        with fn:
            poller = SqsPoller(sqs, stack.queue_url, stack.queue_arn, fn.invoke, batch_size=batch_size)
            put_batch(stack, photos, "warmup", batch_size)
            poller.drain(timeout=900)
            n_warm = len(fn.reports())
            before = requests_so_far(stack, s3_proxy, ddb_proxy)
            for b in range(batches):
                put_batch(stack, photos, f"batch{b}", batch_size)
                poller.drain(timeout=900)
            if poller.stats.failed or poller.stats.function_errors:
                raise RuntimeError(f"failures at {memory} MB: {poller.stats}\n{fn.logs()[-3000:]}")
            reports = fn.reports()
            stages = stage_ms_per_image(fn.logs(), n_warm)
            ops = requests_so_far(stack, s3_proxy, ddb_proxy)
            ops = {k: v - before.get(k, 0.0) for k, v in ops.items() if v - before.get(k, 0.0)}
            scanned = stack.client("dynamodb").scan(TableName=stack.names.table, ConsistentRead=True)["Items"]
            items = len(scanned)
            write_units = statistics.fmean(item.write_units(from_dynamodb(it)) for it in scanned)
    timed = reports[n_warm:]
    sizes = poller.stats.batch_sizes[-len(timed) :] if timed else []
    images = sum(sizes)
    if not timed or images == 0:
        raise RuntimeError(f"no timed invokes at {memory} MB")
    billed_ms = sum(r.billed_ms for r in timed)
    ms_per_image = billed_ms / images
    gb_s_per_image = memory / 1024 * ms_per_image / 1000
    invokes_per_m = 1e6 * len(timed) / images
    compute_usd = gb_s_per_image * GB_SECOND_USD * 1e6
    request_usd = invokes_per_m * REQUEST_USD
    other = other_usd(ops, images, write_units, batch_size)
    other_m = sum(other.values()) * 1e6
    cpus = min(memory / LAMBDA_MB_PER_VCPU, 2.0)
    arm64_ms = ms_per_image - stages.get("InferenceTime", 0.0) + ARM64_INFERENCE_MS_PER_VCPU / cpus
    arm64_usd = memory / 1024 * arm64_ms / 1000 * GB_SECOND_USD_ARM64 * 1e6
    return {
        "memory_mb": memory,
        "prefetch": prefetch,
        "wall_ms_per_batch": round(statistics.median(r.duration_ms for r in timed), 1),
        "gb_s_per_image": round(gb_s_per_image, 5),
        "ms_per_image_arm64_est": round(arm64_ms, 1),
        "usd_compute_arm64_est": round(arm64_usd, 2),
        "usd_all_in": round(compute_usd + request_usd + other_m, 2),
        "usd_all_in_arm64_est": round(arm64_usd + request_usd + other_m, 2),
        "usd_other_per_million": {k: round(v * 1e6, 3) for k, v in other.items()},
        "usd_other_total": round(other_m, 2),
        "requests_per_image": {k: round(v / images, 3) for k, v in sorted(ops.items())},
        "item_write_units": round(write_units, 2),
        "cpus": round(memory / LAMBDA_MB_PER_VCPU, 3),
        "init_ms": reports[0].init_ms,
        "invokes": len(timed),
        "images": images,
        "items_written": items,
        "batch_sizes": sizes,
        "invoke_ms": [r.duration_ms for r in timed],
        "ms_per_image": round(ms_per_image, 1),
        "ms_per_image_median_batch": round(
            statistics.median(r.duration_ms / s for r, s in zip(timed, sizes, strict=True)), 1
        ),
        "stage_ms_per_image": stages,
        "usd_per_million_images": round(compute_usd + request_usd, 2),
        "usd_compute": round(compute_usd, 2),
        "usd_requests": round(request_usd, 3),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = result["sizes"]
    cheapest = min(rows, key=lambda r: r["usd_per_million_images"])  # x86, measured
    lat = result["s3_latency"]
    lines = [
        f"S3 function on 12-MP JPEGs (4000x3000, q90), batches of {result['batch_size']} images per invoke, "
        f"{result['batches']} timed batches per size; `docker run --cpus M/1769 --memory M` under the RIE; S3 "
        f"behind a proxy adding {lat['first_byte_ms']:.0f} ms to first byte and {lat['mbps']:.0f} MB/s; "
        f"load average {result['loadavg']} on a 2-core host.",
        "",
        "| memory MB | vCPU share | read-ahead | batch wall ms | ms / image (billed) | GB-s / image "
        "| $/M compute x86 | $/M compute arm64 (est.) | $/M all-in x86 | $/M all-in arm64 (est.) "
        "| S3 read / decode / preprocess / inference / write ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        mark = " **(cheapest)**" if r is cheapest else ""
        stages = " / ".join(f"{r['stage_ms_per_image'].get(k, float('nan')):.0f}" for k in STAGES)
        lines.append(
            f"| {r['memory_mb']} | {r['cpus']:.2f} | {r['prefetch']} | {r['wall_ms_per_batch']:.0f} "
            f"| {r['ms_per_image']:.0f} | {r['gb_s_per_image']:.4f} | {r['usd_compute']:.2f}{mark} "
            f"| {r['usd_compute_arm64_est']:.2f} | {r['usd_all_in']:.2f} | {r['usd_all_in_arm64_est']:.2f} | {stages} |"
        )
    other = "; ".join(
        f"{r['memory_mb']} MB: "
        + ", ".join(f"{k.replace('_', ' ')} ${v:.3f}" for k, v in r["usd_other_per_million"].items())
        for r in rows
    )
    lines += [
        "",
        f"$/M = GB-s per image x price x 1e6 + requests (1e6 / {result['batch_size']} x $0.20 / 1e6). Prices "
        f"({PRICES_DATE}): ${GB_SECOND_USD} per GB-s x86_64, ${GB_SECOND_USD_ARM64} arm64, $0.20 per million "
        f"requests; all-in adds the other services' charges per million images, from the requests counted in "
        f"the run (S3 Vectors PUTs at a {S3_VECTORS_MIN_PUT_BYTES // 1024} KB minimum per request): {other}. "
        "arm64 is estimated, not measured: this CPU's "
        f"time per image with inference replaced by {ARM64_INFERENCE_MS_PER_VCPU:.0f} ms / vCPU share (README, "
        "CPU paths). INIT is not included.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="clip-lambda:test")
    ap.add_argument("--memory", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--prefetch", type=int, nargs="+", default=[2], help="S3_PREFETCH depths to compare")
    ap.add_argument("--s3-first-byte-ms", type=float, default=S3Latency.first_byte_ms)
    ap.add_argument("--s3-mbps", type=float, default=S3Latency.mbps)
    ap.add_argument("--out", type=Path, default=RESULTS / "lambda_cost.json")
    ap.add_argument("--summary", type=Path, default=cost_summary.SUMMARY, help="the cost figures file to update")
    args = ap.parse_args(argv)

    photos = twelve_mp_jpegs()
    latency = S3Latency(args.s3_first_byte_ms, args.s3_mbps)
    dim = image_model_dim(args.image)  # the vector index is sized by the model the image holds
    sizes = []
    for memory in args.memory:
        for depth in args.prefetch:
            row = measure_size(args.image, memory, photos, args.batch_size, args.batches, depth, latency, dim)
            print(json.dumps({k: v for k, v in row.items() if k not in ("invoke_ms", "batch_sizes")}), flush=True)
            sizes.append(row)
    result = {
        "image": args.image,
        "batch_size": args.batch_size,
        "batches": args.batches,
        "photo_bytes": [len(p) for p in photos],
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "s3_latency": {"first_byte_ms": latency.first_byte_ms, "mbps": latency.mbps},
        "price": {
            "date": PRICES_DATE,
            "gb_second_usd": GB_SECOND_USD,
            "gb_second_usd_arm64": GB_SECOND_USD_ARM64,
            "request_usd": REQUEST_USD,
            "other": PRICES,
            "s3_vectors_min_put_bytes": S3_VECTORS_MIN_PUT_BYTES,
        },
        "sizes": sizes,
    }
    print(write_report(result, args.out, markdown))
    default = [r for r in sizes if r["memory_mb"] == DEFAULT_MEMORY_MB and r["prefetch"] > 0]
    if default:
        row = default[0]
        cost_summary.update(
            {"all_in_usd_per_million": row["usd_all_in"]},
            "bench.cost",
            args.summary,
            memory_mb=DEFAULT_MEMORY_MB,
            usd_compute=row["usd_compute"],
            usd_requests=row["usd_requests"],
            usd_other=row["usd_other_per_million"],
            requests_per_image=row["requests_per_image"],
            item_write_units=row["item_write_units"],
            ms_per_image=row["ms_per_image"],
            prices=PRICES_DATE,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
