"""handler.ingest, called directly: the Result of every path (outcome and the object's uri), the metadata
each item takes from the HEAD or the GET, the size limit's edge, and the races a conditional write loses."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from handler import ingest, objects, runtime  # noqa: F401
from handler.errors import TransientError
from handler.events import Action, ObjectEvent
from handler.ingest import Outcome, Result
from layer import Limits
from layer.settings import EngineSettings
from tests.handler.helpers import BUCKET

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(rt: runtime.Runtime, key: str, *, seq: str = "0A", action: Action = Action.CREATED, **kw: Any) -> ObjectEvent:
    return ObjectEvent(action=action, bucket=BUCKET, key=key, event_time=T0, event_name="ObjectCreated:Put",
                       sequencer=seq, **kw)  # fmt: skip


def put(rt: runtime.Runtime, key: str, data: bytes, **extra: Any) -> dict[str, Any]:
    resp = rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data, **extra)
    return {"etag": resp["ETag"].strip('"'), "version_id": resp.get("VersionId"), "size": len(data)}


def stored(rt: runtime.Runtime, key: str) -> dict[str, Any] | None:
    got = rt.sink.get(f"s3://{BUCKET}/{key}")
    return None if got is None else dict(got.attributes)


def with_max_bytes(rt: runtime.Runtime, max_bytes: int) -> None:
    rt.settings = dataclasses.replace(rt.settings, engine=EngineSettings(limits=Limits(max_bytes=max_bytes)))


def test_every_outcome_names_its_object(rt, photo) -> None:
    uri = f"s3://{BUCKET}/k.jpg"
    meta = put(rt, "k.jpg", photo)
    assert ingest.handle(event(rt, "k.jpg", seq="0B", **meta), rt) == Result(Outcome.EMBEDDED, uri)
    assert ingest.handle(event(rt, "k.jpg", seq="0B", **meta), rt) == Result(Outcome.DUPLICATE, uri)
    assert ingest.handle(event(rt, "k.jpg", seq="0A", **meta), rt) == Result(Outcome.STALE, uri)
    assert ingest.handle(event(rt, "nope.jpg", seq="0B"), rt) == Result(Outcome.GONE, f"s3://{BUCKET}/nope.jpg")
    assert ingest.handle(event(rt, "k.jpg", seq="0C", etag="0" * 32, size=3), rt) == Result(Outcome.CHANGED, uri)
    put(rt, "bad.bin", b"not an image")
    assert ingest.handle(event(rt, "bad.bin", seq="0B"), rt) == Result(
        Outcome.FAILED, f"s3://{BUCKET}/bad.bin", "not_an_image"
    )
    assert ingest.handle(event(rt, "k.jpg", seq="0D", action=Action.REMOVED), rt) == Result(Outcome.DELETED, uri)
    with_max_bytes(rt, 100)  # an oversized event for an object deleted before its HEAD
    gone = f"s3://{BUCKET}/deleted.jpg"
    assert ingest.handle(event(rt, "deleted.jpg", seq="0B", size=101), rt) == Result(Outcome.GONE, gone)


def test_an_object_deleted_while_it_was_embedded_leaves_no_item(rt, photo, monkeypatch) -> None:
    meta = put(rt, "brief.jpg", photo)
    embed_one = rt.engine.embed_one

    def delete_then_embed(data: bytes) -> Any:
        rt.s3.delete_object(Bucket=BUCKET, Key="brief.jpg")  # its delete event ran before our write
        return embed_one(data)

    monkeypatch.setattr(rt.engine, "embed_one", delete_then_embed)
    assert ingest.handle(event(rt, "brief.jpg", **meta), rt) == Result(Outcome.GONE, f"s3://{BUCKET}/brief.jpg")
    assert stored(rt, "brief.jpg") is None


def test_the_size_limit_is_inclusive(rt, photo) -> None:
    with_max_bytes(rt, len(photo))
    assert ingest.handle(event(rt, "exact.jpg", **put(rt, "exact.jpg", photo)), rt).outcome is Outcome.EMBEDDED
    with_max_bytes(rt, len(photo) - 1)
    got = ingest.handle(event(rt, "over.jpg", **put(rt, "over.jpg", photo)), rt)
    assert (got.outcome, got.code) == (Outcome.FAILED, "image_too_large")


def test_an_oversized_object_is_recorded_with_its_head_metadata(rt, photo) -> None:
    rt.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    with_max_bytes(rt, 100)
    first = put(rt, "big.jpg", photo, ContentType="image/jpeg")
    put(rt, "big.jpg", photo + b"\0", ContentType="image/png")  # a newer version: the event names the first
    ev = event(rt, "big.jpg", size=first["size"], version_id=first["version_id"])  # no ETag in this event
    assert ingest.handle(ev, rt).outcome is Outcome.FAILED
    item = stored(rt, "big.jpg")
    assert item is not None and item["error_code"] == "image_too_large"
    assert (item["size"], item["content_type"]) == (len(photo), "image/jpeg")  # the first version's, from HEAD
    assert (item["etag"], item["version_id"]) == (first["etag"], first["version_id"])


def test_an_oversized_object_takes_what_the_event_lacks_from_the_head(rt, photo) -> None:
    """An event with neither ETag nor version pins nothing: the failure record describes the object the
    HEAD saw (its size, ETag and version), not the size the event claimed for an earlier one."""
    rt.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    with_max_bytes(rt, 100)
    earlier = put(rt, "grown.jpg", photo + bytes(1000))
    current = put(rt, "grown.jpg", photo)
    assert ingest.handle(event(rt, "grown.jpg", size=earlier["size"]), rt).code == "image_too_large"
    item = stored(rt, "grown.jpg")
    assert item is not None
    assert (item["size"], item["etag"], item["version_id"]) == (len(photo), current["etag"], current["version_id"])


def test_an_object_refused_by_its_get_is_recorded_under_the_events_identity(rt, photo) -> None:
    """No size in the event: the GET's Content-Length refuses the object. The failure record carries the
    event's ETag and version, so the same event redelivered is a duplicate and is not downloaded again."""
    rt.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    with_max_bytes(rt, 100)
    meta = put(rt, "nosize.jpg", photo)
    ev = event(rt, "nosize.jpg", etag=meta["etag"], version_id=meta["version_id"])
    assert ingest.handle(ev, rt) == Result(Outcome.FAILED, f"s3://{BUCKET}/nosize.jpg", "image_too_large")
    item = stored(rt, "nosize.jpg")
    assert item is not None and (item["etag"], item["version_id"]) == (meta["etag"], meta["version_id"])
    assert ingest.handle(ev, rt).outcome is Outcome.DUPLICATE


