"""A moto server on 127.0.0.1 with the resources of template.yaml: bucket, queue + DLQ (redrive policy),
S3 → SQS notifications for created/removed objects, the embeddings table, and the S3 Vectors bucket and
index (``VectorIndex=s3vectors``), behind the local QueryVectors emulation (``infra.local.vector_query``).

    with MotoStack().start() as stack:
        s3 = stack.client("s3")
        env = stack.function_env()   # AWS_ENDPOINT_URL(_S3VECTORS), TABLE_NAME, VECTOR_*, credentials, region

moto runs as its own process (``python -m moto.server``), so its state never mixes with in-process
``mock_aws`` tests, and ``stop()`` ends exactly that process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from infra.local.net import HOST, free_port, on_free_ports, wait_listening
from infra.local.vector_query import VectorQueryFront

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@dataclass(frozen=True)
class StackNames:
    bucket: str = "clip-lambda-images"
    queue: str = "clip-lambda-events"
    dlq: str = "clip-lambda-events-dlq"
    table: str = "clip-lambda-embeddings"
    max_receive_count: int = 3  # deliveries before SQS moves a message to the DLQ
    visibility_timeout: int = 30  # seconds a failed message stays invisible before its retry
    notifications: bool = True  # S3 → SQS for created/removed objects (off: the caller sends the events)
    vector_bucket: str = "clip-lambda-vectors"  # "": no vector index (the template's VectorIndex=none)
    vector_index: str = "images"
    dimension: int | None = None  # the index's, as the template's EmbeddingDimension: the model's (manifest)
    item_vector: str = "auto"  # the template's ItemVector: auto = none with an index (lean items), else full


@dataclass
class MotoStack:
    names: StackNames = field(default_factory=StackNames)
    port: int = 0
    log_path: Path | None = None
    queue_url: str = ""
    dlq_url: str = ""
    queue_arn: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _vectors: VectorQueryFront | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def vectors_endpoint(self) -> str:
        """S3 Vectors: moto behind the QueryVectors emulation."""
        return self._vectors.endpoint if self._vectors is not None else self.endpoint

    def client(self, service: str, endpoint: str | None = None) -> Any:
        session: Any = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        config = Config(retries={"mode": "standard", "max_attempts": 3})
        default = self.vectors_endpoint if service == "s3vectors" else self.endpoint
        return session.client(service, endpoint_url=endpoint or default, config=config)

    def start(self) -> MotoStack:
        if self.port:  # a requested port: one try
            return self._start_once()

        def once() -> MotoStack:
            self.port = free_port()
            return self._start_once()

        return on_free_ports(once)

    def _start_once(self) -> MotoStack:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="moto-")) / "moto.log"
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
            start_new_session=True,
        )
        log.close()
        try:
            alive = lambda: self._proc is not None and self._proc.poll() is None  # noqa: E731
            wait_listening(self.port, timeout=60, alive=alive)
            if not alive():  # someone else's server answered on that port, and ours could not bind it
                raise RuntimeError(f"moto could not bind {HOST}:{self.port}")
            self._vectors = VectorQueryFront(target=self.endpoint).start()
            self.create_resources()
        except BaseException:
            self.stop()
            raise
        return self

    def create_resources(self) -> None:
        n = self.names
        sqs, s3, ddb = self.client("sqs"), self.client("s3"), self.client("dynamodb")
        self.dlq_url = sqs.create_queue(QueueName=n.dlq)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName=n.queue,
            Attributes={
                "VisibilityTimeout": str(n.visibility_timeout),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": n.max_receive_count}),
            },
        )["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3.create_bucket(Bucket=n.bucket)
        if n.notifications:
            s3.put_bucket_notification_configuration(
                Bucket=n.bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {"QueueArn": self.queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                    ]
                },
            )
        ddb.create_table(
            TableName=n.table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        if n.vector_bucket:
            self.create_vector_index()

    @property
    def vector_calls(self) -> Counter[str]:
        """S3 Vectors requests the stack's index answered, by operation (PutVectors, GetVectors, ...)."""
        return self._vectors.calls if self._vectors is not None else Counter()

    def stored_vector(self, typed: dict[str, Any]) -> Any:
        """A DynamoDB item's vector (as ``scan``/``get_item`` return the item) from wherever it lives: the item,
        or the index for a lean item (``ItemVector=none``); None for a failure record."""
        from handler import indexing
        from handler.item import StoredItem
        from handler.sinks.dynamodb import from_dynamodb
        from handler.vector_index import S3VectorsIndex

        n = self.names
        index = S3VectorsIndex(self.client("s3vectors"), n.vector_bucket, n.vector_index) if n.vector_bucket else None
        return indexing.stored_vector(StoredItem(from_dynamodb(typed)), index)[0]

    def create_vector_index(self) -> None:
        """The template's vector bucket and index (its dimension, metric, encryption, non-filterable keys)."""
        from handler import vector_index

        n, s3v = self.names, self.client("s3vectors")
        if n.dimension is None:
            raise ValueError("StackNames.dimension: the vector index needs the model's dimension (its manifest)")
        s3v.create_vector_bucket(vectorBucketName=n.vector_bucket, encryptionConfiguration={"sseType": "AES256"})
        s3v.create_index(
            vectorBucketName=n.vector_bucket,
            indexName=n.vector_index,
            dataType="float32",
            dimension=n.dimension,
            distanceMetric=vector_index.DISTANCE,
            metadataConfiguration={"nonFilterableMetadataKeys": list(vector_index.NON_FILTERABLE)},
        )

    def function_env(self, **overrides: str) -> dict[str, str]:
        """Environment for a function that talks to this stack (docs/operations.md#environment)."""
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "TABLE_NAME": self.names.table,
            **({"EMBEDDING_DIM": str(self.names.dimension)} if self.names.dimension else {}),
            # The local stack is for development: it runs random-init models (loudly: infra/local/stack.py).
            "ALLOW_UNTRAINED_MODEL": "true",
            "ALLOWED_S3_BUCKETS": self.names.bucket,
            "ITEM_VECTOR": self.names.item_vector,
            **self.vector_env(),
            **overrides,
        }

    def vector_env(self) -> dict[str, str]:
        if not self.names.vector_bucket:
            return {}
        return {
            "VECTOR_BUCKET": self.names.vector_bucket,
            "VECTOR_INDEX": self.names.vector_index,
            "AWS_ENDPOINT_URL_S3VECTORS": self.vectors_endpoint,
        }

    def stop(self) -> None:
        vectors, self._vectors = self._vectors, None
        if vectors is not None:
            vectors.stop()
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> MotoStack:
        return self if self._proc else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
