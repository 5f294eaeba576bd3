"""Warm latency of ``POST /embed`` with a 1080p JPEG: the API function in the Lambda image under the RIE,
behind the local HTTP API front, at the template's default API memory size.

    .venv/bin/python -m bench.api_latency --image clip-lambda:test [--memory 1769] [--requests 200]

The container gets ``--cpus M/1769 --memory M``. After ``--warmup`` requests, ``--requests`` sequential
requests (the RIE serves one at a time, as one Lambda execution environment does); reported: p50/p90/p99
of the client's wall time (HTTP front + RIE + function) and of the function's own duration (its REPORT
line), which is what API Gateway adds its ~10 ms to. Writes bench/results/<cpu kind>/api_latency.json, .md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.machine import results_dir, write_report
from infra.local.api_gateway import ApiGateway
from infra.local.container_rie import OFFLINE_ENV, ContainerFunction
from layer.settings import LAMBDA_MB_PER_VCPU

ROOT = Path(__file__).resolve().parent.parent
RESULTS = results_dir()


def template_api_memory() -> int:
    from samcli.yamlhelper import yaml_parse  # the SAM CLI's parser reads the short-form intrinsics

    template = yaml_parse((ROOT / "template.yaml").read_text())
    return int(template["Parameters"]["ApiFunctionMemorySize"]["Default"])


def jpeg_1080p() -> bytes:
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).resize((1920, 1080), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 1),
        "p90": round(percentile(values, 90), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


def measure(image: str, memory: int, warmup: int, requests: int) -> dict[str, Any]:
    body = jpeg_1080p()
    env = dict(OFFLINE_ENV)  # no AWS call is made for an inline image
    walls: list[float] = []
    with ContainerFunction(image, "handler.api.lambda_handler", env=env, memory_mb=memory) as fn:
        with ApiGateway(fn.invoke).start() as gateway:
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
            for i in range(warmup + requests):
                t0 = time.perf_counter()
                conn.request("POST", "/embed", body=body, headers={"Content-Type": "image/jpeg"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"POST /embed answered {resp.status}")
                if i >= warmup:
                    walls.append((time.perf_counter() - t0) * 1e3)
            conn.close()
        durations = [r.duration_ms for r in fn.reports()[1 + warmup :]]  # the first also carries INIT
    return {
        "memory_mb": memory,
        "cpus": round(memory / LAMBDA_MB_PER_VCPU, 3),
        "jpeg_bytes": len(body),
        "requests": requests,
        "client_wall_ms": summary(walls),
        "function_ms": summary(durations),
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["memory_mb"]
    lines = [
        f"Warm `POST /embed` of a 1920x1080 JPEG ({result['jpeg_bytes'] / 1e3:.0f} kB), {result['requests']} "
        f"sequential requests after {result['warmup']} warm-up; API function at {m} MB "
        f"(`docker run --cpus {m / LAMBDA_MB_PER_VCPU:.2f} --memory {m}m`) under the RIE behind the local HTTP "
        f"API front; load average {result['loadavg']}.",
        "",
        "| ms | p50 | p90 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, key in (("function (REPORT duration)", "function_ms"), ("client wall (front + RIE)", "client_wall_ms")):
        s = result[key]
        lines.append(f"| {name} | {s['p50']:.0f} | {s['p90']:.0f} | {s['p99']:.0f} | {s['max']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="clip-lambda:test")
    ap.add_argument("--memory", type=int, default=None, help="default: the template's ApiFunctionMemorySize")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS / "api_latency.json")
    args = ap.parse_args(argv)
    result = measure(args.image, args.memory or template_api_memory(), args.warmup, args.requests)
    result.update(
        warmup=args.warmup,
        loadavg=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    print(write_report(result, args.out, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
