"""The vector index: every embedding of the table, searchable by similarity (Amazon S3 Vectors).

DynamoDB stays the record (ordering, idempotency, failures); the index follows it (``handler.indexing``).
One vector per object, keyed by the item's ``pk`` (``s3://bucket/key``), float32, in a cosine index of the
model's dimension (template parameter ``EmbeddingDimension``, checked against the model at INIT and deploy).

Metadata of a vector:

- filterable: ``bucket``, ``model``, ``etag``, ``tags`` (the image's zero-shot tags, at most ``MAX_TAGS``;
  ``{"tags": {"$eq": "dog"}}`` is "tagged dog"), and ``dirs``, the key's directory prefixes (``a/b/c.jpg`` →
  ``["a/", "a/b/"]``). S3 Vectors filters have no string-prefix operator, but ``$eq`` on a list matches if
  any element is equal, so ``{"dirs": {"$eq": "a/"}}`` is "under a/". Limits: filterable metadata is at most
  2 KB a vector, so ``dirs`` keeps the directories of the key while their total stays within
  ``DIRS_BUDGET`` bytes (the deepest of a very long path are not stored). A prefix is answered by filtering
  on its deepest stored directory: exact when the prefix is that directory (ends in ``/``, within the
  budget); otherwise (``a/b/ca``, or deeper than the budget) the ``MAX_TOP_K`` nearest in that directory are
  filtered by the whole prefix, which can return fewer than ``k`` when more than that many outrank them.
- non-filterable (the index's ``nonFilterableMetadataKeys``): ``key`` (the object key, up to 1 KB, which
  would not fit the filterable budget), ``width``, ``height``.

``query`` answers only vectors of the model this deployment embeds with: another model's vectors (left from
before a model change, until the backfill re-embeds them) are not comparable with the query's. Each vector a
query returns is checked before it becomes a ``Match``: one without a usable bucket and key, with a width or
height that is not an integer, or without a numeric distance (not written by this code, or damaged) is
skipped, logged and counted (``IndexBadRecords``), so a query may return fewer than ``k``.

Failures are split by what fixes them: throttling, 5xx, timeouts and unreachable endpoints raise
``TransientError`` (a retry may succeed); every other refusal (``ValidationException``, such as an index of
another dimension, ``NotFoundException``, ``AccessDeniedException``, KMS and quota errors...) raises
``IndexMisconfigured``, which names the operation, the AWS error code and what to change in the deployment.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)

from handler import location
from handler.errors import IndexMisconfigured, TransientError
from handler.item import ObjectMeta
from handler.observability import count, logger, subsegment, timed
from layer import Embedding

if TYPE_CHECKING:
    from botocore.config import _RetryDict

    from handler.settings import Settings

# Metadata keys.
BUCKET = "bucket"
KEY = "key"
DIRS = "dirs"
MODEL = "model"
ETAG = "etag"
WIDTH = "width"
HEIGHT = "height"
TAGS = "tags"  # the image's zero-shot tags (labels, best first): {"tags": {"$eq": label}} finds them
NON_FILTERABLE = (KEY, WIDTH, HEIGHT)  # template.yaml's MetadataConfiguration, and the local stack's index

DISTANCE = "cosine"
MAX_TOP_K = 100  # QueryVectors' topK limit
MAX_WRITE_BATCH = 500  # vectors per PutVectors, keys per DeleteVectors
MAX_READ_BATCH = 100  # keys per GetVectors
# The index's write limits (per index): the backfill's concurrency and batch size are derived from them
# (docs/operations.md#backfill), and throttling beyond them is retried by the client (RETRIES).
WRITE_VECTORS_PER_S = 2_500
WRITE_REQUESTS_PER_S = 1_000
# The index's client retries throttling with backoff, adaptive mode adding a client-side rate limiter that
# slows this sandbox down while the index throttles it: a backfill at the index's limit settles there
# instead of failing batches. 8 attempts ≈ 20 s of backoff at most, within any batch's time.
RETRIES: _RetryDict = {"mode": "adaptive", "max_attempts": 8}
MAX_VECTOR_KEY = 1024  # a vector key's length limit
# Filterable metadata is at most 2 KB a vector; bucket (≤ 63), model, etag and the tags (≤ MAX_TAGS labels of
# ≤ 40 bytes) take the rest.
DIRS_BUDGET = 1280
MAX_TAGS = 5

# Error codes a retry may fix (with HTTP 408, 429 and every 5xx, whatever their code); any other refusal is
# permanent. S3 Vectors' own: TooManyRequestsException (429), ServiceUnavailableException (503),
# InternalServerException (500), RequestTimeoutException (408); the rest are the generic AWS spellings.
THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
TRANSIENT_CODES = THROTTLING_CODES | frozenset(
    {
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "RequestTimeoutException",
        "RequestTimeout",
        "ExpiredTokenException",  # the role's session rotated under the request: new credentials fix it
        "ExpiredToken",
        "RequestExpired",
    }
)
# botocore errors raised before any request is sent: the same call fails again.
_PERMANENT_BOTOCORE = (ParamValidationError, NoRegionError, NoCredentialsError)
# "…must have length 768, but has length 512" (PutVectors), "…the index has 768" (the local QueryVectors).
_INDEX_DIMENSION = re.compile(
    r"(?:vector must have (?:length|dimension)|index has|index dimension(?: is| of)?)\s*:?\s*(\d+)", re.I
)


@dataclass(frozen=True)
class Match:
    """One result of a query, best first.

    ``score`` is the cosine similarity (1 = same direction, -1 = opposite): S3 Vectors answers a cosine
    *distance*, 1 - similarity, which ``query`` converts back. ``width``, ``height`` and ``etag`` are None
    where the vector's metadata does not hold them."""

    key: str  # the object key (not the pk)
    bucket: str
    score: float
    width: int | None
    height: int | None
    etag: str | None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """What the index holds for one object, enough to tell whether it is the item's vector (the vector is a
    function of the bytes and the model)."""

    etag: str
    model: str


