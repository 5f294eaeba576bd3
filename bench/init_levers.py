"""What each INIT lever is worth, one at a time, inside the Lambda image with a memory size's CPU slice.

    .venv/bin/python -m bench.init_levers --image clip-lambda:test [--memory 1024] [--runs 5]

Each probe runs in a fresh container (``docker run --cpus M/1769 --memory M``, no network) and times one
piece of INIT in-process; the figure is the median over ``--runs`` containers, and a lever's gain is the
difference between its two probes, measured in the same run. The levers:

- tracing: ``import handler.s3`` with tracing on (Powertools' Tracer imports the X-Ray SDK) and off (our
  provider that records nothing, ``Tracing=PassThrough``);
- boto3 → botocore: importing boto3 (with s3transfer) and making the two clients from its session, against
  botocore's session;
- bytecode: ``import handler.s3`` with the image's compiled ``.pyc`` files against compiling every module
  at start (``PYTHONPYCACHEPREFIX`` pointed at an empty folder);
- the ONNX session: creation at graph level "basic" (what runs) against "disabled" (the build already
  optimized the file), and with weight pre-packing off (faster creation, slower inference: the warm
  inference time is reported too);
- ``-X importtime``: the ten most expensive imports of the S3 function, for the note.

(An ORT-format model, tried by hand with ``python -m onnxruntime.tools.convert_onnx_models_to_ort``, is not
a probe: creation was no faster and its "Fixed" optimizations are specific to the converting CPU.)
Writes bench/results/<cpu kind>/init_levers_<memory>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import results_dir, write_report
from layer.settings import LAMBDA_MB_PER_VCPU

RESULTS = results_dir()

TIMER = "import time, json\nt0 = time.perf_counter()\n"
DONE = "\nprint(json.dumps({'ms': (time.perf_counter() - t0) * 1e3}))\n"
CLIENTS = "{0}.create_client('s3'); {0}.create_client('dynamodb')"
SESSION = """
import numpy as np, onnxruntime as ort, statistics
so = ort.SessionOptions(); so.intra_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.{level}
so.add_session_config_entry("session.disable_prepacking", "{prepack_off}")
t0 = time.perf_counter()
s = ort.InferenceSession("/opt/model/model.onnx", so, providers=["CPUExecutionProvider"])
created = (time.perf_counter() - t0) * 1e3
x = {{s.get_inputs()[0].name: np.zeros((1, 3, 224, 224), np.float32)}}
for _ in range(2): s.run(None, x)
runs = []
for _ in range(5):
    t = time.perf_counter(); s.run(None, x); runs.append((time.perf_counter() - t) * 1e3)
