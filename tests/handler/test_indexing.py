"""Batched index writes (handler.indexing, handler.ingest.Ingest): an invocation's vectors in as few
PutVectors / DeleteVectors as S3 Vectors allows, a failed request failing exactly its records, throttling
retried by the client and counted, and the lean item (the vector in the index alone) kept in line by the
same read-back rule. moto (in process) holds the vectors; faults are injected per request."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from PIL import Image

from handler import indexing, ingest, item, runtime, s3
from handler.ingest import Outcome
from handler.item import ObjectMeta
from handler.sinks.dynamodb import DynamoDBSink
from layer import Embedding
from tests.handler import test_vector_index as shared
from tests.handler.helpers import BUCKET, TABLE, FakeEngine, s3_notification, sqs_event
from tests.handler.test_vector_index import assert_follows, emf_metrics, event, indexed, indexed_vector, pk, upload

# The index fixtures of the index's own tests: moto's vectors, the fault injector, the runtime with the index.
vectors, faults, irt = shared.vectors, shared.faults, shared.irt


def jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256)).save(buf, "JPEG")
    return buf.getvalue()


def bodies(rt: runtime.Runtime, n: int, prefix: str = "p") -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        key = f"{prefix}/{i}.jpg"
        m = upload(rt, key, jpeg(i))
        out.append(s3_notification(BUCKET, key, etag=m["etag"], size=m["size"], sequencer="0A"))
    return out


class RawBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def throttle(client: Any, operation: str, times: int) -> list[int]:
    """The next ``times`` HTTP attempts of ``operation`` answered 429 TooManyRequestsException: injected at
    send time, so the client's own retry mode sees them (a before-call fault would bypass it)."""
    answered: list[int] = []

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        if len(answered) >= times:
            return None
        answered.append(429)
        body = json.dumps({"message": "Rate exceeded"}).encode()
        headers = {"x-amzn-ErrorType": "TooManyRequestsException", "Content-Type": "application/json"}
        return AWSResponse(request.url, 429, headers, RawBody(body))

    client.meta.events.register(f"before-send.s3vectors.{operation}", before_send)
    return answered


