"""Handler unit-test fixtures: moto's in-process AWS with the contract's bucket and table, and the runtime
the handlers use with a fake engine installed."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ClipLambdaTest")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "clip-lambda-test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_var, "testing")

from handler import runtime  # noqa: E402
from handler.settings import Settings  # noqa: E402
from handler.sinks.dynamodb import DynamoDBSink  # noqa: E402
from layer import Limits  # noqa: E402
from layer.settings import EngineSettings  # noqa: E402
from tests.handler.helpers import BUCKET, TABLE, Context, FakeEngine  # noqa: E402
from tests.imaging import encode, photo_bytes, resized_photo  # noqa: E402


@pytest.fixture
def logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON log records the functions write (the Logger's stream was bound at import, before capsys)."""
    from handler.observability import logger

    stream = io.StringIO()
    handler = logger.registered_handler
    # Swapped directly: setStream() would flush the previous stream, which a test runner may have closed.
    previous, handler.stream = handler.stream, stream  # type: ignore[attr-defined]
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    handler.stream = previous  # type: ignore[attr-defined]


@pytest.fixture
def context() -> Context:
    return Context()


@pytest.fixture(scope="session")
def photo() -> bytes:
    """A real camera JPEG (scikit-learn china.jpg, 640x427)."""
    return photo_bytes()["china.jpg"]


@pytest.fixture(scope="session")
def photo2() -> bytes:
    return encode(resized_photo((320, 240), "flower.jpg"), "JPEG", quality=90)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """moto in-process S3 + DynamoDB with the bucket and table of the contract."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield {"s3": s3, "ddb": ddb}


@pytest.fixture
def settings() -> Settings:
    return Settings(
        table_name=TABLE,
        engine=EngineSettings(limits=Limits(max_bytes=2_000_000, max_pixels=20_000_000)),
        max_batch=8,
        allowed_buckets=(BUCKET,),
    )


@pytest.fixture
def rt(aws: dict[str, Any], settings: Settings) -> Iterator[runtime.Runtime]:
    """The runtime the handlers use, with the fake engine and moto-backed clients."""
    r = runtime.Runtime(
        settings=settings, engine=FakeEngine(settings.limits), s3=aws["s3"], sink=DynamoDBSink(aws["ddb"], TABLE)
    )
    previous = runtime.install(r)
    yield r
    runtime.install(previous)