class VectorIndex(Protocol):
    """Every method raises ``handler.errors.TransientError`` when the index fails in a way a retry may fix
    (throttled after the client's retries, 5xx, timed out, unreachable), and
    ``handler.errors.IndexMisconfigured`` (a subclass) when it refuses for good (no such index, another
    dimension, no permission): the records concerned are kept either way. The ``*_many`` methods make one
    request: callers cut their writes to ``MAX_WRITE_BATCH`` and their reads to ``MAX_READ_BATCH``."""

    def put_many(self, vectors: Sequence[tuple[ObjectMeta, Embedding]]) -> None:
        """Write (or overwrite) the objects' vectors in one request: idempotent."""
        ...

    def delete_many(self, pks: Sequence[str]) -> None:
        """Remove the objects' vectors in one request (absent ones are fine)."""
        ...

    def held_many(self, pks: Sequence[str]) -> dict[str, Entry | None]:
        """What the index holds for each object now (None: nothing), in one request."""
        ...

    def vectors(self, pks: Sequence[str]) -> dict[str, Stored]:
        """The objects' vectors with what they were written for, in one request (absent ones are left out)."""
        ...

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None, tags: Sequence[str] = ()) -> list[Match]:
        """The ``k`` (1-100) vectors nearest to ``vector`` of this deployment's model, under the key prefix
        ``prefix`` if given (see the module docstring for how a prefix is answered) and tagged with every one
        of ``tags``, best first."""
        ...


@dataclass(frozen=True)
class Stored:
    """A vector as the index holds it."""

    entry: Entry
    vector: np.ndarray


def vector_key(pk: str) -> str:
    """The index key of an object: its pk, or for a pk over the key limit (an S3 key near its own 1 KB
    limit) a digest of it; the object key itself is always in the metadata."""
    if len(pk.encode()) <= MAX_VECTOR_KEY:
        return pk
    return "sha256:" + hashlib.sha256(pk.encode()).hexdigest()


