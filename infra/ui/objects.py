"""The gallery's S3 and DynamoDB side: presigned URLs (the browser loads thumbnails and uploads with them,
never with credentials), the key of an upload, the server-side upload, and what the S3 function made of an
object (its DynamoDB item: embedded, failed with the error code the API would give, or not yet).
"""

from __future__ import annotations

import re
import secrets
from pathlib import PurePosixPath
from typing import Any

UPLOAD_PREFIX = "uploads/"
PRESIGN_SECONDS = 900  # a thumbnail or an upload URL is used within seconds; 15 minutes covers a slow page
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what the gallery accepts for a server-side upload (the S3 function's
# MAX_IMAGE_BYTES refuses large images itself, with a failure record the page shows)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_key(filename: str, token: str | None = None) -> str:
    """``uploads/<name>-<token><ext>``: the file's name made safe for a key (and a URL), plus a random token,
    so that an upload never lands on an earlier object (whose item would answer for it)."""
    path = PurePosixPath(filename.replace("\\", "/").split("/")[-1] or "image")
    stem = _UNSAFE.sub("-", path.stem).strip("-.")[:80] or "image"
    suffix = _UNSAFE.sub("", path.suffix)[:10].lower()
    return f"{UPLOAD_PREFIX}{stem}-{token or secrets.token_hex(4)}{suffix}"


def presign_get(s3: Any, bucket: str, key: str, expires: int = PRESIGN_SECONDS) -> str:
    url: str = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
    return url


def presign_put(s3: Any, bucket: str, key: str, content_type: str, expires: int = PRESIGN_SECONDS) -> str:
    """A PUT URL for ``key`` that signs ``content_type``: the browser must send exactly that Content-Type."""
    params = {"Bucket": bucket, "Key": key, "ContentType": content_type}
    url: str = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=expires)
    return url


def put_upload(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> str:
    """The server-side upload (when the browser cannot PUT to the bucket itself); returns the ETag."""
    etag: str = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)["ETag"]
    return etag


def item_state(ddb: Any, table: str, bucket: str, key: str) -> dict[str, Any]:
    """What the S3 function made of ``s3://bucket/key``: ``{"state": "pending"}`` (no item yet),
    ``{"state": "embedded", "model", "width", "height"}``, or ``{"state": "failed", "error": {"code",
    "message"}}`` (the failure record: not an image, corrupt, too large...)."""
    from handler import item

    names = {f"#{i}": a for i, a in enumerate((item.EMBEDDED_AT, item.ERROR_CODE, item.ERROR_MESSAGE, item.MODEL,
                                                item.WIDTH, item.HEIGHT))}  # fmt: skip
    got = ddb.get_item(
        TableName=table,
        Key={item.PK: {"S": item.pk(bucket, key)}},
        ConsistentRead=True,
        ProjectionExpression=", ".join(names),
        ExpressionAttributeNames=names,
    ).get("Item")
    if not got:
        return {"state": "pending"}
    if item.ERROR_CODE in got:
        message = got.get(item.ERROR_MESSAGE, {}).get("S", "")
        return {"state": "failed", "error": {"code": got[item.ERROR_CODE]["S"], "message": message}}
    if item.EMBEDDED_AT not in got:
        return {"state": "pending"}
    number = lambda name: int(got[name]["N"]) if name in got else None  # noqa: E731
    return {
        "state": "embedded",
        "model": got.get(item.MODEL, {}).get("S"),
        "width": number(item.WIDTH),
        "height": number(item.HEIGHT),
    }
