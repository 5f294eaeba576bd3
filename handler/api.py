"""The API function (API Gateway HTTP API, payload v2): embed images sent in the request or named in S3.

Routes: ``POST /embed`` (raw ``image/*`` body → one vector; ``application/json`` ``{"images": [...]}`` → a
vector per image, errors in place), ``POST /embed/text`` (``{"texts": [...]}`` → a vector per text, in the
images' space), ``POST /search`` (a text, an image or an s3 reference → the k nearest images of the vector
index), ``GET /model`` (the model's manifest), ``GET /health``. Errors are
``{"error": {"code", "message"}}`` with a 4xx status for bad input; a 500 only for our own bugs, without a
stack trace. The raw body is base64-decoded here: Powertools' ``decoded_body`` decodes to str and breaks on
image bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

import numpy as np
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from handler import indexing, ingest, item, location, objects, runtime, settings
from handler.errors import (
    API_ERRORS,
    AccessDenied,
    IndexMisconfigured,
    ModelUnsound,
    ObjectChanged,
    ObjectGone,
    RequestError,
    TransientError,
)
from handler.observability import count, logger, metrics, record_failure, subsegment, tracer
from handler.schemas import (
    MAX_TEXTS,
    BatchItem,
    BatchResponse,
    EmbeddingOut,
    EmbedRequest,
    ErrorBody,
    ErrorResponse,
    Health,
    ImageRef,
    SearchHit,
    SearchRequest,
    SearchResponse,
    TextItem,
    TextRequest,
    TextResponse,
    error_body,
)
from layer import ImageError, ModelDirError
from layer.embedding import Embedding
from layer.errors import CodedError, TextError
from layer.text import MAX_TEXT_CHARS

app = APIGatewayHttpResolver(enable_validation=True)
M = TypeVar("M", bound=BaseModel)

runtime.require_text()  # this function embeds texts too: its engine loads the text tower
if settings.in_lambda():
    runtime.current()  # INIT: load the model before the first request

# The largest valid POST /embed/text body, in bytes: every character of the longest texts written as the
# longest JSON form it has, an escaped surrogate pair ("\ud83d\ude00", 12 bytes for one emoji; a raw UTF-8
# character is at most 4), the field name escaped too ("\u0074..."), the punctuation, and room for
# insignificant whitespace (pretty-printing). 64 x 1,000 characters: 772,324 bytes, 1,029,772 base64 characters
# as API Gateway passes a body it treats as binary; well within Lambda's 6 MB payload and API Gateway's 10 MB.
_ESCAPED_CHAR = len("\\ud83d\\ude00")  # 12: the JSON escape of one character outside the BMP
JSON_WHITESPACE_ALLOWANCE = 4096
TEXT_BODY_MAX_BYTES = (
    len('{:[]}')  # the object and the array
    + 2 + len("texts") * len("\\u0074")  # the field name, quoted, every letter escaped
    + MAX_TEXTS * (2 + MAX_TEXT_CHARS * _ESCAPED_CHAR)  # each text, quoted
    + (MAX_TEXTS - 1)  # the commas
    + JSON_WHITESPACE_ALLOWANCE
)  # fmt: skip

_NOT_BUILT: Any = {
    "description": "Not in this deployment: a model built without its text tower, or no vector index",
    "content": {"application/json": {"model": ErrorResponse}},
}
_ERRORS: dict[int, Any] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for status, text in {
        400: "Malformed request: bad JSON, bad base64, empty body, invalid s3:// URI",
        403: "An s3 reference outside ALLOWED_S3_BUCKETS or that the function may not read; store=true "
        "where API_ALLOW_STORE is off",
        404: "An s3 reference that does not exist",
        413: "Image (or batch) too large: MAX_IMAGE_BYTES / MAX_IMAGE_PIXELS / MAX_BATCH_IMAGES; a text over "
        f"{MAX_TEXT_CHARS} characters (per text); a POST /embed/text body over {TEXT_BODY_MAX_BYTES:,} bytes "
        "(text_request_too_large)",
        415: "Content-Type is neither image/* (or application/octet-stream) nor application/json",
        422: "The body is not a decodable image (unknown format, corrupt, truncated)",
        503: "S3 throttled or failed reading an s3 reference (per image in a batch): retry later; or this "
        "sandbox's model failed its self-check (model_self_check_failed)",
    }.items()
}
_INDEX_ERRORS: dict[int, Any] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for status, text in {
        502: "index_misconfigured: the vector index refused for good (it does not exist, holds vectors of another "
        "dimension, or this function may not query it): the message names the operation, the AWS error code "
        "and what to change in the deployment; retrying will not help",
        503: "S3 throttled or failed reading an s3 reference; the vector index did not answer (index_unavailable): "
        "retry later; or this sandbox's model failed its self-check (model_self_check_failed)",
    }.items()
}


def json_response(status: int, payload: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload)


def error_response(status: int, code: str, message: str) -> Response[dict[str, Any]]:
    return json_response(status, error_body(code, message))


def refused(exc: CodedError) -> ErrorBody:
    """Log and count a coded refusal (by code: a 503 is told apart from the caller's mistakes) and name it."""
    logger.info("request rejected", extra={"error_code": exc.code, "error_message": exc.message})
    record_failure(exc.code)
    return ErrorBody(code=exc.code, message=exc.message)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError("invalid_base64", f"{what} is not valid base64: {exc}") from exc


def request_body(max_bytes: int, too_large: str = "image_too_large", *, exact: bool = False) -> bytes:
    """The raw request body; refuses a body over ``max_bytes`` with the code ``too_large``, by its length
    alone before decoding base64 or parsing anything (a base64 body with a few bytes of padding slack, which
    the engine's own size check covers for an image; ``exact``: the decoded body is checked too)."""
    event = app.current_event
    body = event.body or ""
    over = RequestError(too_large, f"request body exceeds the {max_bytes:,}-byte limit")
    if not event.is_base64_encoded:
        if len(body) > max_bytes:  # a character is at least one byte
            raise over
        try:
            data = body.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: API Gateway never sends one, a fuzzer does
            raise RequestError("invalid_body", f"request body is not valid UTF-8 text: {exc.reason}") from exc
        if len(data) > max_bytes:
            raise over
        return data
    if len(body) > 4 * (max_bytes // 3 + 1) + 4:
        raise over
    data = _b64decode(body, "request body")
    if exact and len(data) > max_bytes:
        raise over
    return data


def media_type() -> str:
    return (app.current_event.headers.get("content-type") or "").split(";")[0].strip().lower()


@app.post(
    "/embed",
    summary="Embed one image (raw image/* body) or a batch (application/json)",
    description=(
        "Raw body with Content-Type image/* (or application/octet-stream) → one embedding. "
        'JSON {"images": [{"data": base64} | {"s3": "s3://bucket/key"}], "store": false} → one result per '
        "image, in order, each an embedding or its own error; store=true also writes the DynamoDB item of "
        'each s3 reference. "tags": true (JSON) or ?tags=true (raw body) also returns each image\'s zero-shot '
        "tags (labels of the model's vocabulary with their cosine, best first)."
    ),
    responses={
        200: {
            "description": "One embedding (image body) or per-image results (JSON body)",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/EmbeddingOut"},
                            {"$ref": "#/components/schemas/BatchResponse"},
                        ]
                    }
                }
            },
        },
        **_ERRORS,
    },
    operation_id="embed",
)
def embed() -> Response[dict[str, Any]]:
    rt = sound_runtime()
    kind = media_type()
    if kind.startswith("image/") or kind == "application/octet-stream":
        data = request_body(rt.settings.limits.max_bytes)
        tags = wants_tags(rt)
        return json_response(200, EmbeddingOut.of(rt.embed_image(data), tags).model_dump(exclude_none=True))
    if is_json(kind):
        return json_response(200, embed_batch(rt).model_dump(exclude_none=True))
    raise RequestError(
        "unsupported_media_type",
        f"Content-Type {kind or '(none)'} is not supported: send image/* or application/json",
    )