def directories(key: str) -> list[str]:
    """The directory prefixes of a key, shallowest first, while their total stays within ``DIRS_BUDGET``."""
    dirs: list[str] = []
    used = 0
    for i, char in enumerate(key):
        if char == "/":
            used += len(key[: i + 1].encode())
            if used > DIRS_BUDGET:
                break
            dirs.append(key[: i + 1])
    return dirs


def prefix_filter(prefix: str | None) -> tuple[str, bool]:
    """``(directory, exact)``: the stored directory a prefix is filtered on ("" for none), and whether that
    filter is the whole prefix (else the results are filtered by the prefix after the query)."""
    if not prefix:
        return "", True
    directory = (directories(prefix) or [""])[-1]
    return directory, directory == prefix


def metadata(meta: ObjectMeta, emb: Embedding) -> dict[str, Any]:
    md: dict[str, Any] = {BUCKET: meta.bucket, KEY: meta.key, MODEL: emb.model, WIDTH: emb.width, HEIGHT: emb.height}
    if meta.etag:
        md[ETAG] = meta.etag
    if dirs := directories(meta.key):  # none for a key at the bucket's root
        md[DIRS] = dirs
    if emb.tags:
        md[TAGS] = [t.label for t in emb.tags[:MAX_TAGS]]
    return md


def connect(settings: Settings, session: Any, client_config: Any, model: str) -> S3VectorsIndex | None:
    """The index ``VECTOR_BUCKET``/``VECTOR_INDEX`` name (None when either is empty: no index)."""
    if not (settings.vector_bucket and settings.vector_index):
        return None
    config = client_config.merge(Config(retries=RETRIES)) if client_config is not None else Config(retries=RETRIES)
    client = session.create_client("s3vectors", config=config)
    return S3VectorsIndex(client, settings.vector_bucket, settings.vector_index, model)


def count_throttles(client: Any) -> None:
    """Count every throttled response of ``client`` (``IndexThrottled``), retried or not: botocore calls
    ``needs-retry`` handlers with each attempt's response before its retry handler decides."""

    def on_response(response: Any = None, **_: Any) -> None:
        if not response:
            return
        http, parsed = response
        error = parsed.get("Error") if isinstance(parsed, dict) else None
        code = str((error or {}).get("Code") or "")
        if getattr(http, "status_code", None) in (429, 503) or code in THROTTLING_CODES:
            count("IndexThrottled")

    meta = getattr(client, "meta", None)  # a botocore client (not a test's stand-in)
    if meta is not None:
        meta.events.register_first("needs-retry.s3vectors", on_response)


