"""The S3 function against moto's in-process S3 and DynamoDB, with a fake engine: every event shape,
ordering and duplicates, every error class, and the backfill's entry (a Distributed Map batch of listed
objects: the same ingest path, ordered against live S3 events)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from handler import observability, runtime
from handler import s3 as s3_function
from handler.errors import ModelMismatch, TransientError
from handler.item import decode_vector
from tests.handler.helpers import BUCKET, FakeEngine, load_event, s3_notification, sqs_event
from tests.handler.helpers import backfill_batch as batch
from tests.imaging import png_bomb


def put(rt: runtime.Runtime, key: str, data: bytes) -> dict[str, Any]:
    rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg")
    head = rt.s3.head_object(Bucket=BUCKET, Key=key)
    return {"etag": head["ETag"].strip('"'), "size": head["ContentLength"]}


def created(rt: runtime.Runtime, key: str, data: bytes, seq: str | None = "0055AED6DCD9028100", **kw: Any):
    return s3_notification(BUCKET, key, sequencer=seq, **put(rt, key, data), **kw)


def item(rt: runtime.Runtime, key: str) -> dict[str, Any] | None:
    stored = rt.sink.get(f"s3://{BUCKET}/{key}")
    return None if stored is None else dict(stored.attributes)


def engine(rt: runtime.Runtime) -> FakeEngine:
    assert isinstance(rt.engine, FakeEngine)
    return rt.engine


@pytest.mark.parametrize("key", ["photo.jpg", "dir/sub dir/my photo.jpg", "café/写真 1+1.jpg", "a/b/c/d/e.jpg"])
def test_direct_s3_put_writes_the_contract_item(rt, context, photo, key) -> None:
    result = s3_function.lambda_handler(created(rt, key, photo), context)
    assert result == {"outcomes": ["embedded"]}
    got = item(rt, key)
    assert got is not None
    vec = decode_vector(got["embedding"])
    assert vec.dtype == np.dtype("<f4") and vec.shape == (512,)
    np.testing.assert_array_equal(vec, FakeEngine.vector_for(photo))
    assert got["pk"] == f"s3://{BUCKET}/{key}"
    assert (got["dim"], got["norm"], got["model"]) == (512, 10.5, "fake/clip-test")
    assert (got["width"], got["height"], got["size"]) == (640, 427, len(photo))
    assert got["content_type"] == "image/jpeg"
    assert got["sequencer"] == "0055AED6DCD9028100"
    assert got["etag"] and got["embedded_at"].endswith("Z")
    assert "error_code" not in got


def test_sqs_batch_reports_only_the_failed_message(rt, context, photo, photo2, monkeypatch, capsys, logs) -> None:
    good1 = created(rt, "a.jpg", photo)
    good2 = created(rt, "b.jpg", photo2)
    transient = created(rt, "c.jpg", photo)
    real_put = rt.sink.client.put_item

    def flaky_put(**kw: Any) -> Any:
        if kw["Item"]["pk"]["S"].endswith("/c.jpg"):
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException", "Message": "slow down"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "PutItem",
            )
        return real_put(**kw)

    monkeypatch.setattr(rt.sink.client, "put_item", flaky_put)
    event = sqs_event(good1, "not json at all", transient, good2, load_event("s3-test-event.json"))
    result = s3_function.lambda_handler(event, context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-2"}]}
    assert item(rt, "a.jpg") and item(rt, "b.jpg")
    assert item(rt, "c.jpg") is None
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    counted = {m["Name"]: x[m["Name"]] for x in emf for d in x["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert counted["MalformedMessages"] == [1.0] and counted["TransientFailures"] == [1.0]
    failed = {x.get("message_id") for x in logs() if x.get("level") in ("WARNING", "ERROR")}
    assert {"msg-1", "msg-2"} <= failed  # each failure is logged with its SQS message id


def test_all_failed_batch_is_reported_not_raised(rt, context) -> None:
    result = s3_function.lambda_handler(sqs_event("x", "y"), context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}


def test_sam_sqs_sample_with_sam_s3_put_body(rt, context, photo) -> None:
    """The two SAM samples composed as S3 → SQS delivers them (bucket/key pointed at a real object)."""
    s3_put = load_event("s3-put.json")
    meta = put(rt, "test/key", photo)
    s3_put["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    s3_put["Records"][0]["s3"]["object"].update(eTag=meta["etag"], size=meta["size"])
    sqs = load_event("sqs-receive-message.json")
    sqs["Records"][0]["body"] = json.dumps(s3_put)
    assert s3_function.lambda_handler(sqs, context) == {"batchItemFailures": []}
    assert item(rt, "test/key")["sequencer"] == "0A1B2C3D4E5F678901"


def test_test_event_is_ignored(rt, context) -> None:
    assert s3_function.lambda_handler(load_event("s3-test-event.json"), context) == {"outcomes": []}


def test_eventbridge_created_then_deleted(rt, context, photo) -> None:
    meta = put(rt, "eb/photo one.jpg", photo)
    ev = load_event("eventbridge-object-created.json")
    ev["detail"]["bucket"]["name"] = BUCKET
    ev["detail"]["object"].update(key="eb/photo+one.jpg", etag=meta["etag"], size=meta["size"])
    del ev["detail"]["object"]["version-id"]  # the bucket is not versioned
    assert s3_function.lambda_handler(ev, context) == {"outcomes": ["embedded"]}
    assert item(rt, "eb/photo one.jpg")["sequencer"] == "00617F08299329D189"
    rm = load_event("eventbridge-object-deleted.json")
    rm["detail"]["bucket"]["name"] = BUCKET
    rm["detail"]["object"]["key"] = "eb/photo+one.jpg"
    assert s3_function.lambda_handler(rm, context) == {"outcomes": ["deleted"]}
    assert item(rt, "eb/photo one.jpg") is None


def test_duplicate_is_not_embedded_twice(rt, context, photo) -> None:
    ev = created(rt, "dup.jpg", photo)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["embedded"]
    first = item(rt, "dup.jpg")
    assert s3_function.lambda_handler(sqs_event(ev, ev), context) == {"batchItemFailures": []}
    assert engine(rt).calls == 1
    assert item(rt, "dup.jpg") == first


def test_late_create_never_overwrites_newer_data(rt, context, photo, photo2) -> None:
    old = created(rt, "k.jpg", photo, seq="0055AED6DCD9028101")
    new = created(rt, "k.jpg", photo2, seq="0055AED6DCD9028102")
    assert s3_function.lambda_handler(new, context)["outcomes"] == ["embedded"]
    # The old event arrives late: stale by sequencer (and its bytes are gone from S3 anyway)
    assert s3_function.lambda_handler(old, context)["outcomes"] == ["stale"]
    np.testing.assert_array_equal(decode_vector(item(rt, "k.jpg")["embedding"]), FakeEngine.vector_for(photo2))


def test_late_delete_never_removes_newer_item(rt, context, photo) -> None:
    delete = s3_notification(BUCKET, "k2.jpg", action="ObjectRemoved:Delete", sequencer="0055AED6DCD9028101")
    create = created(rt, "k2.jpg", photo, seq="0055AED6DCD9028102")
    assert s3_function.lambda_handler(create, context)["outcomes"] == ["embedded"]
    assert s3_function.lambda_handler(delete, context)["outcomes"] == ["stale"]
    assert item(rt, "k2.jpg") is not None


def test_delete_then_late_create_does_not_resurrect(rt, context, photo) -> None:
    create = created(rt, "k3.jpg", photo, seq="0055AED6DCD9028101")
    rt.s3.delete_object(Bucket=BUCKET, Key="k3.jpg")
    delete = s3_notification(BUCKET, "k3.jpg", action="ObjectRemoved:Delete", sequencer="0055AED6DCD9028102")
    assert s3_function.lambda_handler(delete, context)["outcomes"] == ["deleted"]
    assert s3_function.lambda_handler(create, context)["outcomes"] == ["gone"]  # its read finds no object
    assert item(rt, "k3.jpg") is None


def test_event_time_orders_when_there_is_no_sequencer(rt, context, photo, photo2) -> None:
    first = created(rt, "t.jpg", photo, seq=None, event_time="2024-05-01T12:00:00.100Z")
    second = created(rt, "t.jpg", photo2, seq=None, event_time="2024-05-01T12:00:00.200Z")
    assert s3_function.lambda_handler(second, context)["outcomes"] == ["embedded"]
    assert s3_function.lambda_handler(first, context)["outcomes"] == ["stale"]
    assert "sequencer" not in item(rt, "t.jpg")
    np.testing.assert_array_equal(decode_vector(item(rt, "t.jpg")["embedding"]), FakeEngine.vector_for(photo2))


def test_object_deleted_before_read_is_skipped(rt, context, photo) -> None:
    ev = created(rt, "gone.jpg", photo)
    rt.s3.delete_object(Bucket=BUCKET, Key="gone.jpg")
    assert s3_function.lambda_handler(sqs_event(ev), context) == {"batchItemFailures": []}
    assert item(rt, "gone.jpg") is None
    assert engine(rt).calls == 0


def test_object_replaced_before_read_is_left_to_its_own_event(rt, context, photo, photo2) -> None:
    ev = created(rt, "swap.jpg", photo)
    put(rt, "swap.jpg", photo2)  # new ETag: the old event must not store the new bytes under old metadata
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["changed"]
    assert item(rt, "swap.jpg") is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is a text file, not a picture", "not_an_image"),
        (b"", "empty_image"),
        ("truncated", "corrupt_image"),
        ("bomb", "too_many_pixels"),
    ],
)
def test_permanent_errors_are_recorded_not_retried(rt, context, photo, capsys, logs, data, code) -> None:
    data = {"truncated": photo[: len(photo) // 2], "bomb": png_bomb()}.get(data, data)  # type: ignore[arg-type]
    result = s3_function.lambda_handler(sqs_event(created(rt, "bad/file x.bin", data)), context)
    assert result == {"batchItemFailures": []}  # not retried
    got = item(rt, "bad/file x.bin")
    assert got["error_code"] == code and got["error_message"]
    assert "embedding" not in got and got["failed_at"].endswith("Z")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    failures = [x for x in lines if "EmbedFailures" in x]  # EMF metric with the code dimension
    assert [x["code"] for x in failures] == [code]
    assert ["service", "code"] in failures[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    [log] = [x for x in logs() if x.get("message") == "image rejected"]
    assert (log["s3_uri"], log["error_code"], log["level"]) == (
        f"s3://{BUCKET}/bad/file x.bin",
        code,
        "WARNING",
    )


def test_too_large_is_refused_from_the_event_size_without_download(rt, context, photo, monkeypatch) -> None:
    ev = created(rt, "big.jpg", photo)
    ev["Records"][0]["s3"]["object"]["size"] = rt.settings.limits.max_bytes + 1

    def no_download(**kw: Any) -> Any:
        raise AssertionError("downloaded an oversized object")

    monkeypatch.setattr(rt.s3, "get_object", no_download)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["failed"]
    assert item(rt, "big.jpg")["error_code"] == "image_too_large"


def test_no_failure_record_for_a_key_that_never_existed(rt, context) -> None:
    ev = s3_notification(BUCKET, "never/uploaded.jpg", size=rt.settings.limits.max_bytes + 1, etag="0" * 32)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["gone"]
    assert item(rt, "never/uploaded.jpg") is None


def test_delete_before_a_late_large_create_leaves_nothing(rt, context, photo) -> None:
    create = created(rt, "late-big.jpg", photo, seq="0055AED6DCD9028101")
    create["Records"][0]["s3"]["object"]["size"] = rt.settings.limits.max_bytes + 1
    rt.s3.delete_object(Bucket=BUCKET, Key="late-big.jpg")
    delete = s3_notification(BUCKET, "late-big.jpg", action="ObjectRemoved:Delete", sequencer="0055AED6DCD9028102")
    assert s3_function.lambda_handler(delete, context)["outcomes"] == ["deleted"]
    assert s3_function.lambda_handler(create, context)["outcomes"] == ["gone"]
    assert item(rt, "late-big.jpg") is None


def test_object_deleted_while_decoded_leaves_no_failure_record(rt, context, monkeypatch) -> None:
    ev = created(rt, "doc.bin", b"not an image at all")
    decode = engine(rt).embed_one

    def delete_then_decode(data: bytes) -> Any:
        rt.s3.delete_object(Bucket=BUCKET, Key="doc.bin")  # the delete lands while we decode
        return decode(data)

    monkeypatch.setattr(engine(rt), "embed_one", delete_then_decode)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["gone"]
    assert item(rt, "doc.bin") is None


def test_too_large_without_event_size_is_refused_from_content_length(rt, context) -> None:
    big = b"\xff\xd8" + b"\0" * (rt.settings.limits.max_bytes + 10)
    ev = created(rt, "big2.jpg", big)
    del ev["Records"][0]["s3"]["object"]["size"]
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["failed"]
    assert item(rt, "big2.jpg")["error_code"] == "image_too_large"
    assert engine(rt).calls == 0


def test_good_upload_replaces_a_failure_record(rt, context, photo) -> None:
    s3_function.lambda_handler(created(rt, "fix.jpg", b"nope", seq="0055AED6DCD9028101"), context)
    assert item(rt, "fix.jpg")["error_code"] == "not_an_image"
    s3_function.lambda_handler(created(rt, "fix.jpg", photo, seq="0055AED6DCD9028102"), context)
    got = item(rt, "fix.jpg")
    assert "error_code" not in got and "embedding" in got


def s3_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    "exc",
    [
        s3_error("SlowDown", 503),
        s3_error("InternalError", 500),
        s3_error("AccessDenied", 403),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    ],
)
def test_transient_s3_errors_fail_only_that_record(rt, context, photo, monkeypatch, exc) -> None:
    ok = created(rt, "ok.jpg", photo)
    retry = created(rt, "retry.jpg", photo)
    real_get = rt.s3.get_object

    def get(**kw: Any) -> Any:
        if kw["Key"] == "retry.jpg":
            raise exc
        return real_get(**kw)

    monkeypatch.setattr(rt.s3, "get_object", get)
    result = s3_function.lambda_handler(sqs_event(ok, retry), context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert item(rt, "retry.jpg") is None  # nothing recorded: it will be retried


def test_transient_error_in_direct_invocation_raises_for_lambda_retry(rt, context, photo, monkeypatch) -> None:
    ev = created(rt, "direct.jpg", photo)

    def down(**kw: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(rt.sink.client, "get_item", down)
    with pytest.raises(Exception, match="to retry"):
        s3_function.lambda_handler(ev, context)


def test_delete_event_removes_item_and_failure_records(rt, context, photo) -> None:
    s3_function.lambda_handler(created(rt, "x.jpg", photo, seq="01"), context)
    s3_function.lambda_handler(created(rt, "y.txt", b"text", seq="01"), context)
    for key in ("x.jpg", "y.txt"):
        rm = s3_notification(BUCKET, key, action="ObjectRemoved:DeleteMarkerCreated", sequencer="02")
        assert s3_function.lambda_handler(sqs_event(rm), context) == {"batchItemFailures": []}
        assert item(rt, key) is None


def test_metrics_and_logs(rt, context, photo, capsys, logs) -> None:
    s3_function.lambda_handler(created(rt, "m.jpg", photo), context)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    emf = [x for x in lines if "_aws" in x]
    names = {m["Name"] for x in emf for d in x["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {
        "ImagesEmbedded",
        "DecodeTime",
        "PreprocessTime",
        "InferenceTime",
        "WriteTime",
        "S3ReadTime",
    } <= names
    units = {m["Name"]: m["Unit"] for x in emf for d in x["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert units["ImagesEmbedded"] == "Count" and units["ObjectsEmbedded"] == "Count"
    assert {units[n] for n in ("DecodeTime", "PreprocessTime", "InferenceTime", "WriteTime", "S3ReadTime")} == {
        "Milliseconds"
    }
    blob = next(x for x in emf if "ImagesEmbedded" in x)
    assert blob["ImagesEmbedded"] == [1.0]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == observability.NAMESPACE
    assert (blob["DecodeTime"], blob["PreprocessTime"], blob["InferenceTime"]) == ([1.0], [2.0], [3.0])  # fake
    [log] = [x for x in logs() if x.get("message") == "object processed"]
    assert (log["s3_uri"], log["outcome"], log["function_request_id"]) == (
        f"s3://{BUCKET}/m.jpg",
        "embedded",
        "req-0001",
    )
    assert log["level"] == "INFO" and log["service"] == observability.SERVICE  # the env at import: test order decides


# ------------------------------------------------------------------ issue 13: paths no test reached before
def test_a_new_model_re_embeds_a_duplicate_etag(rt, context, photo, monkeypatch) -> None:
    ev = created(rt, "remodel.jpg", photo)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["embedded"]
    monkeypatch.setattr(engine(rt), "model_id", "fake/clip-test-v2")
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["embedded"]  # same ETag, other model
    assert engine(rt).calls == 2 and item(rt, "remodel.jpg")["model"] == "fake/clip-test-v2"
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["duplicate"]


def test_record_failures_off_writes_nothing(rt, context, monkeypatch) -> None:
    from dataclasses import replace

    monkeypatch.setattr(rt, "settings", replace(rt.settings, record_failures=False))
    assert s3_function.lambda_handler(created(rt, "quiet.txt", b"not an image"), context)["outcomes"] == ["failed"]
    assert item(rt, "quiet.txt") is None


def test_existence_check_that_is_refused_keeps_the_item(rt, context, photo, monkeypatch) -> None:
    """A HEAD answered 403 cannot tell whether the object exists: the item is kept, not deleted."""
    head = rt.s3.head_object

    def denied(**kw: Any) -> Any:
        if "IfMatch" in kw or "VersionId" in kw:
            return head(**kw)
        raise ClientError({"Error": {"Code": "403"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")

    ev = created(rt, "kept.jpg", photo)
    monkeypatch.setattr(rt.s3, "head_object", denied)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["embedded"]
    assert item(rt, "kept.jpg") is not None


@pytest.fixture
def versioned(rt):  # type: ignore[no-untyped-def]
    rt.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return rt


def versioned_put(rt: runtime.Runtime, key: str, data: bytes, seq: str) -> dict[str, Any]:
    resp = rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    ev = s3_notification(BUCKET, key, etag=resp["ETag"].strip('"'), size=len(data), sequencer=seq)
    ev["Records"][0]["s3"]["object"]["versionId"] = resp["VersionId"]
    return ev


def test_versioned_delete_while_embedding_leaves_no_item(versioned, context, photo, monkeypatch) -> None:
    """On a versioned bucket the read is pinned to the version, which survives a delete (a delete marker):
    only the existence check after the write keeps the deleted object's item from staying."""
    ev = versioned_put(versioned, "v/photo.jpg", photo, "0055AED6DCD9028101")
    embed = engine(versioned).embed_one

    def delete_then_embed(data: bytes) -> Any:
        versioned.s3.delete_object(Bucket=BUCKET, Key="v/photo.jpg")
        return embed(data)

    monkeypatch.setattr(engine(versioned), "embed_one", delete_then_embed)
    assert s3_function.lambda_handler(ev, context)["outcomes"] == ["gone"]
    assert item(versioned, "v/photo.jpg") is None


