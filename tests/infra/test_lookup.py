"""``clip-lambda item`` (infra/lookup.py) against stub clients: one object's item as JSON, its vector from the
item when it holds one, the table named by an option, the stack or the environment, and no item is status 1."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest

from handler import item
from handler.item import ObjectMeta
from handler.sinks.dynamodb import to_dynamodb
from infra.lookup import main, table_name
from layer import Embedding

META = ObjectMeta(bucket="photos", key="cats/a b.jpg", order_key="1A", etag="e1", size=12)
VECTOR = np.array([0.6, 0.8], np.float32)


class Client:
    def __init__(self, session: Session, service: str, kw: dict[str, Any]) -> None:
        self.session, self.service, self.kw = session, service, kw

    def get_item(self, TableName: str, Key: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.session.reads.append((TableName, Key["pk"]["S"], kw.get("ConsistentRead")))
        found = self.session.items.get(Key["pk"]["S"])
        return {"Item": to_dynamodb(found)} if found else {}

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        outputs = [{"OutputKey": "TableName", "OutputValue": f"{StackName}-table"}]
        return {"Stacks": [{"Outputs": outputs}]}


class Session:
    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items
        self.reads: list[tuple[str, str, bool | None]] = []
        self.clients: list[Client] = []

    def client(self, service: str, **kw: Any) -> Client:
        self.clients.append(Client(self, service, kw))
        return self.clients[-1]


def embedded() -> dict[str, Any]:
    return dict(item.embedding_item(META, Embedding(vector=VECTOR, norm=2.0, model="m", width=4, height=3)))


def run(argv: list[str], session: Session) -> tuple[int, dict[str, Any] | None]:
    out = io.StringIO()
    status = main(argv, session=session, out=out)
    return status, (json.loads(out.getvalue()) if out.getvalue() else None)


def test_an_items_attributes_and_its_vector_from_the_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VECTOR_BUCKET", raising=False)
    session = Session({META.pk: embedded()})
    status, row = run([META.pk, "--table", "t", "--endpoint-url", "http://127.0.0.1:5000"], session)
    assert status == 0 and row is not None
    assert (row["pk"], row["etag"], row["model"], row["dim"], row["norm"]) == (META.pk, "e1", "m", 2, 2.0)
    assert "embedding" not in row  # the vector once, as numbers
    assert row["vector"] == pytest.approx([0.6, 0.8]) and row["vector_from"] == "item"
    assert session.reads == [("t", META.pk, True)]
    [ddb] = session.clients
    assert ddb.service == "dynamodb" and ddb.kw["endpoint_url"] == "http://127.0.0.1:5000"


def test_the_attributes_only_and_binary_values_as_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    attributes = {**embedded(), "thumbnail": b"\x00\x01"}
    status, row = run([META.pk, "--table", "t", "--no-vector"], Session({META.pk: attributes}))
    assert status == 0 and row is not None and (row["vector"], row["vector_from"]) == (None, None)
    assert row["thumbnail"] == base64.b64encode(b"\x00\x01").decode()


def test_no_item_is_status_1_saying_why(capsys: pytest.CaptureFixture[str]) -> None:
    status, row = run(["s3://photos/never.jpg", "--table", "t"], Session({}))
    assert (status, row) == (1, None)
    assert "no item for s3://photos/never.jpg: never embedded, or deleted" in capsys.readouterr().err


def test_the_table_is_the_options_the_stacks_or_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.lookup import parser

    session = Session({})
    assert table_name(parser().parse_args(["s3://b/k", "--table", "t"]), session) == "t"
    assert table_name(parser().parse_args(["s3://b/k", "--stack", "prod"]), session) == "prod-table"
    monkeypatch.setenv("TABLE_NAME", "from-env")
    assert table_name(parser().parse_args(["s3://b/k"]), session) == "from-env"
    monkeypatch.delenv("TABLE_NAME")
    with pytest.raises(SystemExit, match="name the table: --table, --stack, or TABLE_NAME"):
        table_name(parser().parse_args(["s3://b/k"]), session)
