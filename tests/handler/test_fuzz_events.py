"""Event fuzzing: malformed SQS, S3, EventBridge and API Gateway v2 events against both functions (moto
in-process, the fake engine over the real decoder).

- SQS batches never raise: every message is processed or reported in ``batchItemFailures`` (SQS retries it,
  then the DLQ keeps it), never dropped.
- Direct S3 / EventBridge invocations return, or raise only the documented retry path (``MalformedEvent``,
  ``TransientError``).
- Nothing is written for an event that names no real object: every item belongs to an object in the bucket.
- The API answers every request below 500, with a documented code and its own status.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler import api, runtime
from handler import s3 as s3_function
from handler.errors import API_ERRORS, MalformedEvent, TransientError
from tests.handler.helpers import BUCKET, http_event, load_event, s3_notification

pytestmark = pytest.mark.slow
REAL_KEYS = ("real/photo.jpg", "real/notes.txt")
FUZZ = settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
odd_strings = st.sampled_from(
    ["", " ", "a" * 5000, "\ud800", "../../etc/passwd", "s3://x/y", "%ZZ", "café/写真+1.jpg", "\x00", "x" * 300]
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON-like value (where a mutation may land)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """The template with a few values replaced (by odd strings or random JSON) or deleted."""
    value = copy.deepcopy(template)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(_paths(value)))
        if not path:
            value = draw(json_values)
            break
        parent: Any = value
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(odd_strings | json_values)
    return value


def _notification(key: str) -> dict[str, Any]:
    return s3_notification(BUCKET, key, size=10, sequencer="0055AED6DCD90281E5")


def _sqs(bodies: list[Any]) -> dict[str, Any]:
    template = load_event("sqs-receive-message.json")["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        rec = copy.deepcopy(template)
        rec["messageId"] = f"m-{i}"
        rec["body"] = body if isinstance(body, str) else json.dumps(body)
        records.append(rec)
    return {"Records": records}


bodies = st.one_of(
    mutated(_notification(REAL_KEYS[0])),
    mutated(_notification(REAL_KEYS[1])),
    mutated(_notification("never/there.jpg")),
    mutated(load_event("eventbridge-object-created.json")),
    odd_strings,
    st.text(max_size=50),
)


@pytest.fixture
def world(rt, photo) -> runtime.Runtime:  # type: ignore[no-untyped-def]
    rt.s3.put_object(Bucket=BUCKET, Key=REAL_KEYS[0], Body=photo)
    rt.s3.put_object(Bucket=BUCKET, Key=REAL_KEYS[1], Body=b"not an image")
    return rt


def _items_belong_to_real_objects(rt: runtime.Runtime) -> None:
    existing = {f"s3://{BUCKET}/{k}" for k in REAL_KEYS}
    items = rt.sink.client.scan(TableName=rt.settings.table_name)["Items"]
    assert {i["pk"]["S"] for i in items} <= existing


def assert_documented(response: dict[str, Any]) -> None:
    """Never a 5xx; every error code, of the request or of one image, with the status API_ERRORS gives it."""
    status, body = response["statusCode"], json.loads(response["body"])
    assert status < 500, response
    if status >= 400:
        assert API_ERRORS.get(body["error"]["code"]) == status, body
    for item in body.get("results", []):
        if "error" in item:
            assert API_ERRORS.get(item["error"]["code"]) == item["status"], item


def test_sqs_batches_never_raise_and_lose_no_message(world, context) -> None:  # type: ignore[no-untyped-def]
    @FUZZ
    @given(st.lists(bodies, min_size=1, max_size=5))
    def run(batch: list[Any]) -> None:
        event = _sqs(batch)
        response = s3_function.lambda_handler(event, context)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        assert failed <= {r["messageId"] for r in event["Records"]}

    run()
    _items_belong_to_real_objects(world)


def test_direct_events_return_or_raise_the_retry_path(world, context) -> None:  # type: ignore[no-untyped-def]
    @FUZZ
    @given(
        st.one_of(
            mutated(_notification(REAL_KEYS[0])),
            mutated(_notification("never/there.jpg")),
            mutated(load_event("eventbridge-object-created.json")),
            mutated(load_event("eventbridge-object-deleted.json")),
        )
    )
    def run(event: Any) -> None:
        try:
            result = s3_function.lambda_handler(event, context)
        except (MalformedEvent, TransientError):
            return
        assert isinstance(result, dict)

    run()
    _items_belong_to_real_objects(world)


def test_api_answers_every_request_below_500(world, context) -> None:  # type: ignore[no-untyped-def]
    base = http_event("POST", "/embed", json.dumps({"images": [{"s3": f"s3://{BUCKET}/{REAL_KEYS[0]}"}]}),
                      "application/json")  # fmt: skip

    @FUZZ
    @given(mutated(base))
    def run(event: Any) -> None:
        if not isinstance(event, dict):
            return  # API Gateway only ever sends an object
        assert_documented(api.lambda_handler(event, context))

    run()
    _items_belong_to_real_objects(world)


def test_api_bodies_inside_well_formed_events(world, context, photo) -> None:  # type: ignore[no-untyped-def]
    """The envelope right, the request wrong: JSON of the wrong shape, bad base64, odd media types."""
    import base64

    good = {"images": [{"s3": f"s3://{BUCKET}/{REAL_KEYS[0]}"}, {"data": base64.b64encode(photo).decode()}]}
    payloads = st.one_of(
        mutated({**good, "store": True}).map(json.dumps),
        st.binary(max_size=300),
        odd_strings,
        st.just(photo),
    )
    media = st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "image/jpeg", "image/png", "text/plain", "", None]
    )

    @FUZZ
    @given(payloads, media)
    def run(payload: bytes | str, content_type: str | None) -> None:
        assert_documented(api.lambda_handler(http_event("POST", "/embed", payload, content_type), context))

    run()
    _items_belong_to_real_objects(world)