def test_versioned_late_create_after_delete_does_not_resurrect(versioned, context, photo) -> None:
    create = versioned_put(versioned, "v/late.jpg", photo, "0055AED6DCD9028101")
    versioned.s3.delete_object(Bucket=BUCKET, Key="v/late.jpg")
    delete = s3_notification(
        BUCKET, "v/late.jpg", action="ObjectRemoved:DeleteMarkerCreated", sequencer="0055AED6DCD9028102"
    )
    assert s3_function.lambda_handler(delete, context)["outcomes"] == ["deleted"]
    # The version is still readable, so only the existence check stops the item from coming back.
    assert s3_function.lambda_handler(create, context)["outcomes"] == ["gone"]
    assert item(versioned, "v/late.jpg") is None
    assert engine(versioned).calls == 1


def test_versioned_overwrite_keeps_the_newest_version(versioned, context, photo, photo2) -> None:
    old = versioned_put(versioned, "v/k.jpg", photo, "0055AED6DCD9028101")
    new = versioned_put(versioned, "v/k.jpg", photo2, "0055AED6DCD9028102")
    assert s3_function.lambda_handler(new, context)["outcomes"] == ["embedded"]
    assert s3_function.lambda_handler(old, context)["outcomes"] == ["stale"]
    got = item(versioned, "v/k.jpg")
    assert got["version_id"] == new["Records"][0]["s3"]["object"]["versionId"]
    np.testing.assert_array_equal(decode_vector(got["embedding"]), FakeEngine.vector_for(photo2))


