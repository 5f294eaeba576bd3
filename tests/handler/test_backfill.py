"""The S3 function's backfill entry (a Distributed Map batch of listed objects): the batch shapes, the same
ingest path, and its ordering against live S3 events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from handler import runtime
from handler import s3 as s3_function
from handler.errors import MalformedEvent, ModelMismatch
from handler.events import Action, classify, from_backfill_batch
from tests.handler.helpers import BUCKET, FakeEngine, s3_notification


def listed(rt: runtime.Runtime, key: str, data: bytes) -> dict[str, Any]:
    """The item Step Functions' S3 listing reader yields for an object."""
    rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    head = rt.s3.head_object(Bucket=BUCKET, Key=key)
    return {"Etag": head["ETag"], "Key": key, "LastModified": int(head["LastModified"].timestamp()),
            "Size": head["ContentLength"], "StorageClass": "STANDARD"}  # fmt: skip


def batch(*items: dict[str, Any], model_id: str | None = None, encoded: bool = False) -> dict[str, Any]:
    return {"Items": list(items), "BatchInput": {"bucket": BUCKET, "model_id": model_id, "keys_url_encoded": encoded}}


def test_a_listing_batch_becomes_created_events_ordered_by_last_modified() -> None:
    payload = batch(
        {"Etag": '"abc"', "Key": "a b/c.jpg", "LastModified": 1764374400, "Size": 10, "StorageClass": "STANDARD"},
        {"Bucket": "other", "Key": "x%2By.jpg", "LastModifiedDate": "2025-11-29T00:00:00Z", "Size": "7"},
    )
    assert classify(payload) == "backfill"
    a, b = from_backfill_batch(payload).events
    assert (a.action, a.bucket, a.key, a.etag, a.size, a.source) == (
        Action.CREATED,
        BUCKET,
        "a b/c.jpg",
        "abc",
        10,
        "backfill",
    )
    assert a.event_time == datetime(2025, 11, 29, tzinfo=UTC) and a.sequencer is None
    assert a.order_key < "1"  # a time key: any S3 event's sequencer key sorts after it
    assert (b.bucket, b.key, b.size, b.etag) == ("other", "x%2By.jpg", 7, None)  # keys as listed
    inventory = from_backfill_batch(batch({"Bucket": BUCKET, "Key": "x%2By+z.jpg"}, encoded=True))
    assert inventory.events[0].key == "x+y z.jpg"  # S3 Inventory URL-encodes its keys


@pytest.mark.parametrize(
    "items",
    [[{"Key": ""}], [{"Etag": "x"}], [{"Key": "k", "Size": -1}], [{"Key": "k", "LastModified": "yesterday"}], ["k"]],
)
def test_a_malformed_batch_is_one_error(items: list[Any]) -> None:
    with pytest.raises(MalformedEvent):
        from_backfill_batch(batch(*items))


def test_the_batch_goes_through_ingest_and_reports_each_object(rt, context, photo, photo2) -> None:
    a, b = listed(rt, "a.jpg", photo), listed(rt, "b.jpg", photo2)
    bad = listed(rt, "bad.jpg", b"not an image")
    out = s3_function.lambda_handler(batch(a, b, bad), context)
    assert out["counts"] == {"embedded": 2, "failed": 1}
    assert out["results"] == [
        {"outcome": "embedded", "uri": f"s3://{BUCKET}/a.jpg", "code": None},
        {"outcome": "embedded", "uri": f"s3://{BUCKET}/b.jpg", "code": None},
        {"outcome": "failed", "uri": f"s3://{BUCKET}/bad.jpg", "code": "not_an_image"},
    ]
    again = s3_function.lambda_handler(batch(a, b, bad), context)  # resumable: a re-run only reads
    assert again["counts"] == {"duplicate": 3}
    assert isinstance(rt.engine, FakeEngine) and rt.engine.calls == 3  # the first run's three, none since


def test_a_live_upload_is_never_overwritten_by_the_backfills_older_read(rt, context, photo, photo2) -> None:
    old = listed(rt, "k.jpg", photo)  # listed before the user replaced the object
    live = s3_notification(BUCKET, "k.jpg", sequencer="0A", etag=None)
    rt.s3.put_object(Bucket=BUCKET, Key="k.jpg", Body=photo2)
    assert s3_function.lambda_handler(live, context) == {"outcomes": ["embedded"]}
    out = s3_function.lambda_handler(batch(old), context)
    assert out["counts"] == {"stale": 1}
    stored = rt.sink.get(f"s3://{BUCKET}/k.jpg")
    assert stored is not None and stored.attributes["sequencer"] == "0A"


def test_a_new_model_re_embeds_the_same_bytes_in_place(rt, context, photo) -> None:
    """An item a live event wrote (sequencer key) for the same bytes is re-embedded by a new model, keeping
    its place in the event order; under the old model it is a duplicate."""
    listed_item = listed(rt, "k.jpg", photo)
    live = s3_notification(BUCKET, "k.jpg", sequencer="0A", etag=listed_item["Etag"].strip('"'))
    assert s3_function.lambda_handler(live, context) == {"outcomes": ["embedded"]}
    before = rt.sink.get(f"s3://{BUCKET}/k.jpg")
    assert before is not None
    assert s3_function.lambda_handler(batch(listed_item), context)["counts"] == {"duplicate": 1}

    class NewModel(FakeEngine):
        model_id = "fake/clip-test-v2"

    rt.engine = NewModel(rt.settings.limits)
    out = s3_function.lambda_handler(batch(listed_item, model_id="fake/clip-test-v2"), context)
    assert out["counts"] == {"embedded": 1}
    after = rt.sink.get(f"s3://{BUCKET}/k.jpg")
    assert after is not None and after.attributes["model"] == "fake/clip-test-v2"
    assert after.order_key == before.order_key  # a late older event still cannot overwrite it
    late = s3_notification(BUCKET, "k.jpg", sequencer="09", etag=listed_item["Etag"].strip('"'))
    assert s3_function.lambda_handler(late, context) == {"outcomes": ["stale"]}


def test_a_run_for_another_model_refuses_the_batch(rt, context, photo) -> None:
    item = listed(rt, "k.jpg", photo)
    with pytest.raises(ModelMismatch, match="fake/clip-test"):
        s3_function.lambda_handler(batch(item, model_id="openai/clip-vit-large"), context)
    assert rt.sink.get(f"s3://{BUCKET}/k.jpg") is None


def test_a_transient_failure_raises_for_the_state_machines_retry(rt, context, photo, monkeypatch) -> None:
    ok, flaky = listed(rt, "ok.jpg", photo), listed(rt, "flaky.jpg", photo)
    real_get = rt.s3.get_object

    def get_object(**kw: Any) -> Any:
        if kw["Key"] == "flaky.jpg":
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        return real_get(**kw)

    monkeypatch.setattr(rt.s3, "get_object", get_object)
    with pytest.raises(Exception, match=r"1 record\(s\) to retry: s3://photos/flaky.jpg") as info:
        s3_function.lambda_handler(batch(ok, flaky), context)
    assert type(info.value).__name__ == "TransientError"  # the errorType the Retry rule names
    assert rt.sink.get(f"s3://{BUCKET}/ok.jpg") is not None