def wants_tags(rt: runtime.Runtime, asked: bool | None = None) -> bool:
    """Whether the caller asked for tags (``asked``: the JSON field; else ``?tags=true``); a model without a
    label vocabulary answers 501 tags_unavailable rather than an empty list."""
    if asked is None:
        raw = (app.current_event.query_string_parameters or {}).get("tags", "false").strip().lower()
        if raw not in ("true", "false", "1", "0"):
            raise RequestError("invalid_request", f"tags={raw[:20]!r}: use tags=true or tags=false")
        asked = raw in ("true", "1")
    if asked and rt.engine.tagger is None:
        raise RequestError("tags_unavailable", "this deployment's model was built without a label vocabulary")
    return asked


def sound_runtime() -> runtime.Runtime:
    """The runtime, if its model passed its self-check at INIT; else the request is refused (503): this
    sandbox's vectors would not be the model's."""
    rt = runtime.current()
    try:
        rt.require_sound_model()
    except ModelUnsound as exc:
        raise RequestError(ModelUnsound.code, str(exc)) from exc
    return rt


def parse(model: type[M], raw: bytes) -> M:
    """A JSON body as ``model``, or ``invalid_request`` naming the first field that is wrong."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise RequestError("invalid_request", f"{where}: {first.get('msg')}".strip(": ")) from exc


def is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json")


def json_body(max_bytes: int, too_large: str = "image_too_large", *, exact: bool = False) -> bytes:
    kind = media_type()
    if not is_json(kind):
        raise RequestError(
            "unsupported_media_type", f"Content-Type {kind or '(none)'} is not supported: send application/json"
        )
    return request_body(max_bytes, too_large, exact=exact)


def embed_batch(rt: runtime.Runtime) -> BatchResponse:
    request = parse(EmbedRequest, request_body(rt.settings.limits.max_bytes * rt.settings.max_batch))
    if len(request.images) > rt.settings.max_batch:
        raise RequestError("too_many_images", f"{len(request.images)} images; the limit is {rt.settings.max_batch}")
    if request.store and not rt.settings.allow_store:
        raise RequestError("store_disabled", "this API does not write items (API_ALLOW_STORE=false)")
    tags = wants_tags(rt, request.tags)
    results = [one_image(rt, i, ref, request.store, tags) for i, ref in enumerate(request.images)]
    return BatchResponse(model=rt.engine.model_id, dim=rt.engine.dim, results=results)


def one_image(rt: runtime.Runtime, index: int, ref: ImageRef, store: bool, tags: bool = False) -> BatchItem:
    """One image of a batch: its embedding or its own error, never the whole request's."""
    try:
        blob = None
        if ref.data is not None:
            data = _b64decode(ref.data, f"images[{index}].data")
        else:
            blob = read_reference(rt, ref.s3 or "")
            data = blob.data
        emb = rt.embed_image(data)
    except (ImageError, RequestError) as exc:
        return BatchItem(index=index, s3=ref.s3, status=exc.http_status, error=refused(exc))
    out = BatchItem.embedded(index, emb, s3=ref.s3, tags=tags)
    if store and blob is not None:
        try:
            outcome = ingest.store(rt, blob, emb)
            out.stored = outcome in (ingest.Outcome.EMBEDDED, ingest.Outcome.DUPLICATE)
        except TransientError as exc:
            logger.warning("store failed", extra={"s3_uri": ref.s3, "error": str(exc)})
            code = "store_unavailable"
            out.stored, out.status = False, API_ERRORS[code]
            out.error = ErrorBody(code=code, message="DynamoDB write failed")
    return out


