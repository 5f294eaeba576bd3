"""Where an object lives: bucket and key checked once, ``s3://bucket/key`` built and parsed in one place.

The rules are botocore's (what it would refuse before sending a request) plus S3's key limit, so that a bad
name is a permanent input error here (400, or a malformed event), never a "retry later" after botocore's
``ParamValidationError``. Access-point and Outposts ARNs are not accepted as bucket names.
"""

from __future__ import annotations

import re

# botocore.handlers.VALID_BUCKET (legacy us-east-1 names allow upper case and underscores, up to 255).
_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length


class InvalidLocation(ValueError):
    """A bucket name or key that S3 cannot hold (or botocore would refuse)."""


def check(bucket: object, key: object) -> tuple[str, str]:
    """``(bucket, key)`` if both are valid, else ``InvalidLocation`` saying which and why."""
    if not isinstance(bucket, str) or not _BUCKET.match(bucket):
        raise InvalidLocation(f"invalid bucket name {str(bucket)[:80]!r}")
    if not isinstance(key, str) or not key:
        raise InvalidLocation(f"invalid key {str(key)[:80]!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 form, so no S3 key
        raise InvalidLocation(f"key is not valid UTF-8: {key[:80]!r}") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidLocation(f"key is {size} bytes; S3 keys are at most {MAX_KEY_BYTES}")
    return bucket, key


def uri(bucket: str, key: str) -> str:
    """The item key of the DynamoDB contract, and what logs and the API call an object."""
    return f"s3://{bucket}/{key}"


def parse_uri(value: object) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key), the inverse of ``uri``. The key is taken literally, every
    character after the bucket's ``/`` (``%2F``, ``%25``, ``+`` and spaces are themselves, never decoded):
    the form the DynamoDB pk holds and ``POST /search`` returns, so that ``x%2Fy.png`` and ``x/y.png`` are two
    objects and a key from a search result can be fed back as it is."""
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise InvalidLocation(f"expected s3://bucket/key, got {str(value)[:200]!r}")
    bucket, _, key = value[5:].partition("/")
    return check(bucket, key)
