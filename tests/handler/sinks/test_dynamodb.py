"""The DynamoDB sink (handler.sinks.dynamodb): the typed encoding of an item, and its conditional writes,
against a stub client (the ordering against a table is in tests/handler/test_s3.py and test_ingest.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from handler import item
from handler.errors import TransientError
from handler.item import StoredItem
from handler.sinks.dynamodb import CONDITION, DynamoDBSink, from_dynamodb, to_dynamodb
from tests.handler.helpers import ITEM_META as META
from tests.handler.helpers import item_embedding as _emb


def test_dynamodb_encoding_round_trips_every_type() -> None:
    attributes = item.embedding_item(META, _emb())
    typed = to_dynamodb(attributes)
    assert typed["pk"] == {"S": "s3://b/dir/a b.jpg"} and typed["size"] == {"N": "123"}
    assert typed["norm"] == {"N": "10.25"} and set(typed["embedding"]) == {"B"}
    back = from_dynamodb(typed)
    assert back == attributes
    assert type(back["size"]) is int and type(back["norm"]) is float
    np.testing.assert_array_equal(StoredItem(back).vector, _emb().vector)
    assert from_dynamodb({"x": {"N": "1e3"}, "y": {"BOOL": True}}) == {"x": 1000.0, "y": True}
    assert from_dynamodb({"z": {"NULL": True}}) == {"z": {"NULL": True}}


@pytest.mark.parametrize("norm", [1e-9, 123456.789, 0.1])
def test_norm_survives_the_number_encoding_exactly(norm: float) -> None:
    assert from_dynamodb(to_dynamodb({"norm": norm}))["norm"] == norm


def test_dynamodb_numbers_in_exponent_form_read_as_floats() -> None:
    assert from_dynamodb({"a": {"N": "1E3"}, "b": {"N": "2.5e-3"}, "c": {"N": "7"}}) == {
        "a": 1000.0,
        "b": 0.0025,
        "c": 7,
    }


# ------------------------------------------------------------------------------------- conditional writes
class Client:
    """A stub DynamoDB client: records each call, and raises ``fail`` (if set) instead of answering."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _call(self, operation: str, kw: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, kw))
        if self.fail is not None:
            raise self.fail
        return {}

    def put_item(self, **kw: Any) -> dict[str, Any]:
        return self._call("PutItem", kw)

    def delete_item(self, **kw: Any) -> dict[str, Any]:
        return self._call("DeleteItem", kw)

    def get_item(self, **kw: Any) -> dict[str, Any]:
        self._call("GetItem", kw)
        return {"Item": to_dynamodb(item.embedding_item(META, _emb()))}


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutItem")


def test_every_write_is_conditional_on_the_order_key() -> None:
    """A put carries the item's order key, a delete the event's: DynamoDB itself applies the ordering rule."""
    client = Client()
    sink = DynamoDBSink(client, "t")
    assert sink.put_embedding(META, _emb()) is True
    assert sink.put_failure(META, "corrupt_image", "bad", "m/1") is True
    assert sink.delete(META.pk, "1AC") is True
    (put, a), (fail, b), (delete, c) = client.calls
    assert (put, fail, delete) == ("PutItem", "PutItem", "DeleteItem")
    for kw in (a, b, c):
        assert kw["TableName"] == "t" and kw["ConditionExpression"] == CONDITION
    assert a["ExpressionAttributeValues"] == {":k": {"S": "1AB"}} == b["ExpressionAttributeValues"]
    assert a["Item"]["pk"] == {"S": META.pk} and "error_code" in b["Item"] and "embedding" not in b["Item"]
    assert c["Key"] == {"pk": {"S": META.pk}} and c["ExpressionAttributeValues"] == {":k": {"S": "1AC"}}
    assert CONDITION == "attribute_not_exists(order_key) OR order_key <= :k"


def test_a_failed_condition_is_false_and_any_other_failure_transient() -> None:
    assert (
        DynamoDBSink(Client(client_error("ConditionalCheckFailedException")), "t").put_embedding(META, _emb()) is False
    )
    assert DynamoDBSink(Client(client_error("ConditionalCheckFailedException")), "t").delete(META.pk, "1") is False
    for exc in (client_error("ProvisionedThroughputExceededException"), client_error("InternalServerError", 500),
                EndpointConnectionError(endpoint_url="http://127.0.0.1:9")):  # fmt: skip
        with pytest.raises(TransientError, match=r"DynamoDB PutItem s3://b/dir/a b\.jpg"):
            DynamoDBSink(Client(exc), "t").put_embedding(META, _emb())
        with pytest.raises(TransientError, match="DynamoDB DeleteItem"):
            DynamoDBSink(Client(exc), "t").delete(META.pk, "1")


def test_get_reads_strongly_consistent_and_decodes_the_item() -> None:
    client = Client()
    got = DynamoDBSink(client, "t").get(META.pk)
    assert got is not None and got.order_key == "1AB"
    np.testing.assert_array_equal(got.vector, _emb().vector)
    assert client.calls == [("GetItem", {"TableName": "t", "Key": {"pk": {"S": META.pk}}, "ConsistentRead": True})]
    with pytest.raises(TransientError, match="DynamoDB GetItem"):
        DynamoDBSink(Client(client_error("ThrottlingException")), "t").get(META.pk)
