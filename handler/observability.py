"""One Logger, Metrics and Tracer per process, shared by every module of both functions.

Locally (no AWS) the logger prints JSON, metrics print EMF blobs to stdout and tracing is disabled with
``POWERTOOLS_TRACE_DISABLED=true`` (the test harness sets it), so nothing needs an X-Ray daemon.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from handler.settings import metrics_namespace, service_name
from layer import Embedding

SERVICE = service_name()
NAMESPACE = metrics_namespace()

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def record_embedding(emb: Embedding) -> None:
    """Count one embedded image and the time each engine stage took (EMF, milliseconds)."""
    metrics.add_metric(name="ImagesEmbedded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="DecodeTime", unit=MetricUnit.Milliseconds, value=emb.timings.decode_ms)
    metrics.add_metric(name="PreprocessTime", unit=MetricUnit.Milliseconds, value=emb.timings.preprocess_ms)
    metrics.add_metric(name="InferenceTime", unit=MetricUnit.Milliseconds, value=emb.timings.inference_ms)


def record_failure(code: str) -> None:
    """``EmbedFailures`` with a ``code`` dimension: its own EMF blob, so codes never share a dimension set."""
    with single_metric(
        name="EmbedFailures",
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="code", value=code)


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


@contextmanager
def subsegment(name: str) -> Iterator[None]:
    """An X-Ray subsegment around S3, engine and DynamoDB calls (a no-op while tracing is disabled).

    Unlike ``tracer.capture_method`` it does not log expected exceptions (a non-image, a missing object)
    as errors; the exception is still recorded on the subsegment."""
    with tracer.provider.in_subsegment(f"## {name}"):
        yield


@contextmanager
def timed(metric_name: str) -> Iterator[None]:
    """Add the wall time of the block as a millisecond metric (e.g. ``WriteTime``, ``S3ReadTime``)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        metrics.add_metric(name=metric_name, unit=MetricUnit.Milliseconds, value=(time.perf_counter() - t0) * 1e3)
