"""S3 reads: one object's bytes and metadata, with S3 errors mapped to what the caller should do.

The size limit is checked before the body is read (from the event's size, and again from the response's
``Content-Length``), so an oversized upload is never downloaded. Reads are pinned to the event's ETag
(``If-Match``) so that bytes of a newer object are never stored under an older event's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from handler.errors import AccessDenied, ObjectChanged, ObjectGone, TransientError
from handler.location import InvalidLocation, uri
from handler.observability import subsegment, timed
from layer import ImageTooLarge

_GONE = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404", "NotFound"}
_CHANGED = {"PreconditionFailed", "412"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"}


@dataclass(frozen=True)
class S3Blob:
    bucket: str
    key: str
    data: bytes
    size: int
    etag: str
    version_id: str | None
    content_type: str | None
    last_modified: datetime


def map_error(exc: Exception, bucket: str, key: str) -> Exception:
    """An S3 client error → ObjectGone / ObjectChanged / AccessDenied / InvalidLocation / TransientError."""
    where = uri(bucket, key)
    if isinstance(exc, ParamValidationError):  # refused by botocore before sending: retrying cannot help
        return InvalidLocation(f"{where}: {exc}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _GONE or status == 404:
            return ObjectGone(f"{where}: {code or status}")
        if code in _CHANGED or status == 412:
            return ObjectChanged(f"{where}: object replaced since the event (ETag differs)")
        if code in _DENIED or status == 403:
            return AccessDenied(f"{where}: {code or status}")
        return TransientError(f"{where}: S3 {code or status}")
    return TransientError(f"{where}: {type(exc).__name__}: {exc}")


def _etag(value: Any) -> str:
    return str(value or "").strip('"')


def pinned(bucket: str, key: str, *, etag: str | None, version_id: str | None) -> dict[str, Any]:
    """The request parameters that name exactly the object an event saw: its version where the bucket is
    versioned, else its ETag (``If-Match``: a replaced object answers 412, never other bytes)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    elif etag:
        kwargs["IfMatch"] = f'"{_etag(etag)}"'
    return kwargs


def read_object(
    s3: Any,
    bucket: str,
    key: str,
    *,
    max_bytes: int,
    etag: str | None = None,
    version_id: str | None = None,
) -> S3Blob:
    """Download one object. Raises ImageTooLarge (permanent), ObjectGone, ObjectChanged, AccessDenied or
    TransientError."""
    kwargs = pinned(bucket, key, etag=etag, version_id=version_id)
    with subsegment("s3.get_object"), timed("S3ReadTime"):
        try:
            resp = s3.get_object(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, bucket, key) from exc
        size = int(resp.get("ContentLength") or 0)
        body = resp["Body"]
        if size > max_bytes:
            body.close()
            raise ImageTooLarge(f"object is {size} bytes; the limit is {max_bytes}")
        try:
            data = body.read()
        except (BotoCoreError, OSError) as exc:  # connection dropped mid-body
            raise TransientError(f"{uri(bucket, key)}: reading the body failed: {exc}") from exc
        finally:
            body.close()
    return S3Blob(
        bucket=bucket,
        key=key,
        data=data,
        size=len(data),
        etag=_etag(resp.get("ETag")),
        version_id=resp.get("VersionId") or None,
        content_type=resp.get("ContentType") or None,
        last_modified=resp.get("LastModified") or datetime.now(UTC),
    )


@dataclass(frozen=True)
class S3Head:
    size: int
    etag: str
    version_id: str | None
    content_type: str | None


def head_object(s3: Any, bucket: str, key: str, *, etag: str | None = None, version_id: str | None = None) -> S3Head:
    """The object's metadata without its body, pinned like ``read_object``. Raises ObjectGone,
    ObjectChanged, AccessDenied or TransientError."""
    kwargs = pinned(bucket, key, etag=etag, version_id=version_id)
    with subsegment("s3.head_object"):
        try:
            resp = s3.head_object(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, bucket, key) from exc
    return S3Head(
        size=int(resp.get("ContentLength") or 0),
        etag=_etag(resp.get("ETag")),
        version_id=resp.get("VersionId") or None,
        content_type=resp.get("ContentType") or None,
    )


def exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether the key currently exists (HEAD). Transient failures raise TransientError."""
    try:
        with subsegment("s3.head_object"):
            s3.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        err = map_error(exc, bucket, key)
        if isinstance(err, ObjectGone):
            return False
        if isinstance(err, AccessDenied | ObjectChanged):
            return True  # cannot tell; assume it exists rather than delete a good item
        raise err from exc
    return True
