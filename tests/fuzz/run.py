"""Fuzz the image paths in a process of their own (its peak memory is the fuzz's alone).

    python -m tests.fuzz.run --target pixels|api|engine --examples N [--seed S] [--model DIR]

Targets: ``pixels`` is the engine before the ONNX session (decode + preprocess: where every parser lives),
``engine`` adds the int8 session (``Embedder.embed_one``), ``api`` is the API function's handler with a fake
engine over the real decoder (raw image bodies and JSON batches). Each case must end in a vector or in a
documented error code (the API: a status below 500, the code's own status). Prints one JSON line: cases,
outcomes by code, seconds, peak RSS (VmHWM, MiB) and the first failure Hypothesis shrank, if any.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.corpus import images
from tests.fuzz.corpus import seeds as corpus_seeds

IMAGE_CODES = {"empty_image", "image_too_large", "too_many_pixels", "not_an_image", "corrupt_image"}


def peak_rss_mib() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024


def pixels_target() -> Any:
    from layer.config import PreprocessConfig
    from layer.embedder import pixel_values
    from layer.errors import ImageError
    from layer.limits import Limits

    config, limits = PreprocessConfig(), Limits()

    def one(data: bytes, fast: bool) -> str:
        try:
            pixels = pixel_values(data, config, limits, fast_jpeg=fast)[0]
        except ImageError as exc:
            assert exc.code in IMAGE_CODES, exc.code
            return exc.code
        assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32 and np.isfinite(pixels).all()
        return "ok"

    return one


def engine_target(model: str) -> Any:
    from layer import Embedder
    from layer.errors import ImageError

    engine = Embedder.from_dir(model, threads=1)

    def one(data: bytes, fast: bool) -> str:
        engine.fast_jpeg = fast
        try:
            emb = engine.embed_one(data)
        except ImageError as exc:
            assert exc.code in IMAGE_CODES, exc.code
            return exc.code
        assert emb.vector.shape == (512,) and abs(float(np.linalg.norm(emb.vector)) - 1) < 1e-4
        return "ok"

    return one


def api_target() -> Any:
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from handler import api, runtime
    from handler.errors import API_ERRORS
    from handler.settings import Settings
    from layer import Limits
    from layer.settings import EngineSettings
    from tests.handler.helpers import Context, FakeEngine, http_event

    settings = Settings(table_name="t", engine=EngineSettings(limits=Limits(max_bytes=2_000_000)), max_batch=4)
    runtime.install(runtime.Runtime(settings=settings, engine=FakeEngine(settings.limits), s3=None, sink=None))  # type: ignore[arg-type]
    context = Context()

    def check(status: int, body: dict[str, Any]) -> str:
        assert status < 500, (status, body)
        if status == 200:
            return "ok"
        code = body["error"]["code"]
        assert API_ERRORS.get(code) == status, (code, status)
        return code

    def one(data: bytes, as_json: bool) -> str:
        if as_json:
            payload = json.dumps({"images": [{"data": base64.b64encode(data).decode()}]})
            event = http_event("POST", "/embed", payload, "application/json")
        else:
            event = http_event("POST", "/embed", data, "image/jpeg")
        response = api.lambda_handler(event, context)
        status, body = response["statusCode"], json.loads(response["body"])
        if as_json and status == 200:
            (item,) = body["results"]
            return check(item["status"], item) if "error" in item else "ok"
        return check(status, body)

    return one


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=["pixels", "engine", "api"], required=True)
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="build/model")
    args = p.parse_args(argv)

    target = {"pixels": pixels_target, "api": api_target}.get(args.target, lambda: engine_target(args.model))()
    corpus_seeds()  # built before the memory baseline is read
    outcomes: Counter[str] = Counter()

    @seed(args.seed)
    @settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=images(), flag=st.booleans())
    def fuzz(case: tuple[str, bytes], flag: bool) -> None:
        outcomes[target(case[1], flag)] += 1

    setup_rss = peak_rss_mib()
    t0 = time.perf_counter()
    failure = None
    # The handlers log and print metrics per request, Pillow warns about every corrupt tag: not the report.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fuzz()
        except Exception as exc:  # the shrunk failing example: reported, and the exit status says so
            tail = "".join(traceback.format_exception(exc))[-3000:]
            failure = f"{type(exc).__name__}: {str(exc)[:300]}\n{tail}"
    result = {
        "target": args.target,
        "seed": args.seed,
        "cases": sum(outcomes.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "seconds": round(time.perf_counter() - t0, 1),
        "setup_rss_mib": setup_rss,  # the process after imports, model and corpus
        "peak_rss_mib": peak_rss_mib(),
        "failure": failure,
    }
    print(json.dumps(result))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