def test_a_failure_metric_counts_one_per_image_in_its_namespace(rt, context, capsys) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="junk.bin", Body=b"junk")
    s3_function.lambda_handler(s3_notification(BUCKET, "junk.bin", sequencer="01"), context)
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    [failure] = [x for x in emf if "EmbedFailures" in x]
    [metric] = failure["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert (failure["EmbedFailures"], metric["Unit"], failure["code"]) == ([1.0], "Count", "not_an_image")
    assert failure["_aws"]["CloudWatchMetrics"][0]["Namespace"] == observability.NAMESPACE


def test_a_direct_event_that_must_be_retried_raises_and_is_counted(rt, context, photo, monkeypatch, capsys) -> None:
    ev = created(rt, "direct.jpg", photo)

    def down(**kw: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://dynamodb")

    monkeypatch.setattr(rt.sink.client, "get_item", down)
    with pytest.raises(TransientError, match=r"1 record\(s\) to retry: s3://photos/direct\.jpg"):
        s3_function.lambda_handler(ev, context)
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    assert any(x.get("TransientFailures") == [1.0] for x in emf)


def test_the_item_is_read_strongly_consistent(rt, context, photo, monkeypatch) -> None:
    """A read that may miss the latest write could let an older event past the ordering check."""
    calls: list[dict[str, Any]] = []
    real = rt.sink.client.get_item
    monkeypatch.setattr(rt.sink.client, "get_item", lambda **kw: calls.append(kw) or real(**kw))
    s3_function.lambda_handler(created(rt, "c.jpg", photo), context)
    assert calls and all(kw.get("ConsistentRead") is True for kw in calls)


# --------------------------------------------------------------------- the backfill entry (a Distributed Map batch)


def listed(rt: runtime.Runtime, key: str, data: bytes) -> dict[str, Any]:
    """The item Step Functions' S3 listing reader yields for an object."""
    rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    head = rt.s3.head_object(Bucket=BUCKET, Key=key)
    return {"Etag": head["ETag"], "Key": key, "LastModified": int(head["LastModified"].timestamp()),
            "Size": head["ContentLength"], "StorageClass": "STANDARD"}  # fmt: skip


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
