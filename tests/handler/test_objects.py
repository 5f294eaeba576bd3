"""S3 reads against moto in-process: pinning to the event's version or ETag, the size limit before the body,
and the mapping of every S3 error to what the caller should do."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from handler import objects
from handler.errors import AccessDenied, ObjectChanged, ObjectGone, TransientError
from handler.location import InvalidLocation
from layer import ImageTooLarge
from tests.handler.helpers import BUCKET


@pytest.fixture
def s3(aws: dict[str, Any]) -> Any:
    client = aws["s3"]
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def put(s3: Any, key: str, body: bytes, content_type: str | None = "image/jpeg") -> dict[str, Any]:
    extra = {"ContentType": content_type} if content_type else {}
    resp = s3.put_object(Bucket=BUCKET, Key=key, Body=body, **extra)
    return {"etag": resp["ETag"].strip('"'), "version_id": resp["VersionId"]}


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def test_pinned_prefers_the_version_then_the_etag() -> None:
    assert objects.pinned("b", "k", etag='"e"', version_id="v") == {"Bucket": "b", "Key": "k", "VersionId": "v"}
    assert objects.pinned("b", "k", etag='"e"', version_id=None) == {"Bucket": "b", "Key": "k", "IfMatch": '"e"'}
    assert objects.pinned("b", "k", etag="e", version_id="") == {"Bucket": "b", "Key": "k", "IfMatch": '"e"'}
    assert objects.pinned("b", "k", etag=None, version_id=None) == {"Bucket": "b", "Key": "k"}


def test_read_and_head_return_the_version_the_event_named(s3: Any) -> None:
    old = put(s3, "k.jpg", b"old bytes")
    new = put(s3, "k.jpg", b"newer bytes!", content_type=None)
    blob = objects.read_object(s3, BUCKET, "k.jpg", max_bytes=100, version_id=old["version_id"])
    assert (blob.data, blob.size, blob.etag, blob.version_id) == (b"old bytes", 9, old["etag"], old["version_id"])
    assert (blob.bucket, blob.key, blob.content_type) == (BUCKET, "k.jpg", "image/jpeg")
    assert blob.last_modified == s3.head_object(Bucket=BUCKET, Key="k.jpg", VersionId=old["version_id"])["LastModified"]
    head = objects.head_object(s3, BUCKET, "k.jpg", version_id=old["version_id"])
    assert (head.size, head.etag, head.version_id, head.content_type) == (
        9,
        old["etag"],
        old["version_id"],
        "image/jpeg",
    )
    latest = objects.head_object(s3, BUCKET, "k.jpg")
    assert (latest.size, latest.etag, latest.version_id) == (12, new["etag"], new["version_id"])


def test_an_etag_pin_refuses_other_bytes(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]  # unversioned: the ETag is the only pin
    first = s3.put_object(Bucket=BUCKET, Key="e.jpg", Body=b"one")["ETag"]
    s3.put_object(Bucket=BUCKET, Key="e.jpg", Body=b"two")
    with pytest.raises(ObjectChanged):
        objects.read_object(s3, BUCKET, "e.jpg", max_bytes=100, etag=first)
    with pytest.raises(ObjectChanged):
        objects.head_object(s3, BUCKET, "e.jpg", etag=first)
    current = s3.head_object(Bucket=BUCKET, Key="e.jpg")["ETag"]
    assert objects.read_object(s3, BUCKET, "e.jpg", max_bytes=100, etag=current).data == b"two"
    assert objects.head_object(s3, BUCKET, "e.jpg", etag=current).version_id is None


def test_missing_objects_and_buckets_are_gone(s3: Any) -> None:
    for bucket, key in ((BUCKET, "nope.jpg"), ("no-such-bucket-x", "k")):
        with pytest.raises(ObjectGone, match=f"s3://{bucket}/{key}"):
            objects.read_object(s3, bucket, key, max_bytes=100)
        with pytest.raises(ObjectGone, match=f"s3://{bucket}/{key}"):
            objects.head_object(s3, bucket, key)
        assert objects.exists(s3, bucket, key) is False
    put(s3, "here.jpg", b"x")
    assert objects.exists(s3, BUCKET, "here.jpg") is True


def test_the_size_limit_is_checked_before_the_body_is_read(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(s3, "big.jpg", b"x" * 101)
    real_get = s3.get_object
    bodies: list[Any] = []

    def get(**kw: Any) -> Any:
        resp = real_get(**kw)
        bodies.append(resp["Body"])
        return resp

    monkeypatch.setattr(s3, "get_object", get)
    with pytest.raises(ImageTooLarge, match="101 bytes; the limit is 100"):
        objects.read_object(s3, BUCKET, "big.jpg", max_bytes=100)
    assert bodies[0]._raw_stream.closed or bodies[0].closed  # type: ignore[attr-defined]
    assert objects.read_object(s3, BUCKET, "big.jpg", max_bytes=101).size == 101  # the limit is inclusive


def test_a_dropped_connection_mid_body_is_transient(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(s3, "drop.jpg", b"abc")
    real_get = s3.get_object

    def get(**kw: Any) -> Any:
        resp = real_get(**kw)
        resp["Body"].read = lambda *a: (_ for _ in ()).throw(OSError("reset"))
        return resp

    monkeypatch.setattr(s3, "get_object", get)
    with pytest.raises(TransientError, match="reading the body failed"):
        objects.read_object(s3, BUCKET, "drop.jpg", max_bytes=100)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("NoSuchKey", 404), ObjectGone),
        (client_error("NoSuchVersion", 400), ObjectGone),
        (client_error("", 404), ObjectGone),
        (client_error("PreconditionFailed", 412), ObjectChanged),
        (client_error("", 412), ObjectChanged),
        (client_error("AccessDenied", 403), AccessDenied),
        (client_error("InvalidObjectState", 403), AccessDenied),
        (client_error("AllAccessDisabled", 400), AccessDenied),
        (client_error("", 403), AccessDenied),
        (client_error("SlowDown", 503), TransientError),
        (client_error("InternalError", 500), TransientError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientError),
        (ParamValidationError(report="bad key"), InvalidLocation),
    ],
)
def test_every_s3_error_maps_to_what_the_caller_should_do(exc: Exception, expected: type) -> None:
    mapped = objects.map_error(exc, "b", "k")
    assert type(mapped) is expected and "s3://b/k" in str(mapped)


def test_exists_cannot_tell_on_access_denied_and_retries_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    class Client:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def head_object(self, **kw: Any) -> Any:
            raise self.exc

    assert objects.exists(Client(client_error("AccessDenied", 403)), "b", "k") is True  # keep the item
    assert objects.exists(Client(client_error("PreconditionFailed", 412)), "b", "k") is True
    with pytest.raises(TransientError, match="s3://b/k"):  # the error names the object, as map_error's do
        objects.exists(Client(client_error("SlowDown", 503)), "b", "k")


def test_an_empty_object_has_size_zero(s3: Any) -> None:
    put(s3, "empty.jpg", b"")
    assert objects.head_object(s3, BUCKET, "empty.jpg").size == 0
    assert objects.read_object(s3, BUCKET, "empty.jpg", max_bytes=100).size == 0
