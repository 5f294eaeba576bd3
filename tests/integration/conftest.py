"""One moto server, one fault proxy in front of its DynamoDB, and both functions under the RIE, shared by
the integration tests of a module (INIT, i.e. the model load, happens once per function)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.local.faults import FaultProxy
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.poller import SqsPoller
from infra.local.rie import LocalFunction
from layer.manifest import Manifest

API_MAX_IMAGE_BYTES = 1_500_000


@pytest.fixture(scope="module")
def stack(model_dir: Path) -> Iterator[MotoStack]:
    # Short visibility timeout so that retries (and the DLQ after 3 receives) take seconds, not minutes; the
    # vector index of the model's dimension (as the template's EmbeddingDimension).
    names = StackNames(visibility_timeout=3, max_receive_count=3, dimension=Manifest.read(model_dir).dim)
    with MotoStack(names=names).start() as s:
        # Configuring the notification queued an s3:TestEvent (as real S3 does): taken out here, so that no
        # test depends on another having drained it first.
        sqs = s.client("sqs")
        while msgs := sqs.receive_message(QueueUrl=s.queue_url, WaitTimeSeconds=1).get("Messages"):
            for m in msgs:
                sqs.delete_message(QueueUrl=s.queue_url, ReceiptHandle=m["ReceiptHandle"])
        yield s


@pytest.fixture(scope="module")
def ddb_proxy(stack: MotoStack) -> Iterator[FaultProxy]:
    with FaultProxy(target=stack.endpoint).start() as proxy:
        yield proxy


@pytest.fixture(scope="module")
def s3_fn(stack: MotoStack, ddb_proxy: FaultProxy, model_dir: Path) -> Iterator[LocalFunction]:
    env = stack.function_env(
        MODEL_DIR=str(model_dir),
        AWS_ENDPOINT_URL_DYNAMODB=ddb_proxy.endpoint,  # the function's DynamoDB traffic goes through faults
        POWERTOOLS_METRICS_NAMESPACE="ClipLambdaIT",
    )
    with LocalFunction("handler.s3.lambda_handler", env=env, name="clip-s3").start() as fn:
        yield fn


@pytest.fixture(scope="module")
def api_fn(stack: MotoStack, model_dir: Path) -> Iterator[LocalFunction]:
    env = stack.function_env(
        MODEL_DIR=str(model_dir),
        MAX_IMAGE_BYTES=str(API_MAX_IMAGE_BYTES),
        POWERTOOLS_METRICS_NAMESPACE="ClipLambdaIT",
    )
    with LocalFunction("handler.api.lambda_handler", env=env, name="clip-api").start() as fn:
        yield fn


@pytest.fixture(scope="module")
def poller(stack: MotoStack, s3_fn: LocalFunction) -> SqsPoller:
    return SqsPoller(stack.client("sqs"), stack.queue_url, stack.queue_arn, s3_fn.invoke, wait_seconds=1)


def cli_embeddings(model_dir: Path, files: list[Path]) -> dict[str, np.ndarray]:
    """``clip-lambda embed`` (the layer's CLI) on the same files: the reference vectors."""
    out = subprocess.run(
        [sys.executable, "-m", "layer", "embed", "--model", str(model_dir), *map(str, files)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return {row["path"]: np.asarray(row["embedding"], dtype=np.float64) for row in rows}


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def items_under(stack: MotoStack, prefix: str) -> dict[str, dict[str, Any]]:
    ddb = stack.client("dynamodb")
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": stack.names.table, "ConsistentRead": True}
    for _ in range(100):  # bounded pagination
        page = ddb.scan(**kwargs)
        for it in page["Items"]:
            if it["pk"]["S"].startswith(prefix):
                assert it["pk"]["S"] not in items
                items[it["pk"]["S"]] = it
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return items


def dlq_bodies(stack: MotoStack) -> list[str]:
    sqs = stack.client("sqs")
    bodies: list[str] = []
    for _ in range(10):
        got = sqs.receive_message(
            QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        )
        msgs = got.get("Messages", [])
        if not msgs:
            break
        bodies += [m["Body"] for m in msgs]
        sqs.delete_message_batch(
            QueueUrl=stack.dlq_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
        )
    return bodies