def read_reference(rt: runtime.Runtime, uri: str) -> objects.S3Blob:
    try:
        bucket, key = location.parse_uri(uri)
    except location.InvalidLocation as exc:
        raise RequestError("invalid_s3_uri", str(exc)) from exc
    if bucket not in rt.settings.allowed_buckets:
        raise RequestError("s3_bucket_not_allowed", f"bucket {bucket!r} is not one this API reads")
    try:
        return objects.read_object(rt.s3, bucket, key, max_bytes=rt.settings.limits.max_bytes)
    except location.InvalidLocation as exc:
        raise RequestError("invalid_s3_uri", str(exc)) from exc
    except (ObjectGone, ObjectChanged) as exc:
        raise RequestError("s3_not_found", f"{uri} does not exist") from exc
    except AccessDenied as exc:
        raise RequestError("s3_access_denied", f"{uri} cannot be read by this function") from exc
    except TransientError as exc:
        raise RequestError("s3_unavailable", f"{uri}: S3 is unavailable, retry later") from exc


@app.post(
    "/embed/text",
    summary="Embed texts into the images' space (CLIP's text tower)",
    description=(
        f'JSON {{"texts": [...]}} (up to {MAX_TEXTS}, each up to {MAX_TEXT_CHARS} characters) → one result per '
        "text, in order: a unit vector comparable with the image embeddings (cosine = dot product), the "
        "number of tokens kept and whether the text was truncated at CLIP's 77-token context; or that "
        "text's own error. A body over "
        f"{TEXT_BODY_MAX_BYTES:,} bytes (the largest valid request: every character as an escaped surrogate "
        "pair, plus the JSON around it; ~1.03 MB base64, within Lambda's 6 MB payload) is refused unread "
        "with 413 text_request_too_large."
    ),
    responses={
        200: {"description": "Per-text results", "content": {"application/json": {"model": TextResponse}}},
        **_ERRORS,
        501: _NOT_BUILT,
    },
    operation_id="embedText",
)
def embed_texts() -> Response[dict[str, Any]]:
    rt = sound_runtime()
    request = parse(TextRequest, json_body(TEXT_BODY_MAX_BYTES, "text_request_too_large", exact=True))
    results = [one_text(rt, i, text) for i, text in enumerate(request.texts)]
    answer = TextResponse(model=rt.engine.model_id, dim=rt.engine.dim, results=results)
    return json_response(200, answer.model_dump(exclude_none=True))