def test_an_oversized_object_replaced_since_its_event_is_left_to_the_newer_event(rt, photo) -> None:
    with_max_bytes(rt, 100)
    first = put(rt, "swap.jpg", photo)
    put(rt, "swap.jpg", photo + b"\0")
    assert ingest.handle(event(rt, "swap.jpg", **first), rt) == Result(Outcome.CHANGED, f"s3://{BUCKET}/swap.jpg")
    assert stored(rt, "swap.jpg") is None


def test_the_item_takes_what_the_event_lacks_from_the_get(rt, photo) -> None:
    rt.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    meta = put(rt, "v.jpg", photo, ContentType="image/jpeg")
    assert ingest.handle(event(rt, "v.jpg"), rt).outcome is Outcome.EMBEDDED  # an event with no ETag or version
    item = stored(rt, "v.jpg")
    assert item is not None
    assert (item["etag"], item["version_id"], item["size"]) == (meta["etag"], meta["version_id"], len(photo))


def test_a_write_that_loses_the_race_is_stale(rt, photo, monkeypatch) -> None:
    """A newer event wrote between our read of the item and our conditional put: nothing is overwritten."""
    meta = put(rt, "race.jpg", photo)
    monkeypatch.setattr(rt.sink, "put_embedding", lambda *a: False)
    assert ingest.handle(event(rt, "race.jpg", **meta), rt) == Result(Outcome.STALE, f"s3://{BUCKET}/race.jpg")
    put(rt, "race.bin", b"junk")
    monkeypatch.setattr(rt.sink, "put_failure", lambda *a: False)
    assert ingest.handle(event(rt, "race.bin"), rt) == Result(Outcome.STALE, f"s3://{BUCKET}/race.bin")


@pytest.mark.parametrize("operation", ["head_object", "get_object"])
def test_access_denied_is_retried_with_its_reason(rt, photo, monkeypatch, operation) -> None:
    from botocore.exceptions import ClientError

    def denied(**kw: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, operation)

    with_max_bytes(rt, 100 if operation == "head_object" else 10_000_000)
    meta = put(rt, "locked.jpg", photo)
    monkeypatch.setattr(rt.s3, operation, denied)
    with pytest.raises(TransientError, match=r"s3://photos/locked\.jpg: AccessDenied"):
        ingest.handle(event(rt, "locked.jpg", **meta), rt)


def test_the_api_store_is_ordered_by_last_modified(rt, photo) -> None:
    rt.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put(rt, "api.jpg", photo)
    blob = __import__("handler.objects", fromlist=["read_object"]).read_object(
        rt.s3, BUCKET, "api.jpg", max_bytes=10**7
    )
    emb = rt.engine.embed_one(photo)
    assert ingest.store(rt, blob, emb) is Outcome.EMBEDDED
    item = stored(rt, "api.jpg")
    assert item is not None and item["order_key"].startswith("0") and "sequencer" not in item
    assert (item["etag"], item["size"], item["version_id"]) == (blob.etag, blob.size, blob.version_id)
    assert blob.version_id  # the bucket is versioned: the item names the version it embedded
