"""The DynamoDB sink: one item per object in one table, conditional on the item's ordering key.

Writes and deletes carry ``attribute_not_exists(order_key) OR order_key <= :k``, so DynamoDB itself enforces
the ordering rule of ``handler.item`` between concurrent invocations. Every method raises ``TransientError``
when DynamoDB fails (throttling after the client's own retries, 5xx, unreachable), so the SQS record is
retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from handler import item
from handler.errors import TransientError
from handler.item import Attributes, ObjectMeta, StoredItem
from handler.observability import subsegment, timed
from layer import Embedding

if TYPE_CHECKING:
    from handler.settings import Settings

CONDITION = f"attribute_not_exists({item.ORDER_KEY}) OR {item.ORDER_KEY} <= :k"


def connect(settings: Settings, session: Any, client_config: Any) -> DynamoDBSink:
    return DynamoDBSink(session.create_client("dynamodb", config=client_config), settings.table_name)


def to_dynamodb(attributes: Attributes) -> dict[str, dict[str, Any]]:
    """Item attributes → DynamoDB's typed values (S, N, B: the types this table uses)."""
    typed: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if isinstance(value, bytes):
            typed[name] = {"B": value}
        elif isinstance(value, str):
            typed[name] = {"S": value}
        else:
            typed[name] = {"N": repr(float(value)) if isinstance(value, float) else str(value)}
    return typed


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
    return value


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoDBSink:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    def get(self, pk: str) -> StoredItem | None:
        try:
            with subsegment("dynamodb.get_item"):
                resp = self.client.get_item(TableName=self.table_name, Key={item.PK: {"S": pk}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"DynamoDB GetItem {pk}: {exc}") from exc
        found = resp.get("Item")
        return StoredItem(from_dynamodb(found)) if found else None

    def put_embedding(self, meta: ObjectMeta, emb: Embedding) -> bool:
        return self._put(item.embedding_item(meta, emb))

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