def one_text(rt: runtime.Runtime, index: int, text: str) -> TextItem:
    try:
        return TextItem.embedded(index, embed_text(rt, text))
    except TextError as exc:
        return TextItem(index=index, status=exc.http_status, error=refused(exc))


def embed_text(rt: runtime.Runtime, text: str) -> Embedding:
    """The engine's text call; a model without a text tower is the deployment's 501, not the caller's error."""
    try:
        with subsegment("engine.embed_text"):
            return rt.engine.embed_text(text)
    except ModelDirError as exc:
        raise RequestError("text_unavailable", "this deployment's model has no text tower") from exc


@app.post(
    "/search",
    summary="The k images of the vector index nearest to a text, an image or an s3 reference, or with given tags",
    description=(
        'JSON {"text": "a red bicycle"} or {"image": base64} or {"s3": "s3://bucket/key"}, with "k" (1-100, '
        'default 10), an optional key "prefix" and optional "tags" (each one required; alone, without a query, '
        'they browse: the images carrying them, ranked by the first label) → {"results": [{"key", "bucket", '
        '"score", "width", "height", "etag", "tags"}]}, best first; score is the cosine similarity. "k" is a '
        'JSON integer; an "s3" key '
        "is taken literally (no %xx decoding), as a result's key and bucket give it, and answered with the "
        "object's stored vector when its item holds this model's embedding (from the item or the index), else "
        "the object is read and embedded. An index that refuses for "
        "good (missing, another dimension, no permission) is a 502 index_misconfigured saying what to fix; "
        "one that does not answer, a 503 index_unavailable (retry)."
    ),
    responses={
        200: {"description": "The nearest images", "content": {"application/json": {"model": SearchResponse}}},
        **_ERRORS,
        501: _NOT_BUILT,
        **_INDEX_ERRORS,
    },
    operation_id="search",
)
def search() -> Response[dict[str, Any]]:
    rt = sound_runtime()
    request = parse(SearchRequest, json_body(rt.settings.limits.max_bytes * 2))
    if rt.index is None:
        raise RequestError("search_unavailable", "no vector index is configured (template VectorIndex=none)")
    truncated = None
    if request.text is not None:
        text = embed_text(rt, request.text)
        vector, truncated, kind = text.vector, text.truncated, "text"
    elif request.image is not None:
        data, kind = _b64decode(request.image, "image"), "image"
        vector = rt.embed_image(data).vector
    elif request.s3 is not None:
        kind = "s3"
        found = stored_query_vector(rt, request.s3)
        vector = found if found is not None else rt.embed_image(read_reference(rt, request.s3).data).vector
    else:
        kind = "tags"
        vector = tag_vectors(rt, request.tags or [])[0]
    tags = request.tags or []
    if tags and kind != "tags":
        tag_vectors(rt, tags)  # each one known, or 400
    try:
        with subsegment("index.query"):
            matches = rt.index.query(vector, request.k, request.prefix, tags)
    except IndexMisconfigured as exc:
        count("IndexMisconfigured")
        logger.error("the vector index refused the search for good: the deployment must change",
                     extra={"operation": exc.operation, "aws_code": exc.aws_code, "remedy": exc.remedy,
                            "error_message": exc.detail})  # fmt: skip
        message = f"the vector index refused {exc.operation} ({exc.aws_code}): {exc.remedy}"
        raise RequestError("index_misconfigured", message) from exc
    except TransientError as exc:
        raise RequestError("index_unavailable", "the vector index did not answer: retry later") from exc
    hits = [SearchHit(key=m.key, bucket=m.bucket, score=m.score, width=m.width, height=m.height, etag=m.etag,
                      tags=list(m.tags) or None) for m in matches]  # fmt: skip
    count("Searches")
    answer = SearchResponse(model=rt.engine.model_id, query=kind, truncated=truncated, results=hits)
    return json_response(200, answer.model_dump(exclude_none=True))


