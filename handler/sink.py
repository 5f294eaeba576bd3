"""The DynamoDB writer: one item per S3 object, written and deleted only by events newer than what it holds.

Item (design.md contract): ``pk`` = ``s3://{bucket}/{key}``, ``embedding`` (Binary, little-endian float32 x
``dim``), ``dim``, ``norm``, ``model``, ``etag``, ``version_id``, ``sequencer``, ``size``, ``width``,
``height``, ``content_type``, ``embedded_at`` — plus ``order_key`` (see ``ObjectEvent.order_key``), the
value every condition compares: writes need ``order_key <= :new``, deletes too, so a duplicate or late event
never replaces newer data (an equal key is the same event again and may rewrite identical data).

Failure records: a permanent input error (not an image, corrupt, too large, bomb) is written at the *same*
``pk`` with ``error_code``, ``error_message`` and ``failed_at`` and **no** ``embedding``, under the same
ordering rule. So ``GetItem(pk)`` answers "what happened to this object?", a later good upload of the key
replaces the failure, a delete removes it, and all failures are found with
``Scan(FilterExpression="attribute_exists(error_code)")``; readers of vectors filter on
``attribute_exists(embedding)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from handler import location
from handler.errors import TransientError
from handler.observability import subsegment, timed
from layer import Embedding

_CONDITION = "attribute_not_exists(order_key) OR order_key <= :k"


@dataclass(frozen=True)
class ObjectMeta:
    """What is known about the object an item describes (from the event and the GET)."""

    bucket: str
    key: str
    order_key: str
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    size: int | None = None
    content_type: str | None = None

    @property
    def pk(self) -> str:
        return location.uri(self.bucket, self.key)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, "<f4")


def _common(meta: ObjectMeta) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": meta.pk}, "order_key": {"S": meta.order_key}}
    if meta.etag:
        item["etag"] = {"S": meta.etag}
    if meta.version_id:
        item["version_id"] = {"S": meta.version_id}
    if meta.sequencer:
        item["sequencer"] = {"S": meta.sequencer}
    if meta.size is not None:
        item["size"] = {"N": str(meta.size)}
    if meta.content_type:
        item["content_type"] = {"S": meta.content_type}
    return item


def embedding_item(meta: ObjectMeta, emb: Embedding) -> dict[str, Any]:
    item = _common(meta)
    item.update(
        embedding={"B": encode_vector(emb.vector)},
        dim={"N": str(emb.dim)},
        norm={"N": repr(float(emb.norm))},
        model={"S": emb.model},
        width={"N": str(emb.width)},
        height={"N": str(emb.height)},
        embedded_at={"S": now_iso()},
    )
    return item


def failure_item(meta: ObjectMeta, code: str, message: str, model: str) -> dict[str, Any]:
    item = _common(meta)
    item.update(
        error_code={"S": code},
        error_message={"S": message[:1000]},
        model={"S": model},
        failed_at={"S": now_iso()},
    )
    return item


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Sink:
    """Conditional writes to one table. Every method raises ``TransientError`` when DynamoDB fails
    (throttling after the client's own retries, 5xx, unreachable), so the SQS record is retried."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    def get(self, pk: str) -> dict[str, Any] | None:
        try:
            with subsegment("dynamodb.get_item"):
                resp = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": pk}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"DynamoDB GetItem {pk}: {exc}") from exc
        item = resp.get("Item")
        return {k: _plain(v) for k, v in item.items()} if item else None

    def put_embedding(self, meta: ObjectMeta, emb: Embedding) -> bool:
        """Write the item; False if the table already holds a newer event's data."""
        return self._put(embedding_item(meta, emb))

    def put_failure(self, meta: ObjectMeta, code: str, message: str, model: str) -> bool:
        return self._put(failure_item(meta, code, message, model))

    def delete(self, pk: str, order_key: str) -> bool:
        """Delete the item unless a newer event wrote it; True if deleted or absent."""
        return self._conditional(
            "DeleteItem",
            pk,
            lambda: self.client.delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": pk}},
                ConditionExpression=_CONDITION,
                ExpressionAttributeValues={":k": {"S": order_key}},
            ),
        )

    def _put(self, item: dict[str, Any]) -> bool:
        return self._conditional(
            "PutItem",
            item["pk"]["S"],
            lambda: self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=_CONDITION,
                ExpressionAttributeValues={":k": item["order_key"]},
            ),
        )

    @staticmethod
    def _conditional(operation: str, pk: str, call: Callable[[], object]) -> bool:
        """Run one conditional write: False when the condition failed (newer data is there), True when it
        was applied, ``TransientError`` for anything else, so that the record is retried."""
        try:
            with subsegment(f"dynamodb.{operation}"), timed("WriteTime"):
                call()
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise TransientError(f"DynamoDB {operation} {pk}: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"DynamoDB {operation} {pk}: {exc}") from exc
        return True


def _plain(value: dict[str, Any]) -> Any:
    """Low-level attribute value → Python (S/N/B/BOOL only: the types this table uses)."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        n = value["N"]
        return float(n) if any(c in n for c in ".eE") else int(n)
    if "B" in value:
        return bytes(value["B"])
    if "BOOL" in value:
        return bool(value["BOOL"])
    return value
