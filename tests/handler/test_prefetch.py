"""Read-ahead in the S3 function (handler.prefetch): the next objects are read while the current one is
embedded, and a batch ends exactly as it does when every object is read in turn."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handler import runtime
from handler import s3 as s3_function
from handler.prefetch import Prefetcher
from handler.settings import Settings
from tests.handler.helpers import BUCKET, FakeEngine, s3_notification, sqs_event


def put(rt: runtime.Runtime, key: str, data: bytes) -> dict[str, Any]:
    rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg")
    head = rt.s3.head_object(Bucket=BUCKET, Key=key)
    return {"etag": head["ETag"].strip('"'), "size": head["ContentLength"]}


def records(*notifications: dict[str, Any]) -> dict[str, Any]:
    """One direct S3 notification holding the records of several."""
    return {"Records": [r for n in notifications for r in n["Records"]]}


def with_prefetch(rt: runtime.Runtime, depth: int) -> runtime.Runtime:
    rt.settings = dataclasses.replace(rt.settings, prefetch=depth)
    return rt


class Journal:
    """What happened in which order: GETs (from any thread) and the engine's start and end per object."""

    def __init__(self, rt: runtime.Runtime) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.got: dict[str, threading.Event] = {}
        real_get = rt.s3.get_object

        def get_object(**kw: Any) -> Any:
            self.add(f"get {kw['Key']}")
            self.got.setdefault(kw["Key"], threading.Event()).set()
            return real_get(**kw)

        rt.s3.get_object = get_object  # type: ignore[method-assign]

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def wait_for_get(self, key: str) -> bool:
        return self.got.setdefault(key, threading.Event()).wait(timeout=30)


def test_next_object_is_read_while_the_current_one_is_embedded(rt, context, photo, photo2) -> None:
    journal = Journal(with_prefetch(rt, 2))
    keys = {photo: "a.jpg", photo2: "b.jpg"}
    seen_b_during_a: list[bool] = []
    real_embed = rt.engine.embed_one

    def embed_one(data: bytes) -> Any:
        journal.add(f"embed {keys[data]}")
        if keys[data] == "a.jpg":  # b's GET is issued while a is still being embedded
            seen_b_during_a.append(journal.wait_for_get("b.jpg"))
        journal.add(f"embedded {keys[data]}")
        return real_embed(data)

    rt.engine.embed_one = embed_one  # type: ignore[method-assign]
    a = s3_notification(BUCKET, "a.jpg", sequencer="01", **put(rt, "a.jpg", photo))
    b = s3_notification(BUCKET, "b.jpg", sequencer="02", **put(rt, "b.jpg", photo2))
    assert s3_function.lambda_handler(sqs_event(a, b), context) == {"batchItemFailures": []}
    assert seen_b_during_a == [True]
    assert journal.lines.index("get b.jpg") < journal.lines.index("embedded a.jpg")


def test_without_prefetch_each_object_is_read_in_turn(rt, context, photo, photo2) -> None:
    journal = Journal(with_prefetch(rt, 0))
    real_embed = rt.engine.embed_one
    rt.engine.embed_one = lambda data: (journal.add("embed"), real_embed(data))[1]  # type: ignore[method-assign]
    a = s3_notification(BUCKET, "a.jpg", sequencer="01", **put(rt, "a.jpg", photo))
    b = s3_notification(BUCKET, "b.jpg", sequencer="02", **put(rt, "b.jpg", photo2))
    assert s3_function.lambda_handler(sqs_event(a, b), context) == {"batchItemFailures": []}
    assert journal.lines == ["get a.jpg", "embed", "get b.jpg", "embed"]


def throttled(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "SlowDown", "Message": "slow"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, operation
    )


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_a_batch_ends_the_same_at_every_depth(rt, context, photo, photo2, depth) -> None:
    """Embedded, duplicate (the same object twice), stale, not an image, gone, removed and a transient read
    error, in one SQS batch: the same batch item failures and the same items whatever the read-ahead."""
    with_prefetch(rt, depth)
    real_get = rt.s3.get_object

    def get_object(**kw: Any) -> Any:
        if kw["Key"] == "flaky.jpg":
            raise throttled("GetObject")
        return real_get(**kw)

    rt.s3.get_object = get_object  # type: ignore[method-assign]
    a = s3_notification(BUCKET, "a.jpg", sequencer="05", **put(rt, "a.jpg", photo))
    late_a = s3_notification(BUCKET, "a.jpg", sequencer="01", **put(rt, "a.jpg", photo))  # older sequencer
    bad = s3_notification(BUCKET, "bad.jpg", sequencer="02", **put(rt, "bad.jpg", b"not an image at all"))
    gone = s3_notification(BUCKET, "gone.jpg", sequencer="03", **put(rt, "gone.jpg", photo2))
    rt.s3.delete_object(Bucket=BUCKET, Key="gone.jpg")
    flaky = s3_notification(BUCKET, "flaky.jpg", sequencer="04", **put(rt, "flaky.jpg", photo2))
    b = s3_notification(BUCKET, "b.jpg", sequencer="06", **put(rt, "b.jpg", photo2))
    removed = s3_notification(BUCKET, "b.jpg", action="ObjectRemoved:Delete", sequencer="07")

    event = sqs_event(a, a, late_a, bad, gone, flaky, b, removed)
    assert s3_function.lambda_handler(event, context) == {"batchItemFailures": [{"itemIdentifier": "msg-5"}]}
    stored = {k: rt.sink.get(f"s3://{BUCKET}/{k}") for k in ("a.jpg", "bad.jpg", "gone.jpg", "flaky.jpg", "b.jpg")}
    assert stored["a.jpg"] is not None and stored["a.jpg"].has_embedding
    assert stored["a.jpg"].attributes["sequencer"] == "05"
    assert stored["bad.jpg"] is not None and stored["bad.jpg"].attributes["error_code"] == "not_an_image"
    assert stored["gone.jpg"] is None and stored["flaky.jpg"] is None
    assert stored["b.jpg"] is None  # created then removed in the same batch
    engine = rt.engine
    assert isinstance(engine, FakeEngine)
    assert engine.calls == 3  # a once (its repeat is a duplicate), bad, b