@pytest.fixture
def ddb_calls(irt: runtime.Runtime) -> Iterator[dict[str, int]]:
    calls: dict[str, int] = {}

    def hook(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1

    irt.sink.client.meta.events.register("before-call.dynamodb", hook)  # type: ignore[attr-defined]
    yield calls
    irt.sink.client.meta.events.unregister("before-call.dynamodb", hook)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ batching
def test_an_sqs_batch_writes_its_vectors_in_one_request(irt, vectors, faults, context, ddb_calls) -> None:
    events = bodies(irt, 7)
    assert s3.lambda_handler(sqs_event(*events), context) == {"batchItemFailures": []}
    assert faults.calls["PutVectors"] == 1 and ddb_calls["BatchGetItem"] == 1
    assert "GetItem" in ddb_calls and "DeleteVectors" not in faults.calls
    for i in range(7):
        assert_follows(irt, vectors, f"p/{i}.jpg")


def test_a_failed_request_fails_exactly_its_records(irt, vectors, faults, context, monkeypatch) -> None:
    """Requests of 2 vectors: the second of three fails, so messages 2 and 3 return to the queue and the
    others do not; their redrive finds the items (no second item, no re-embedding) and fills the index."""
    monkeypatch.setattr(indexing, "MAX_WRITE_BATCH", 2)
    events = bodies(irt, 5)
    calls = []
    put_many = irt.index.put_many

    def second_fails(batch: list[tuple[ObjectMeta, Embedding]]) -> None:
        calls.append([meta.key for meta, _ in batch])
        if len(calls) == 2:
            faults.fail("PutVectors")
        put_many(batch)

    monkeypatch.setattr(irt.index, "put_many", second_fails)
    out = s3.lambda_handler(sqs_event(*events), context)
    assert calls == [["p/0.jpg", "p/1.jpg"], ["p/2.jpg", "p/3.jpg"], ["p/4.jpg"]]
    assert out == {"batchItemFailures": [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]}
    assert [indexed(vectors, f"p/{i}.jpg") is not None for i in range(5)] == [True, True, False, False, True]
    embedded = irt.engine.calls
    assert s3.lambda_handler(sqs_event(events[2], events[3]), context) == {"batchItemFailures": []}
    assert irt.engine.calls == embedded  # duplicates: the items were written once
    for i in range(5):
        assert_follows(irt, vectors, f"p/{i}.jpg")


def test_puts_and_deletes_of_a_batch_go_in_one_request_each(irt, vectors, faults, context) -> None:
    old = bodies(irt, 3, "old")
    assert s3.lambda_handler(sqs_event(*old), context) == {"batchItemFailures": []}
    faults.calls.clear()
    removed = [s3_notification(BUCKET, f"old/{i}.jpg", action="ObjectRemoved:Delete", sequencer="0B")
               for i in range(3)]  # fmt: skip
    for i in range(3):
        irt.s3.delete_object(Bucket=BUCKET, Key=f"old/{i}.jpg")
    assert s3.lambda_handler(sqs_event(*removed, *bodies(irt, 2, "new")), context) == {"batchItemFailures": []}
    assert (faults.calls["PutVectors"], faults.calls["DeleteVectors"]) == (1, 1)
    assert [indexed(vectors, f"old/{i}.jpg") for i in range(3)] == [None] * 3
    assert all(indexed(vectors, f"new/{i}.jpg") is not None for i in range(2))


def test_a_put_then_a_delete_of_one_object_in_a_batch_sends_only_the_delete(irt, vectors, faults, context) -> None:
    [created] = bodies(irt, 1)
    irt.s3.delete_object(Bucket=BUCKET, Key="p/0.jpg")
    removed = s3_notification(BUCKET, "p/0.jpg", action="ObjectRemoved:Delete", sequencer="0B")
    assert s3.lambda_handler(sqs_event(created, removed), context) == {"batchItemFailures": []}
    assert ("PutVectors" not in faults.calls, faults.calls["DeleteVectors"]) == (True, 1)
    assert irt.sink.get(pk("p/0.jpg")) is None and indexed(vectors, "p/0.jpg") is None


def test_the_delete_check_overlaps_and_takes_back_a_deleted_objects_item(irt, vectors, faults, photo) -> None:
    """The object is deleted after it was read: the HEAD started after the write finds it gone; flush takes
    the item back, and the index never receives its vector."""
    meta = upload(irt, "k.jpg", photo)
    batch = ingest.Ingest(irt)
    fetched = ingest.fetch(event("k.jpg", **meta), irt)
    irt.s3.delete_object(Bucket=BUCKET, Key="k.jpg")
    assert batch.handle(event("k.jpg", **meta), "m", lambda: fetched).outcome is Outcome.EMBEDDED  # for now
    done = batch.flush()
    assert done.results[0].outcome is Outcome.GONE and not done.failed
    assert irt.sink.get(pk("k.jpg")) is None and "PutVectors" not in faults.calls


def test_a_backfill_batch_writes_its_vectors_in_one_request(irt, vectors, faults, context) -> None:
    keys = [f"b/{i}.jpg" for i in range(6)]
    metas = {key: upload(irt, key, jpeg(i)) for i, key in enumerate(keys)}
    items = [{"Etag": f'"{m["etag"]}"', "Key": key, "LastModified": 1767225600, "Size": m["size"]}
             for key, m in metas.items()]  # fmt: skip
    out = s3.lambda_handler({"Items": items, "BatchInput": {"bucket": BUCKET, "keys_url_encoded": False}}, context)
    assert out["counts"] == {"embedded": 6} and faults.calls["PutVectors"] == 1


# ---------------------------------------------------------------------------------------------- throttling
def test_throttling_is_retried_by_the_client_and_counted(irt, vectors, faults, context, capsys) -> None:
    """Two 429s on the batch's PutVectors: the client's retry mode (adaptive, RETRIES) backs off and
    succeeds; no record fails; every throttled answer is counted (IndexThrottled)."""
    answered = throttle(vectors, "PutVectors", 2)
    events = bodies(irt, 3)
    capsys.readouterr()
    assert s3.lambda_handler(sqs_event(*events), context) == {"batchItemFailures": []}
    assert answered == [429, 429] and faults.calls["PutVectors"] == 1  # one API call, three attempts
    assert sum(emf_metrics(capsys.readouterr().out).get("IndexThrottled", [])) == 2
    for i in range(3):
        assert_follows(irt, vectors, f"p/{i}.jpg")


def test_throttling_beyond_the_retries_fails_the_records_for_sqs_to_retry(irt, vectors, faults, context) -> None:
    faults.fail("PutVectors", code="TooManyRequestsException", status=429)  # the retries, used up
    out = s3.lambda_handler(sqs_event(*bodies(irt, 2)), context)
    assert out == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}
    assert s3.lambda_handler(sqs_event(*bodies(irt, 2)), context) == {"batchItemFailures": []}


# ---------------------------------------------------------------------------------------------- lean item
@pytest.fixture
def lean(irt: runtime.Runtime, aws: dict[str, Any]) -> Iterator[runtime.Runtime]:
    """ITEM_VECTOR=none: the vector lives in the index alone."""
    sink = irt.sink
    irt.sink = DynamoDBSink(aws["ddb"], TABLE, item.NONE)
    yield irt
    irt.sink = sink


