"""Cold start of both functions inside the Lambda image, under the Runtime Interface Emulator.

    .venv/bin/python -m bench.cold_start --image clip-lambda:test [--memory 3008] [--runs 5]

Each run starts a fresh container (a cold execution environment) with ``--cpus M/1769 --memory M`` and
sends one request: for the S3 function an SQS batch with one real photo (moto on loopback behind it), for
the API function events/api-embed.json. Reported per function, as medians over the runs:

- ``init_ms``: the RIE's ``INIT REPORT`` (runtime start, imports of boto3/Powertools/onnxruntime, model
  load, boto3 clients: everything at module level). For container images Lambda bills INIT too.
- ``first_invoke_ms``: the handler's time for that first request (``INVOKE RTDONE``), and
  ``second_invoke_ms`` for the same request warm.
- ``first_request_wall_ms``: the client's view of the first request (INIT + invoke + RIE overhead).

Plus an import-time breakdown measured in one more container (which module costs what at INIT).
Writes bench/results/<cpu kind>/cold_start.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.machine import results_dir, write_report
from infra.local.container_rie import OFFLINE_ENV, ContainerFunction, image_model_dim
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.poller import SqsPoller
from layer.settings import LAMBDA_MB_PER_VCPU

ROOT = Path(__file__).resolve().parent.parent
RESULTS = results_dir()  # bench/results/<this CPU kind>/

BREAKDOWN = r"""
import json, time, os
t = {}
def step(name, fn):
    t0 = time.perf_counter(); fn(); t[name] = round((time.perf_counter() - t0) * 1e3, 1)
step("numpy", lambda: __import__("numpy"))
step("PIL", lambda: __import__("PIL.Image"))
step("onnxruntime", lambda: __import__("onnxruntime"))
step("botocore", lambda: __import__("botocore.session"))
step("aws_lambda_powertools", lambda: __import__("aws_lambda_powertools.logging"))
step("handler.s3 (rest of the imports)", lambda: __import__("handler.s3"))
step("handler.api (rest of the imports)", lambda: __import__("handler.api"))
from handler import runtime
step("runtime.current() (model session + boto3 clients)", runtime.current)
print(json.dumps(t))
"""


def photo() -> bytes:
    try:
        from sklearn.datasets import load_sample_image

        img = Image.fromarray(load_sample_image("china.jpg"))
    except ImportError:
        img = Image.linear_gradient("L").resize((640, 427)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def cold_s3(image: str, memory: int, stack: MotoStack, run: int) -> dict[str, float]:
    s3, sqs = stack.client("s3"), stack.client("sqs")
    s3.put_object(Bucket=stack.names.bucket, Key=f"cold/{run}.jpg", Body=photo())
    env = stack.function_env(POWERTOOLS_TRACE_DISABLED="true")
    with ContainerFunction(image, "handler.s3.lambda_handler", env=env, memory_mb=memory) as fn:
        walls: list[float] = []

        def invoke(event: dict[str, Any]) -> Any:
            result = fn.invoke(event)
            walls.append(result.wall_ms)
            return result

        poller = SqsPoller(sqs, stack.queue_url, stack.queue_arn, invoke)
        poller.drain(timeout=120)
        s3.put_object(Bucket=stack.names.bucket, Key=f"cold/{run}-warm.jpg", Body=photo())
        poller.drain(timeout=120)
        return summarize(fn, walls)


def cold_api(image: str, memory: int) -> dict[str, float]:
    event = json.loads((ROOT / "events" / "api-embed.json").read_text())
    env = dict(OFFLINE_ENV)  # no AWS call is made for an inline image
    with ContainerFunction(image, "handler.api.lambda_handler", env=env, memory_mb=memory) as fn:
        walls = [fn.invoke(event).wall_ms, fn.invoke(event).wall_ms]
        return summarize(fn, walls)


def summarize(fn: ContainerFunction, walls: list[float]) -> dict[str, float]:
    reports = fn.reports()
    if len(reports) < 2 or reports[0].init_ms is None:
        raise RuntimeError(f"expected two REPORT lines with an INIT:\n{fn.logs()[-3000:]}")
    return {
        "init_ms": reports[0].init_ms,
        "first_invoke_ms": reports[0].invoke_ms or float("nan"),
        "second_invoke_ms": reports[1].invoke_ms or float("nan"),
        "first_request_wall_ms": walls[0],
    }


def breakdown(image: str, memory: int) -> dict[str, float]:
    cmd = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        f"--cpus={memory / LAMBDA_MB_PER_VCPU:.3f}",
        f"--memory={memory}m",
    ]
    cmd += ["--env", "AWS_DEFAULT_REGION=us-east-1", "--env", "POWERTOOLS_TRACE_DISABLED=true"]
    cmd += ["--env", f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE={memory}", "--env", "TABLE_NAME=unused"]
    cmd += ["--env", "ALLOW_UNTRAINED_MODEL=true"]  # as cold_api: a random-init image is refused at INIT otherwise
    cmd += ["--entrypoint", "/opt/venv/bin/python", image, "-c", BREAKDOWN]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 1) for k in rows[0]}


def markdown(result: dict[str, Any]) -> str:
    mem = result["memory_mb"]
    lines = [
        f"Cold start under the RIE, `docker run --cpus {mem / LAMBDA_MB_PER_VCPU:.2f} --memory {mem}m` "
        f"(Lambda {mem} MB), median of {result['runs']} cold containers; load average "
        f"{result['loadavg']}.",
        "",
        "| function | INIT ms | first invoke ms | warm invoke ms | first request wall ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, m in result["functions"].items():
        lines.append(
            f"| {name} | {m['init_ms']:.0f} | {m['first_invoke_ms']:.0f} | {m['second_invoke_ms']:.0f} "
            f"| {m['first_request_wall_ms']:.0f} |"
        )
    lines += ["", "INIT breakdown (one cold container, ms):", ""]
    lines += [f"- {k}: {v:.0f}" for k, v in result["init_breakdown_ms"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="clip-lambda:test")
    ap.add_argument("--memory", type=int, default=3008, help="Lambda memory size to reproduce (MB)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "cold_start.json")
    args = ap.parse_args(argv)

    rows: dict[str, list[dict[str, float]]] = {"S3 function": [], "API function": []}
    with MotoStack(names=StackNames(dimension=image_model_dim(args.image))) as stack:
        sqs = stack.client("sqs")
        while msgs := sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1).get("Messages"):
            for m in msgs:  # the s3:TestEvent queued when the notification was configured
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
        for run in range(args.runs):
            rows["S3 function"].append(cold_s3(args.image, args.memory, stack, run))
            rows["API function"].append(cold_api(args.image, args.memory))
            print(f"run {run + 1}/{args.runs}: " + json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
    result = {
        "image": args.image,
        "memory_mb": args.memory,
        "cpus": round(args.memory / LAMBDA_MB_PER_VCPU, 3),
        "runs": args.runs,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "functions": {name: median(r) for name, r in rows.items()},
        "raw": rows,
        "init_breakdown_ms": breakdown(args.image, args.memory),
    }
    print(write_report(result, args.out, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