def tag_vectors(rt: runtime.Runtime, tags: list[str]) -> list[np.ndarray]:
    """The label vectors of a search's tags: 501 without a vocabulary, 400 for a label not in it."""
    tagger = rt.engine.tagger
    if tagger is None:
        raise RequestError("tags_unavailable", "this deployment's model was built without a label vocabulary")
    vectors = []
    for tag in tags:
        vector = tagger.vector(tag)
        if vector is None:
            raise RequestError("unknown_tag", f"{tag[:60]!r} is not a label of the model's vocabulary (GET /model)")
        vectors.append(vector)
    return vectors


def stored_query_vector(rt: runtime.Runtime, uri: str) -> np.ndarray | None:
    """An s3 query's vector as already embedded: the object's item, if it holds this model's embedding, with
    its vector from the item or the index (``handler.indexing.stored_vector``); None (embed it now) when
    there is none, or when the table or index does not answer."""
    try:
        bucket, key = location.parse_uri(uri)
    except location.InvalidLocation as exc:
        raise RequestError("invalid_s3_uri", str(exc)) from exc
    if bucket not in rt.settings.allowed_buckets:
        raise RequestError("s3_bucket_not_allowed", f"bucket {bucket!r} is not one this API reads")
    try:
        stored = rt.sink.get(item.pk(bucket, key))
        if stored is None or not stored.has_embedding or stored.attributes.get(item.MODEL) != rt.engine.model_id:
            return None
        vector, _ = indexing.stored_vector(stored, rt.index)
    except TransientError:
        return None
    if vector is not None:
        count("SearchStoredVectors")
    return vector


@app.get(
    "/model",
    summary="The model manifest, its id, dimension, input limits, and this CPU's int8 kernel path",
    operation_id="model",
)
def model() -> dict[str, Any]:
    rt = runtime.current()
    limits = rt.settings.limits
    return {
        "model": rt.engine.model_id,
        "dim": rt.engine.dim,
        "limits": {
            "max_image_bytes": limits.max_bytes,
            "max_image_pixels": limits.max_pixels,
            "max_batch_images": rt.settings.max_batch,
        },
        "cpu": rt.engine.cpu_report(),
        # Random weights or an ungated tower (served only with AllowUntrainedModel=true), or null.
        "untrained": runtime.untrained(rt.engine.manifest),
        # Did this sandbox's CPU compute the build's vectors for the canaries? (false: nothing is embedded)
        "self_check": None if rt.engine.self_check is None else rt.engine.self_check.to_dict(),
        "manifest": rt.engine.manifest.to_dict(),
        # The zero-shot tags' vocabulary (null: a model built without one).
        "tags": None
        if rt.engine.tagger is None
        else {
            "prompt": rt.engine.tagger.spec.prompt,
            "top_k": rt.engine.tagger.spec.top_k,
            "labels": rt.engine.tagger.labels,
        },
    }


@app.get(
    "/health",
    summary="Liveness: the model is loaded and passed its self-check (503 model_self_check_failed if not)",
    operation_id="health",
    responses={503: _ERRORS[503]},
)
def health() -> Health:
    rt = sound_runtime()
    return Health(status="ok", model=rt.engine.model_id, dim=rt.engine.dim)


@app.exception_handler(CodedError)
def _coded_error(exc: CodedError) -> Response:
    return json_response(exc.http_status, ErrorResponse(error=refused(exc)).model_dump())


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    return error_response(400, "invalid_request", "request does not match the API schema")


@app.not_found
def _not_found(exc: Exception) -> Response:
    path = app.current_event.path
    return error_response(404, "not_found", f"no route {app.current_event.http_method} {path}")


@app.exception_handler(Exception)
def _internal_error(exc: Exception) -> Response:
    logger.exception("unhandled error")  # the trace goes to the log, never to the client
    return error_response(500, "internal_error", "internal error")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    count("Requests")
    problem = malformed_event(event)
    if problem is not None:  # a direct invocation with a made-up event: a 400, not a crash in the router
        logger.warning("malformed API Gateway event", extra={"error_message": problem})
        record_failure("invalid_request")
        return {
            "statusCode": 400,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps(error_body("invalid_request", f"not an API Gateway HTTP API event: {problem}")),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)


def malformed_event(event: Any) -> str | None:
    """Why API Gateway (HTTP API, payload 2.0) could not have sent ``event``, or None. Powertools' parser
    model checks the shape; the flag the router reads as a truth value must really be a bool."""
    try:
        APIGatewayProxyEventV2Model.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ())) or 'event'}: {first.get('msg')}"
    except (ValueError, TypeError, AttributeError) as exc:  # some pydantic validators (IP networks) raise these
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if not isinstance(event.get("isBase64Encoded", False), bool | None):
        return "isBase64Encoded: not a boolean"
    return None
