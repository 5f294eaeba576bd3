"""One Logger, Metrics and Tracer per process, shared by every module of both functions.

Locally (no AWS) the logger prints JSON, metrics print EMF blobs to stdout and tracing is disabled with
``POWERTOOLS_TRACE_DISABLED=true`` (the test harness sets it), so nothing needs an X-Ray daemon. Where
tracing is off the Tracer gets a provider that records nothing, so that the X-Ray SDK is never imported.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from handler.settings import metrics_namespace, service_name, tracing_enabled
from layer import Embedding
from layer.selfcheck import SelfCheck


class _Unrecorded(BaseSegment):
    """A segment that records nothing (tracing off)."""

    def close(self, end_time: int | None = None) -> None: ...
    def add_subsegment(self, subsegment: Any) -> None: ...
    def remove_subsegment(self, subsegment: Any) -> None: ...
    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...


class UntracedProvider(BaseProvider):
    """Powertools' Tracer without the X-Ray SDK: its default provider imports ``aws_xray_sdk.core`` (and
    botocore's session machinery with it) even when tracing is disabled."""

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Unrecorded()

    @asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _Unrecorded()

    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def patch(self, modules: Sequence[str]) -> None: ...
    def patch_all(self) -> None: ...


SERVICE = service_name()
NAMESPACE = metrics_namespace()

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE) if tracing_enabled() else Tracer(service=SERVICE, provider=UntracedProvider())


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


def record_self_check(check: SelfCheck | None) -> None:
    """At INIT: ``ModelSelfCheckFailed`` (its own EMF blob, flushed now, outside any invocation) and an error
    log line when the canaries gave other vectors than the build's; the self-check's time either way."""
    if check is None:
        return
    with single_metric(
        name="SelfCheckTime", unit=MetricUnit.Milliseconds, value=check.ms, namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ):  # fmt: skip
        pass
    if check.passed:
        return
    logger.error("model self-check failed: this sandbox writes no vectors", extra={"self_check": check.to_dict()})
    with single_metric(
        name="ModelSelfCheckFailed", unit=MetricUnit.Count, value=1, namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ):  # fmt: skip
        pass


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
