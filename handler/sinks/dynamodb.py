"""The DynamoDB sink: one item per object in one table, conditional on the item's ordering key.

Writes and deletes carry ``attribute_not_exists(order_key) OR order_key <= :k``, so DynamoDB itself enforces
the ordering rule of ``handler.item`` between concurrent invocations. Every method raises ``TransientError``
when DynamoDB fails (throttling after the client's own retries, 5xx, unreachable), so the SQS record is
retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from handler import item
from handler.errors import TransientError
from handler.item import Attributes, ObjectMeta, StoredItem
from handler.observability import subsegment, timed
from layer import Embedding

if TYPE_CHECKING:
    from handler.settings import Settings

MAX_UNPROCESSED_ROUNDS = 5
CONDITION = f"attribute_not_exists({item.ORDER_KEY}) OR {item.ORDER_KEY} <= :k"


# BatchGetItem's limit on keys per request.
MAX_BATCH_GET = 100


def connect(settings: Settings, session: Any, client_config: Any) -> DynamoDBSink:
    client = session.create_client("dynamodb", config=client_config)
    return DynamoDBSink(client, settings.table_name, settings.item_vector_format)


def to_dynamodb(attributes: Attributes) -> dict[str, dict[str, Any]]:
    """Item attributes → DynamoDB's typed values (S, N, B, and L of them: the types this table uses)."""
    return {name: _typed(value) for name, value in attributes.items()}


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list | tuple):
        return {"L": [_typed(v) for v in value]}
    return {"N": repr(float(value)) if isinstance(value, float) else str(value)}


def from_dynamodb(typed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in typed.items()}


def _plain(value: dict[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        n = value["N"]
        return float(n) if any(c in n for c in ".eE") else int(n)
    if "B" in value:
        return bytes(value["B"])
    if "BOOL" in value:
        return bool(value["BOOL"])
    if "L" in value:
        return [_plain(v) for v in value["L"]]
    return value


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoDBSink:
    """``vector``: where an embedding item's vector goes (``handler.item.FULL``, ``FLOAT16`` or ``NONE``)."""

    def __init__(self, client: Any, table_name: str, vector: str = item.FULL) -> None:
        self.client = client
        self.table_name = table_name
        self.vector = vector

    def get(self, pk: str) -> StoredItem | None:
        try:
            with subsegment("dynamodb.get_item"):
                resp = self.client.get_item(TableName=self.table_name, Key={item.PK: {"S": pk}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"DynamoDB GetItem {pk}: {exc}") from exc
        found = resp.get("Item")
        return StoredItem(from_dynamodb(found)) if found else None

    def get_many(self, pks: Sequence[str]) -> dict[str, StoredItem | None]:
        """Strongly consistent reads of many items: BatchGetItem, 100 keys a request, its unprocessed keys
        asked again (DynamoDB returns them when throttled; the client's retry mode paces the requests)."""
        found: dict[str, StoredItem | None] = dict.fromkeys(pks)
        unique = list(found)
        for start in range(0, len(unique), MAX_BATCH_GET):
            keys = [{item.PK: {"S": pk}} for pk in unique[start : start + MAX_BATCH_GET]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            for _attempt in range(MAX_UNPROCESSED_ROUNDS):
                try:
                    with subsegment("dynamodb.batch_get_item"):
                        resp = self.client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise TransientError(f"DynamoDB BatchGetItem ({len(keys)} keys): {exc}") from exc
                for typed in resp.get("Responses", {}).get(self.table_name, []):
                    got = StoredItem(from_dynamodb(typed))
                    found[got.pk] = got
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise TransientError(f"DynamoDB BatchGetItem: keys unprocessed after {MAX_UNPROCESSED_ROUNDS} rounds")
        return found

    def put_embedding(self, meta: ObjectMeta, emb: Embedding, vector: str | None = None) -> bool:
        return self._put(item.embedding_item(meta, emb, vector or self.vector))

    def put_failure(self, meta: ObjectMeta, code: str, message: str, model: str) -> bool:
        return self._put(item.failure_item(meta, code, message, model))

    def delete(self, pk: str, order_key: str) -> bool:
        return self._conditional(
            "DeleteItem",
            pk,
            lambda: self.client.delete_item(
                TableName=self.table_name,
                Key={item.PK: {"S": pk}},
                ConditionExpression=CONDITION,
                ExpressionAttributeValues={":k": {"S": order_key}},
            ),
        )

    def _put(self, attributes: Attributes) -> bool:
        typed = to_dynamodb(attributes)
        return self._conditional(
            "PutItem",
            str(attributes[item.PK]),
            lambda: self.client.put_item(
                TableName=self.table_name,
                Item=typed,
                ConditionExpression=CONDITION,
                ExpressionAttributeValues={":k": typed[item.ORDER_KEY]},
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
