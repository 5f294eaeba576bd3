"""Error classes of the functions, split by what the caller should do about them.

- ``layer.ImageError`` (from the engine): permanent, the same image fails again; never retried, recorded.
- ``RequestError`` (the API): a request answered with an error code and its status, 4xx for the caller's
  mistakes, 503 when a dependency failed and the same request may succeed later, 502 when a dependency
  refused for good (the deployment must change: retrying the same request will not help), 501 for a feature
  this deployment lacks. 500 is kept for our own bugs. Not an image error.
- ``TransientError``: throttling, 5xx, timeouts, unreachable endpoints; the SQS record fails and is retried
  (and lands in the DLQ after the redrive limit).
- ``IndexMisconfigured``: the vector index refused for good (no such index, another dimension, no
  permission): no retry fixes it, a change to the deployment does. The record is still kept (failed,
  retried, then the DLQ: redrive it after the fix), but logged and counted as what it is; the API answers it
  with 502 ``index_misconfigured``, never "retry later".
- ``ObjectGone`` / ``ObjectChanged``: the object the event names no longer exists / was replaced; skipped,
  because a later event describes the current state.
"""

from __future__ import annotations

from layer.errors import CodedError


class TransientError(RuntimeError):
    """A dependency failed in a way that retrying later can fix."""


class ModelUnsound(TransientError):
    """This sandbox's model failed its self-check at INIT (``layer.selfcheck``): it writes no vectors. The
    record is retried (elsewhere, or after a fix) and, failing that, kept in the DLQ."""

    code = "model_self_check_failed"


class IndexMisconfigured(TransientError):
    """The vector index refused an operation in a way no retry fixes (``ValidationException``,
    ``NotFoundException``, ``AccessDeniedException``, a KMS or quota error...): the deployment must change.

    A ``TransientError`` only so that every path that keeps a failed record (SQS's retries and DLQ, a direct
    invocation's retry, the backfill's) keeps this one too, as for ``ModelUnsound``: catch it first to tell
    it apart. ``remedy`` says what to fix; ``aws_code`` is the service's error code."""

    code = "index_misconfigured"

    def __init__(self, operation: str, aws_code: str, remedy: str, detail: str = "") -> None:
        super().__init__(f"S3 Vectors {operation}: {aws_code}: {remedy}" + (f" ({detail})" if detail else ""))
        self.operation = operation
        self.aws_code = aws_code
        self.remedy = remedy
        self.detail = detail


class ModelMismatch(RuntimeError):
    """A backfill run expects another model than the one this function embeds with (deploy it first)."""


class MalformedEvent(ValueError):
    """An event or SQS message body that is not any S3 notification shape we know."""


class ObjectGone(LookupError):
    """The object (or its bucket / version) does not exist any more: deleted before it was read."""


class ObjectChanged(LookupError):
    """The object was overwritten after the event (its ETag no longer matches): a newer event will come."""


class AccessDenied(PermissionError):
    """Reading the object was refused (bucket policy, KMS key)."""


class RequestError(CodedError):
    """An API request answered with ``code`` and its status from ``API_ERRORS`` (one table, so a code can
    never be answered with two statuses)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = API_ERRORS[code]


# Every error code the API answers, with its HTTP status: the contract the README, the OpenAPI document and
# the fuzz tests read (an image's own errors come from layer.errors with the same codes and statuses).
API_ERRORS: dict[str, int] = {
    "invalid_request": 400,  # not the schema: bad JSON, unknown fields, wrong types
    "invalid_base64": 400,
    "invalid_body": 400,  # a text body that is not UTF-8
    "invalid_s3_uri": 400,
    "empty_image": 400,
    "empty_text": 400,
    "invalid_text": 400,
    "unknown_tag": 400,  # a search's tag is not in the model's label vocabulary (GET /model lists it)
    "s3_bucket_not_allowed": 403,
    "s3_access_denied": 403,
    "store_disabled": 403,
    "not_found": 404,  # no such route
    "s3_not_found": 404,
    "image_too_large": 413,
    "too_many_pixels": 413,
    "too_many_images": 413,
    "text_too_long": 413,
    "text_request_too_large": 413,  # a /embed/text body larger than any valid request, refused unread
    "unsupported_media_type": 415,
    "not_an_image": 422,
    "corrupt_image": 422,
    "text_unavailable": 501,  # the deployed model was built without its text tower (--no-text)
    "search_unavailable": 501,  # no vector index is configured (VectorIndex=none)
    "tags_unavailable": 501,  # the deployed model was built without a label vocabulary (--labels none)
    "index_misconfigured": 502,  # the vector index refused for good (missing, another dimension, no access)
    "s3_unavailable": 503,  # S3 throttled or failed: retry later
    "index_unavailable": 503,  # the vector index failed to answer: retry later
    "store_unavailable": 503,  # DynamoDB failed while storing (per image, with store=true)
    "model_self_check_failed": 503,  # this sandbox's model gave other vectors than the build's at INIT
}
