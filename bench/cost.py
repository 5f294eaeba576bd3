"""Cost of the S3 function per image at Lambda memory sizes, reproduced with `docker run --cpus --memory`.

    .venv/bin/python -m bench.cost --image clip-lambda:test [--memory 1024 1769 3008 3538]

Lambda gives a function CPU time in proportion to its memory (1,769 MB = one vCPU), while the process
sees 2 CPUs up to 3,008 MB. ``docker run --cpus M/1769 --memory M`` reproduces that slice (CFS quota over
the visible CPUs), and ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=M`` lets the function size its thread pool as on
Lambda. For each size: a fresh container under the RIE behind moto (S3 → SQS → function → DynamoDB on
loopback), one warm-up batch (its INIT is recorded), then ``--batches`` batches of ``--batch-size``
12-MP JPEGs (scikit-learn's china.jpg and flower.jpg upscaled to 4000x3000, quality 90: phone-photo
sized files), each batch one invoke, as the template's SQS event source delivers them.

Billing model (us-east-1, x86_64): duration billed per 1 ms at $0.0000166667 per GB-s, plus $0.20 per
million requests. One invoke carries ``--batch-size`` images, so a million images are 1e6/batch-size
requests. $/M images = GB-s per image x price x 1e6 + requests. INIT of a cold start (billed for
container images) is amortized over a warm environment's life and left out; SQS, S3 and DynamoDB charges
are the same at every memory size and are left out too. Writes bench/results/<cpu kind>/lambda_cost.json, .md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.machine import results_dir, write_report
from infra.local.container_rie import ContainerFunction
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.poller import SqsPoller
from layer.settings import LAMBDA_MB_PER_VCPU

RESULTS = results_dir()  # bench/results/<this CPU kind>/
GB_SECOND_USD = 0.0000166667
REQUEST_USD = 0.20 / 1e6
SIZES = (1024, 1769, 3008, 3538)


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


def put_batch(stack: MotoStack, photos: list[bytes], prefix: str, n: int) -> None:
    s3 = stack.client("s3")
    for i in range(n):
        s3.put_object(Bucket=stack.names.bucket, Key=f"{prefix}/{i:03d}.jpg", Body=photos[i % len(photos)])


def measure_size(image: str, memory: int, photos: list[bytes], batch_size: int, batches: int) -> dict[str, Any]:
    # A fresh stack per size: its own queue and table, no leftovers between sizes.
    with MotoStack(names=StackNames(visibility_timeout=900)) as stack:
        sqs = stack.client("sqs")
        while msgs := sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1).get("Messages"):
            for m in msgs:  # the s3:TestEvent queued when the notification was configured
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
        env = stack.function_env(POWERTOOLS_TRACE_DISABLED="true")
        fn = ContainerFunction(image, "handler.s3.lambda_handler", env=env, memory_mb=memory, timeout_s=900)
        with fn:
            poller = SqsPoller(sqs, stack.queue_url, stack.queue_arn, fn.invoke, batch_size=batch_size)
            put_batch(stack, photos, "warmup", batch_size)
            poller.drain(timeout=900)
            n_warm = len(fn.reports())
            for b in range(batches):
                put_batch(stack, photos, f"batch{b}", batch_size)
                poller.drain(timeout=900)
            if poller.stats.failed or poller.stats.function_errors:
                raise RuntimeError(f"failures at {memory} MB: {poller.stats}\n{fn.logs()[-3000:]}")
            reports = fn.reports()
            stages = stage_ms_per_image(fn.logs(), n_warm)
            items = stack.client("dynamodb").scan(TableName=stack.names.table, Select="COUNT")["Count"]
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
    return {
        "memory_mb": memory,
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
    cheapest = min(rows, key=lambda r: r["usd_per_million_images"])
    lines = [
        f"S3 function on 12-MP JPEGs (4000x3000, q90), batches of {result['batch_size']} images per invoke, "
        f"{result['batches']} timed batches per size; `docker run --cpus M/1769 --memory M` under the RIE; "
        f"load average {result['loadavg']} on a 2-core host.",
        "",
        "| memory MB | vCPU share | ms / image (billed) | $ / million images | of which requests "
        "| S3 read / decode / preprocess / inference / write ms |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        mark = " **(cheapest)**" if r is cheapest else ""
        stages = " / ".join(f"{r['stage_ms_per_image'].get(k, float('nan')):.0f}" for k in STAGES)
        lines.append(
            f"| {r['memory_mb']} | {r['cpus']:.2f} | {r['ms_per_image']:.0f} | "
            f"{r['usd_per_million_images']:.2f}{mark} | {r['usd_requests']:.3f} | {stages} |"
        )
    lines += [
        "",
        f"Prices: ${GB_SECOND_USD} per GB-s (x86_64) + $0.20 per million requests; one request carries "
        f"{result['batch_size']} images. INIT, SQS, S3 and DynamoDB charges are not included.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="clip-lambda:test")
    ap.add_argument("--memory", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "lambda_cost.json")
    args = ap.parse_args(argv)

    photos = twelve_mp_jpegs()
    sizes = []
    for memory in args.memory:
        row = measure_size(args.image, memory, photos, args.batch_size, args.batches)
        print(json.dumps({k: v for k, v in row.items() if k not in ("invoke_ms", "batch_sizes")}), flush=True)
        sizes.append(row)
    result = {
        "image": args.image,
        "batch_size": args.batch_size,
        "batches": args.batches,
        "photo_bytes": [len(p) for p in photos],
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "price": {"gb_second_usd": GB_SECOND_USD, "request_usd": REQUEST_USD},
        "sizes": sizes,
    }
    print(write_report(result, args.out, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