@pytest.mark.parametrize("depth", [0, 2])
def test_an_object_repeated_in_a_batch_is_checked_after_its_first_write(rt, context, photo, depth) -> None:
    """The repeat is not read ahead: its duplicate check sees the first record's item."""
    with_prefetch(rt, depth)
    ev = s3_notification(BUCKET, "same.jpg", sequencer="01", **put(rt, "same.jpg", photo))
    result = s3_function.lambda_handler(records(ev, ev, ev), context)
    assert result == {"outcomes": ["embedded", "duplicate", "duplicate"]}
    assert isinstance(rt.engine, FakeEngine) and rt.engine.calls == 1


def test_a_read_error_reaches_its_own_record_only(rt, context, photo, photo2) -> None:
    """A direct invocation: the failed read ahead raises when its record is handled, the rest are stored."""
    with_prefetch(rt, 3)
    real_get = rt.s3.get_object

    def get_object(**kw: Any) -> Any:
        if kw["Key"] == "b.jpg":
            raise throttled("GetObject")
        return real_get(**kw)

    rt.s3.get_object = get_object  # type: ignore[method-assign]
    evs = [
        s3_notification(BUCKET, k, sequencer=f"0{i}", **put(rt, k, d))
        for i, (k, d) in enumerate([("a.jpg", photo), ("b.jpg", photo2), ("c.jpg", photo2)])
    ]
    with pytest.raises(Exception, match=r"1 record\(s\) to retry: s3://photos/b.jpg"):
        s3_function.lambda_handler(records(*evs), context)
    assert rt.sink.get(f"s3://{BUCKET}/a.jpg") is not None
    assert rt.sink.get(f"s3://{BUCKET}/c.jpg") is not None
    assert rt.sink.get(f"s3://{BUCKET}/b.jpg") is None


def test_reads_no_record_takes_are_cancelled_or_awaited(rt, photo) -> None:
    """``close`` leaves nothing of a batch running into the next invocation."""
    gate = threading.Event()
    started: list[str] = []

    class Paused:
        def submit(self, fn: Any, *args: Any) -> Any:
            from concurrent.futures import Future

            future: Future[Any] = Future()
            started.append(args[0].key)
            future.set_running_or_notify_cancel()
            gate.set()
            future.set_exception(RuntimeError("read failed after its record had already failed"))
            return future

    evs = [s3_notification(BUCKET, k, sequencer="01", **put(rt, k, photo))["Records"][0] for k in ("a.jpg", "b.jpg")]
    from handler import events

    batch = [e for r in evs for e in events.from_payload({"Records": [r]})]
    ahead = Prefetcher(rt, batch, depth=1, executor=Paused())  # type: ignore[arg-type]
    assert ahead.take(0) is None  # a: not started ahead, read inline; b: started
    assert started == ["b.jpg"] and gate.is_set()
    ahead.close()  # b's read is never taken (a's record failed): its error is collected, not raised


def test_prefetch_depth_comes_from_the_environment() -> None:
    assert Settings.from_env({}).prefetch == 2
    assert Settings.from_env({"S3_PREFETCH": "0"}).prefetch == 0
    assert Settings.from_env({"S3_PREFETCH": "5"}).prefetch == 5
    assert Settings.from_env({"S3_PREFETCH": "-3"}).prefetch == 0


def test_one_pool_per_depth_reused_across_invocations(monkeypatch) -> None:
    from handler import prefetch

    monkeypatch.setattr(prefetch, "_pools", {})
    first = prefetch.pool(3)
    assert prefetch.pool(3) is first and prefetch.pool(2) is not first
    assert first._max_workers == 3  # type: ignore[attr-defined]


def test_direct_invocations_read_ahead_too(rt, context, photo, photo2) -> None:
    journal = Journal(with_prefetch(rt, 2))
    keys = {photo: "a.jpg", photo2: "b.jpg"}
    real_embed = rt.engine.embed_one

    def embed_one(data: bytes) -> Any:
        if keys[data] == "a.jpg":
            assert journal.wait_for_get("b.jpg")
        journal.add(f"embedded {keys[data]}")
        return real_embed(data)

    rt.engine.embed_one = embed_one  # type: ignore[method-assign]
    a = s3_notification(BUCKET, "a.jpg", sequencer="01", **put(rt, "a.jpg", photo))
    b = s3_notification(BUCKET, "b.jpg", sequencer="02", **put(rt, "b.jpg", photo2))
    assert s3_function.lambda_handler(records(a, b), context) == {"outcomes": ["embedded", "embedded"]}
    assert journal.lines.index("get b.jpg") < journal.lines.index("embedded a.jpg")