print(json.dumps({{"ms": created, "warm_inference_ms": statistics.median(runs)}}))
"""

# name → (environment, python code printing {"ms": ...})
PROBES: dict[str, tuple[dict[str, str], str]] = {
    "import handler.s3, tracing on": (
        {"POWERTOOLS_TRACE_DISABLED": "false"},
        TIMER + "import handler.s3" + DONE,
    ),
    "import handler.s3, tracing off": ({}, TIMER + "import handler.s3" + DONE),
    "boto3: import + session + 2 clients": (
        {},
        TIMER + "import boto3; s = boto3.session.Session(); s.client('s3'); s.client('dynamodb')" + DONE,
    ),
    "botocore: import + session + 2 clients": (
        {},
        TIMER + "import botocore.session; s = botocore.session.get_session(); " + CLIENTS.format("s") + DONE,
    ),
    "import handler.s3, no .pyc (compiled at start)": (
        {"PYTHONPYCACHEPREFIX": "/tmp/no-pyc"},
        TIMER + "import handler.s3" + DONE,
    ),
    "ONNX session, graph level basic": ({}, TIMER + SESSION.format(level="ORT_ENABLE_BASIC", prepack_off=0)),
    "ONNX session, graph level disabled": ({}, TIMER + SESSION.format(level="ORT_DISABLE_ALL", prepack_off=0)),
    "ONNX session, pre-packing off": ({}, TIMER + SESSION.format(level="ORT_ENABLE_BASIC", prepack_off=1)),
}
LEVERS = (  # (lever, probe without it, probe with it)
    ("X-Ray SDK only when tracing", "import handler.s3, tracing on", "import handler.s3, tracing off"),
    ("botocore instead of boto3", "boto3: import + session + 2 clients", "botocore: import + session + 2 clients"),
    (
        "compiled bytecode in the image",
        "import handler.s3, no .pyc (compiled at start)",
        "import handler.s3, tracing off",
    ),
    ("graph level disabled at load", "ONNX session, graph level basic", "ONNX session, graph level disabled"),
    ("weight pre-packing off", "ONNX session, graph level basic", "ONNX session, pre-packing off"),
)


def docker(image: str, memory: int, env: dict[str, str], *args: str) -> str:
    cmd = ["docker", "run", "--rm", "--network", "none", f"--cpus={memory / LAMBDA_MB_PER_VCPU:.3f}"]
    cmd += [f"--memory={memory}m", "--entrypoint", "/opt/venv/bin/python"]
    base = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "TABLE_NAME": "unused"}
    for k, v in {**base, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory), **env}.items():
        cmd += ["--env", f"{k}={v}"]
    return subprocess.run([*cmd, image, *args], capture_output=True, text=True, check=True, timeout=300).stdout


def probe(image: str, memory: int, env: dict[str, str], code: str) -> dict[str, float]:
    return dict(json.loads(docker(image, memory, env, "-c", code).strip().splitlines()[-1]))


def importtime(image: str, memory: int, top: int = 10) -> list[tuple[str, float]]:
    """The most expensive imports under ``handler.s3`` (cumulative ms), two levels deep."""
    cmd = ["docker", "run", "--rm", "--network", "none", f"--cpus={memory / LAMBDA_MB_PER_VCPU:.3f}"]
    cmd += ["--env", "AWS_DEFAULT_REGION=us-east-1", "--env", "POWERTOOLS_TRACE_DISABLED=true"]
    cmd += ["--entrypoint", "/opt/venv/bin/python", image, "-X", "importtime", "-c", "import handler.s3"]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stderr
    rows = []
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if 2 <= len(name) - len(name.lstrip()) <= 5:  # what handler.s3 imports, two levels deep
                rows.append((name.strip(), int(parts[1]) / 1e3))
    return sorted(rows, key=lambda r: -r[1])[:top]


def markdown(result: dict[str, Any]) -> str:
    mem = result["memory_mb"]
    lines = [
        f"INIT levers in the image, `docker run --cpus {mem / LAMBDA_MB_PER_VCPU:.2f} --memory {mem}m` "
        f"(Lambda {mem} MB), median of {result['runs']} fresh containers per probe; load average "
        f"{result['loadavg']}.",
        "",
        "| lever | without ms | with ms | gain ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for lever in result["levers"]:
        lines.append(
            f"| {lever['lever']} | {lever['without_ms']:.0f} | {lever['with_ms']:.0f} | {lever['gain_ms']:.0f} |"
        )
    warm = result["probes"]
    lines += [
        "",
        "Warm inference (1 thread) with pre-packing on / off: "
        f"{warm['ONNX session, graph level basic']['warm_inference_ms']:.1f} / "
        f"{warm['ONNX session, pre-packing off']['warm_inference_ms']:.1f} ms per image.",
        "",
        "`python -X importtime -c 'import handler.s3'` (cumulative ms, tracing off):",
        "",
    ]
    lines += [f"- {name}: {ms:.0f}" for name, ms in result["importtime_ms"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="clip-lambda:test")
    ap.add_argument("--memory", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    samples: dict[str, list[dict[str, float]]] = {name: [] for name in PROBES}
    for run in range(args.runs):  # interleaved, so that a noisy moment hits every probe alike
        for name, (env, code) in PROBES.items():
            samples[name].append(probe(args.image, args.memory, env, code))
        print(f"run {run + 1}/{args.runs}", flush=True)
    probes = {
        name: {k: round(statistics.median(s[k] for s in rows), 1) for k in rows[0]} for name, rows in samples.items()
    }
    levers = [
        {
            "lever": lever,
            "without_ms": probes[a]["ms"],
            "with_ms": probes[b]["ms"],
            "gain_ms": round(probes[a]["ms"] - probes[b]["ms"], 1),
        }
        for lever, a, b in LEVERS
    ]
    result = {
        "image": args.image,
        "memory_mb": args.memory,
        "runs": args.runs,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "probes": probes,
        "levers": levers,
        "importtime_ms": importtime(args.image, args.memory),
    }
    print(write_report(result, args.out or RESULTS / f"init_levers_{args.memory}.json", markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