class S3VectorsIndex:
    """The index over S3 Vectors' API: writes and reads of many vectors a request (``handler.indexing``
    batches an invocation's changes), ``query`` one request."""

    def __init__(self, client: Any, bucket: str, index: str, model: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.index = index
        self.model = model  # the only model ``query`` answers (None: any)
        count_throttles(client)

    def _call(self, operation: str, what: str, dim: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """``operation`` on the index; ``dim``: the length of the vector sent, to name a dimension mismatch."""
        method = getattr(self.client, operation)
        try:
            with subsegment(f"s3vectors.{operation}"), timed("IndexTime"):
                response: dict[str, Any] = method(vectorBucketName=self.bucket, indexName=self.index, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self.classify(exc, operation, what, dim) from exc
        return response

    def classify(self, exc: ClientError | BotoCoreError, operation: str, what: str, dim: int | None) -> TransientError:
        """``TransientError`` for what a retry may fix, ``IndexMisconfigured`` (with its remedy) for the rest."""
        api = "".join(part.capitalize() for part in operation.split("_"))  # put_vectors → PutVectors
        if isinstance(exc, BotoCoreError):
            if isinstance(exc, _PERMANENT_BOTOCORE):
                remedy = f"the request could not be sent ({type(exc).__name__}): fix the function's configuration"
                return IndexMisconfigured(api, type(exc).__name__, remedy, str(exc)[:300])
            return TransientError(f"S3 Vectors {api} {what}: {exc}")  # connection refused/reset, timeouts
        response: dict[str, Any] = dict(exc.response)
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in TRANSIENT_CODES or status in (408, 429) or (isinstance(status, int) and status >= 500):
            return TransientError(f"S3 Vectors {api} {what}: {code or status}: {message}")
        return IndexMisconfigured(api, code or str(status), self.remedy(api, code, message, dim), message[:300])

    def remedy(self, api: str, code: str, message: str, dim: int | None) -> str:
        """What to change in the deployment for a permanent refusal."""
        where = f"the index {self.index!r} of the vector bucket {self.bucket!r}"
        if code == "NotFoundException":
            return (
                f"{where} does not exist: deploy the stack's index (VECTOR_BUCKET/VECTOR_INDEX name it) or set "
                "VectorIndex=none"
            )
        if code in ("AccessDeniedException", "AccessDenied"):
            return (
                f"this function's role may not call s3vectors:{api} on {where}: grant it (the template's policy "
                "does) or set VectorIndex=none"
            )
        if code == "ValidationException":
            found = _INDEX_DIMENSION.search(message)
            held = int(found.group(1)) if found else None
            if held is not None and dim is not None and held != dim:
                return (
                    f"the index holds {held}-d vectors, the model makes {dim}-d: deploy with --parameter-overrides "
                    f"EmbeddingDimension={dim} (a new index of the model's dimension), then run the backfill"
                )
            return f"{where} refused the request ({message[:200] or 'no detail'}): check that it is the stack's index"
        if code.startswith("Kms"):
            return f"the KMS key of {where} cannot be used ({code}): enable it or let the function's role use it"
        if code == "ServiceQuotaExceededException":
            return f"an S3 Vectors quota of {where} is used up: raise it (Service Quotas) or remove vectors"
        return f"{where} refused the request ({code}: {message[:200] or 'no detail'}): fix the deployment"

    def put_many(self, vectors: Sequence[tuple[ObjectMeta, Embedding]]) -> None:
        _check_batch(len(vectors), MAX_WRITE_BATCH, "PutVectors")
        body = [
            {
                "key": vector_key(meta.pk),
                "data": {"float32": np.asarray(emb.vector, dtype=np.float32).tolist()},  # exact: float32 ⊂ float
                "metadata": metadata(meta, emb),
            }
            for meta, emb in vectors
        ]
        dim = int(np.asarray(vectors[0][1].vector).size)
        self._call("put_vectors", _what(vectors[0][0].pk, len(vectors)), dim, vectors=body)

    def delete_many(self, pks: Sequence[str]) -> None:
        _check_batch(len(pks), MAX_WRITE_BATCH, "DeleteVectors")
        self._call("delete_vectors", _what(pks[0], len(pks)), keys=[vector_key(pk) for pk in pks])

    def _get(self, pks: Sequence[str], data: bool) -> dict[str, dict[str, Any]]:
        _check_batch(len(pks), MAX_READ_BATCH, "GetVectors")
        by_key = {vector_key(pk): pk for pk in pks}
        got = self._call("get_vectors", _what(pks[0], len(pks)), keys=list(by_key), returnMetadata=True,
                         returnData=data)["vectors"]  # fmt: skip
        return {by_key[v["key"]]: v for v in got if isinstance(v, dict) and v.get("key") in by_key}

    def held_many(self, pks: Sequence[str]) -> dict[str, Entry | None]:
        got = self._get(pks, data=False)
        return {pk: _entry(got[pk]) if pk in got else None for pk in pks}

    def vectors(self, pks: Sequence[str]) -> dict[str, Stored]:
        out: dict[str, Stored] = {}
        for pk, v in self._get(pks, data=True).items():
            data = (v.get("data") or {}).get("float32")
            if isinstance(data, list) and data:
                out[pk] = Stored(_entry(v), np.asarray(data, dtype=np.float32))
        return out

    # One object at a time (the API, repairs and tests).
    def put(self, meta: ObjectMeta, emb: Embedding) -> None:
        self.put_many([(meta, emb)])

    def delete(self, pk: str) -> None:
        self.delete_many([pk])

    def held(self, pk: str) -> Entry | None:
        return self.held_many([pk])[pk]

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None, tags: Sequence[str] = ()) -> list[Match]:
        if not 1 <= k <= MAX_TOP_K:
            raise ValueError(f"k must be 1-{MAX_TOP_K}, got {k}")
        directory, exact = prefix_filter(prefix)
        conditions: list[dict[str, Any]] = []
        if self.model:
            conditions.append({MODEL: {"$eq": self.model}})
        if directory:
            conditions.append({DIRS: {"$eq": directory}})
        conditions += [{TAGS: {"$eq": tag}} for tag in tags]
        data = np.asarray(vector, dtype=np.float32).tolist()
        kwargs: dict[str, Any] = {
            "topK": k if exact else MAX_TOP_K,
            "queryVector": {"float32": data},
            "returnMetadata": True,
            "returnDistance": True,
        }
        if conditions:
            kwargs["filter"] = conditions[0] if len(conditions) == 1 else {"$and": conditions}
        found = self._call("query_vectors", prefix or "(all)", len(data), **kwargs).get("vectors") or []
        matches = [m for m in map(_match, found) if m is not None]
        if not exact:
            matches = [m for m in matches if m.key.startswith(prefix or "")]
        return matches[:k]


def _entry(vector: dict[str, Any]) -> Entry:
    md = vector.get("metadata")
    md = md if isinstance(md, dict) else {}  # other metadata than ours: not the item's vector, repaired
    return Entry(etag=str(md.get(ETAG, "")), model=str(md.get(MODEL, "")))


def _what(first: str, n: int) -> str:
    """A request's subject in error messages: its object, or the first of its n."""
    return first if n == 1 else f"{first} and {n - 1} more"


def _check_batch(n: int, limit: int, api: str) -> None:
    if not 1 <= n <= limit:
        raise ValueError(f"{api} takes 1-{limit} keys a request, got {n}")


class BadRecord(ValueError):
    """A vector whose metadata or distance is not what ``put`` writes."""


def _size(md: dict[str, Any], name: str) -> int | None:
    """A width or height: absent is None; else a non-negative integer (an integral float too: a JSON
    number may come back as 640.0), never a bool, a string or null."""
    if name not in md:
        return None
    value = md[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRecord(f"{name} is {value!r}, not an integer")
    if (isinstance(value, float) and not value.is_integer()) or value < 0:
        raise BadRecord(f"{name} is {value!r}, not a non-negative integer")
    return int(value)


def _checked(vector: Any) -> Match:
    if not isinstance(vector, dict):
        raise BadRecord(f"a result that is not an object: {type(vector).__name__}")
    md = vector.get("metadata")
    if not isinstance(md, dict):
        raise BadRecord("no metadata")
    try:
        bucket, key = location.check(md.get(BUCKET), md.get(KEY))
    except location.InvalidLocation as exc:
        raise BadRecord(f"no usable bucket and key: {exc}") from exc
    distance = vector.get("distance")
    if isinstance(distance, bool) or not isinstance(distance, int | float) or not math.isfinite(distance):
        raise BadRecord(f"distance is {distance!r}, not a number")
    etag = md.get(ETAG)
    if etag is not None and not isinstance(etag, str):
        raise BadRecord(f"etag is {etag!r}, not a string")
    tags = md.get(TAGS)
    tags = tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()
    return Match(key=key, bucket=bucket, score=1.0 - float(distance), width=_size(md, WIDTH),
                 height=_size(md, HEIGHT), etag=etag, tags=tags)  # fmt: skip


def _match(vector: Any) -> Match | None:
    """A query's result as a ``Match``, or None (logged and counted) for a record ``put`` did not write."""
    try:
        return _checked(vector)
    except BadRecord as exc:
        vkey = vector.get("key") if isinstance(vector, dict) else None
        count("IndexBadRecords")
        logger.warning("index record skipped: not a vector this function wrote",
                       extra={"vector_key": str(vkey)[:1100], "reason": str(exc)[:300]})  # fmt: skip
        return None
