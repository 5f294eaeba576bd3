"""Every event shape normalises to the same ObjectEvent (S3 notifications, EventBridge, SQS and SNS envelopes, the
backfill's batches of listed objects); keys are decoded once; order keys sort in time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from handler import events
from handler.errors import MalformedEvent
from handler.events import Action, classify, from_backfill_batch
from tests.handler.helpers import BUCKET, load_event
from tests.handler.helpers import backfill_batch as batch


def s3_put(key: str = "test/key", **obj: object) -> dict:
    ev = load_event("s3-put.json")
    ev["Records"][0]["s3"]["object"]["key"] = key
    ev["Records"][0]["s3"]["object"].update(obj)
    return ev


def test_sam_s3_put_sample() -> None:
    ev = load_event("s3-put.json")
    assert events.classify(ev) == "s3"
    [e] = events.from_payload(ev)
    assert (e.action, e.bucket, e.key, e.size) == (Action.CREATED, "example-bucket", "test/key", 1024)
    assert e.etag == "0123456789abcdef0123456789abcdef"
    assert e.sequencer == "0A1B2C3D4E5F678901"
    assert e.event_time == datetime(1970, 1, 1, tzinfo=UTC)
    assert e.uri == "s3://example-bucket/test/key"
    assert e.source == "s3"


def test_sam_s3_delete_sample() -> None:
    [e] = events.from_payload(load_event("s3-delete.json"))
    assert (e.action, e.key, e.size, e.etag) == (Action.REMOVED, "test/key", None, None)


def test_sam_sqs_sample_carrying_s3_notification() -> None:
    sqs = load_event("sqs-receive-message.json")
    assert events.classify(sqs) == "sqs"
    body = json.dumps(load_event("s3-put.json"))
    [e] = events.from_message_body(body)
    assert e.key == "test/key"


def test_sam_sqs_sample_body_is_not_an_s3_event() -> None:
    body = load_event("sqs-receive-message.json")["Records"][0]["body"]  # "Hello from SQS!"
    with pytest.raises(MalformedEvent):
        events.from_message_body(body)
    with pytest.raises(MalformedEvent):
        events.from_message_body(json.dumps({"hello": "world"}))


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("my+holiday+photo.jpg", "my holiday photo.jpg"),
        ("a/b/c/d.jpg", "a/b/c/d.jpg"),
        ("a%2Fb%2Fc.jpg", "a/b/c.jpg"),  # moto encodes slashes; real S3 does not
        ("caf%C3%A9+%E5%86%99%E7%9C%9F.jpg", "café 写真.jpg"),
        ("1%2B1%3D2.png", "1+1=2.png"),  # a literal + arrives as %2B
        ("100%25.png", "100%.png"),
    ],
)
def test_keys_are_url_decoded(encoded: str, decoded: str) -> None:
    [e] = events.from_payload(s3_put(encoded))
    assert e.key == decoded
    assert e.uri == f"s3://example-bucket/{decoded}"


def test_s3_test_event_is_ignored_direct_and_via_sqs() -> None:
    test_event = load_event("s3-test-event.json")
    assert events.classify(test_event) == "test"
    assert events.from_payload(test_event) == []
    assert events.from_message_body(json.dumps(test_event)) == []


def test_eventbridge_created_and_deleted() -> None:
    created = load_event("eventbridge-object-created.json")
    assert events.classify(created) == "eventbridge"
    [c] = events.from_payload(created)
    assert (c.action, c.bucket, c.key, c.size) == (Action.CREATED, "example-bucket", "example-key", 5)
    assert (c.version_id, c.sequencer, c.source) == (
        "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        "00617F08299329D189",
        "eventbridge",
    )
    assert c.event_name == "EventBridge:Object Created"
    assert c.etag == created["detail"]["object"]["etag"] and c.etag
    [d] = events.from_payload(load_event("eventbridge-object-deleted.json"))
    assert d.action is Action.REMOVED
    assert d.order_key > c.order_key


def test_eventbridge_key_decoding_and_other_detail_types() -> None:
    created = load_event("eventbridge-object-created.json")
    created["detail"]["object"]["key"] = "dir/my+photo%C3%A9.jpg"
    assert events.from_payload(created)[0].key == "dir/my photoé.jpg"
    created["detail-type"] = "Object Restore Completed"
    assert events.from_payload(created) == []
    # EventBridge → SQS target: the message body is the EventBridge event
    assert events.from_message_body(json.dumps(load_event("eventbridge-object-deleted.json")))[0].action is (
        Action.REMOVED
    )


def test_sns_envelope_through_sqs() -> None:
    envelope = {"Type": "Notification", "Message": json.dumps(s3_put("x+y.jpg"))}
    assert events.from_message_body(json.dumps(envelope))[0].key == "x y.jpg"


def test_non_object_events_are_dropped() -> None:
    ev = s3_put()
    ev["Records"][0]["eventName"] = "ObjectRestore:Completed"
    assert events.from_payload(ev) == []


def test_missing_sequencer_falls_back_to_event_time() -> None:
    ev = s3_put()
    del ev["Records"][0]["s3"]["object"]["sequencer"]
    ev["Records"][0]["eventTime"] = "2024-05-01T12:00:00.123Z"
    [e] = events.from_payload(ev)
    assert e.sequencer is None
    assert e.order_key == "020240501T120000.123000"


def test_unknown_shapes_are_malformed() -> None:
    for payload in ({}, {"Records": []}, {"detail-type": "Object Created", "source": "aws.ec2"}, [1]):
        with pytest.raises(MalformedEvent):
            events.from_payload(payload)


@pytest.mark.parametrize("body", ["5", "null", "1.5", '"a Message"', "true"])
def test_sqs_bodies_that_are_json_but_not_objects_are_malformed(body: str) -> None:
    with pytest.raises(MalformedEvent, match="unrecognised event shape"):
        events.from_message_body(body)


def test_only_an_sns_notification_envelope_is_unwrapped() -> None:
    inner = json.dumps(s3_put("x.jpg"))
    for envelope in ({"Message": inner}, {"Type": "SubscriptionConfirmation", "Message": inner}):
        with pytest.raises(MalformedEvent, match="unrecognised event shape"):
            events.from_payload(envelope)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bucket", "my bucket"),
        ("bucket", "b" * 300),
        ("bucket", "bücket"),
        ("bucket", None),
        ("key", ""),
        ("key", "k" * 1025),
        ("size", -1),
        ("size", "lots"),
        ("size", [1]),
        ("size", 2.5),  # S3 sends an integer: a float or a bool is not one
        ("size", True),
        ("sequencer", "not-hex!"),
        ("sequencer", "0" * 65),
        ("eventTime", "yesterday"),
        ("eventTime", 12),
        ("eTag", "\ud800"),  # found by the event fuzzer: a lone surrogate reached botocore's headers
        ("eTag", "ab\ncd"),
        ("versionId", "v\u00e9"),
    ],
)
def test_malformed_s3_notifications_raise_malformed_event(field: str, value: object) -> None:
    ev = s3_put("ok/key.jpg", size=10, sequencer="0055AED6DCD90281E5")
    rec = ev["Records"][0]
    if field == "bucket":
        rec["s3"]["bucket"]["name"] = value
    elif field == "eventTime":
        rec["eventTime"] = value
    else:
        rec["s3"]["object"][field] = value
    with pytest.raises(MalformedEvent):
        events.from_payload(ev)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(detail="not an object"),
        lambda e: e["detail"].update(object=None),
        lambda e: e["detail"].update(bucket={"name": "bad bucket"}),
        lambda e: e["detail"]["object"].update(size="big"),
        lambda e: e.update(time=5),
    ],
)
def test_malformed_eventbridge_events_raise_malformed_event(mutate) -> None:  # type: ignore[no-untyped-def]
    ev = load_event("eventbridge-object-created.json")
    mutate(ev)
    with pytest.raises(MalformedEvent):
        events.from_payload(ev)


def test_classify_names_every_shape_and_nothing_else() -> None:
    assert events.classify([]) == "unknown" and events.classify("x") == "unknown"
    assert events.classify({"Records": [{"EventSource": "aws:sqs"}]}) == "sqs"  # SNS-style capitalised key
    assert events.classify({"Records": [{"eventSource": "aws:sns"}]}) == "unknown"
    assert events.classify({"Records": [{"EventSource": "aws:s3"}, {"eventSource": "aws:sqs"}]}) == "s3"
    assert events.classify({"detail-type": "Object Created", "source": "aws.ec2"}) == "unknown"
    assert events.classify({"source": "aws.s3"}) == "unknown"
    assert events.classify({"Event": "s3:TestEvent"}) == "test" and events.classify({}) == "unknown"


def test_event_times_are_utc() -> None:
    assert events.parse_time("2024-05-01T12:00:00.123Z") == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert events.parse_time("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)  # naive: UTC
    assert events.parse_time("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    now = events.parse_time(None)
    assert now.tzinfo is not None and abs((datetime.now(UTC) - now).total_seconds()) < 5


def test_other_records_do_not_hide_the_object_records_after_them() -> None:
    ev = s3_put()
    restore = json.loads(json.dumps(ev["Records"][0]))
    restore["eventName"] = "ObjectRestore:Completed"
    ev["Records"].insert(0, restore)
    [one] = events.from_payload(ev)
    assert one.event_name == ev["Records"][1]["eventName"] and one.action is Action.CREATED


def test_etags_and_version_ids_up_to_1024_characters() -> None:
    ok = events.ObjectEvent(Action.CREATED, "b", "k", datetime.now(UTC), "n", etag="e" * 1024, version_id="v" * 1024)
    assert len(ok.etag or "") == 1024
    with pytest.raises(MalformedEvent, match="invalid etag"):
        events.ObjectEvent(Action.CREATED, "b", "k", datetime.now(UTC), "n", etag="e" * 1025)
    with pytest.raises(MalformedEvent, match="bucket"):
        events.ObjectEvent(Action.CREATED, "", "k", datetime.now(UTC), "n")


def test_keys_up_to_s3s_1024_utf8_bytes() -> None:
    t = datetime.now(UTC)
    assert events.ObjectEvent(Action.CREATED, "b", "é" * 512, t, "n").key == "é" * 512  # 1024 bytes, 512 characters
    with pytest.raises(MalformedEvent, match="1025 bytes"):
        events.ObjectEvent(Action.CREATED, "b", "é" * 512 + "k", t, "n")


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