def test_a_lean_item_fits_one_write_unit_and_its_vector_is_in_the_index(lean, vectors, photo) -> None:
    meta = upload(lean, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", **meta), lean).outcome is Outcome.EMBEDDED
    stored = lean.sink.get(pk("k.jpg"))
    assert stored is not None and stored.has_embedding and stored.vector is None
    assert item.write_units(dict(stored.attributes)) == 1
    np.testing.assert_array_equal(indexed_vector(vectors, "k.jpg"), FakeEngine.vector_for(photo))
    assert ingest.handle(event("k.jpg", **meta), lean).outcome is Outcome.DUPLICATE


def test_a_race_on_a_lean_item_is_corrected_by_embedding_the_newer_object(lean, vectors, photo, photo2, monkeypatch):
    """Our vector lands after a newer event's lean item and vector: the read back sees the newer item, which
    does not hold its vector, so the index's copy is made again from the object at the item's ETag."""
    old = upload(lean, "k.jpg", photo)
    put_many = lean.index.put_many
    raced: list[str] = []

    def newer_event_first(batch: list[tuple[ObjectMeta, Embedding]]) -> None:
        if not raced:
            raced.append("once")
            new = upload(lean, "k.jpg", photo2)
            assert ingest.handle(event("k.jpg", seq="0B", **new), lean).outcome is Outcome.EMBEDDED
        put_many(batch)

    monkeypatch.setattr(lean.index, "put_many", newer_event_first)
    assert ingest.handle(event("k.jpg", seq="0A", **old), lean).outcome is Outcome.EMBEDDED
    np.testing.assert_array_equal(indexed_vector(vectors, "k.jpg"), FakeEngine.vector_for(photo2))


def test_a_race_on_a_lean_item_whose_object_moved_on_withdraws_the_vector(lean, vectors, photo, photo2, monkeypatch):
    """As above, but the object changed again before the correction could read it: no stale vector stays;
    the object's own (pending) event indexes it."""
    old = upload(lean, "k.jpg", photo)
    put_many = lean.index.put_many
    raced: list[str] = []

    def newer_event_then_another_upload(batch: list[tuple[ObjectMeta, Embedding]]) -> None:
        if not raced:
            raced.append("once")
            new = upload(lean, "k.jpg", photo2)
            assert ingest.handle(event("k.jpg", seq="0B", **new), lean).outcome is Outcome.EMBEDDED
            upload(lean, "k.jpg", jpeg(99))  # its event is still to come
        put_many(batch)

    monkeypatch.setattr(lean.index, "put_many", newer_event_then_another_upload)
    assert ingest.handle(event("k.jpg", seq="0A", **old), lean).outcome is Outcome.EMBEDDED
    assert indexed(vectors, "k.jpg") is None


def test_a_lean_items_lost_vector_is_repaired_by_its_retry(lean, vectors, faults, photo) -> None:
    meta = upload(lean, "k.jpg", photo)
    faults.fail("PutVectors")
    with pytest.raises(Exception, match="PutVectors"):
        ingest.handle(event("k.jpg", **meta), lean)
    assert indexed(vectors, "k.jpg") is None and lean.sink.get(pk("k.jpg")) is not None
    calls = lean.engine.calls
    assert ingest.handle(event("k.jpg", **meta), lean).outcome is Outcome.DUPLICATE
    assert lean.engine.calls == calls + 1  # the vector lived nowhere else: embedded again
    np.testing.assert_array_equal(indexed_vector(vectors, "k.jpg"), FakeEngine.vector_for(photo))


# ---------------------------------------------------------------------------------------------- readers
def test_get_many_reads_past_batch_get_items_limit_of_100(irt, ddb_calls) -> None:
    pks = [pk(f"none/{i}.jpg") for i in range(150)]
    found = irt.sink.get_many([*pks, pks[0]])
    assert list(found) == pks and all(v is None for v in found.values())
    assert ddb_calls["BatchGetItem"] == 2


def test_a_search_by_s3_uses_the_stored_vector_of_a_lean_item(lean, vectors, photo, context) -> None:
    from tests.handler.test_vector_index import search

    meta = upload(lean, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", **meta), lean).outcome is Outcome.EMBEDDED
    calls = lean.engine.calls
    status, body = search({"s3": f"s3://{BUCKET}/k.jpg", "k": 1}, context)
    assert status == 200 and body["results"][0]["key"] == "k.jpg" and body["results"][0]["score"] > 0.9999
    assert lean.engine.calls == calls  # the index's vector, not a new embedding
    lean.s3.put_object(Bucket=BUCKET, Key="new.jpg", Body=photo)  # not embedded yet: read and embedded now
    status, body = search({"s3": f"s3://{BUCKET}/new.jpg", "k": 1}, context)
    assert status == 200 and lean.engine.calls == calls + 1
