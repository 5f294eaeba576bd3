"""The vector index: every embedding of the table, searchable by similarity (Amazon S3 Vectors).

DynamoDB stays the record (ordering, idempotency, failures); the index follows it (``handler.indexing``).
One vector per object, keyed by the item's ``pk`` (``s3://bucket/key``), float32, in a cosine index of the
model's dimension (template parameter ``EmbeddingDimension``, checked against the model at INIT and deploy).

Metadata of a vector:

- filterable: ``bucket``, ``model``, ``etag``, and ``dirs``, the key's directory prefixes (``a/b/c.jpg`` →
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
before a model change, until the backfill re-embeds them) are not comparable with the query's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from handler.errors import TransientError
from handler.item import ObjectMeta
from handler.observability import subsegment, timed
from layer import Embedding

if TYPE_CHECKING:
    from handler.settings import Settings

# Metadata keys.
BUCKET = "bucket"
KEY = "key"
DIRS = "dirs"
MODEL = "model"
ETAG = "etag"
WIDTH = "width"
HEIGHT = "height"
NON_FILTERABLE = (KEY, WIDTH, HEIGHT)  # template.yaml's MetadataConfiguration, and the local stack's index

DISTANCE = "cosine"
MAX_TOP_K = 100  # QueryVectors' topK limit
MAX_VECTOR_KEY = 1024  # a vector key's length limit
# Filterable metadata is at most 2 KB a vector; bucket (≤ 63), model and etag take the rest.
DIRS_BUDGET = 1536


@dataclass(frozen=True)
class Match:
    """One result of a query, best first.

    ``score`` is the cosine similarity (1 = same direction, -1 = opposite): S3 Vectors answers a cosine
    *distance*, 1 - similarity, which ``query`` converts back."""

    key: str  # the object key (not the pk)
    bucket: str
    score: float
    width: int
    height: int
    etag: str


@dataclass(frozen=True)
class Entry:
    """What the index holds for one object, enough to tell whether it is the item's vector (the vector is a
    function of the bytes and the model)."""

    etag: str
    model: str


class VectorIndex(Protocol):
    """Every method raises ``handler.errors.TransientError`` when the index fails (throttled, 5xx,
    unreachable, refused): the record is retried, as for the table."""

    def put(self, meta: ObjectMeta, emb: Embedding) -> None:
        """Write (or overwrite) the object's vector: idempotent."""
        ...

    def delete(self, pk: str) -> None:
        """Remove the object's vector (absent is fine)."""
        ...

    def held(self, pk: str) -> Entry | None:
        """What the index holds for the object now, or None."""
        ...

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None) -> list[Match]:
        """The ``k`` (1-100) vectors nearest to ``vector`` of this deployment's model, under the key prefix
        ``prefix`` if given (see the module docstring for how a prefix is answered), best first."""
        ...


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
    return md


def connect(settings: Settings, session: Any, client_config: Any, model: str) -> S3VectorsIndex | None:
    """The index ``VECTOR_BUCKET``/``VECTOR_INDEX`` name (None when either is empty: no index)."""
    if not (settings.vector_bucket and settings.vector_index):
        return None
    client = session.create_client("s3vectors", config=client_config)
    return S3VectorsIndex(client, settings.vector_bucket, settings.vector_index, model)


class S3VectorsIndex:
    """One PutVectors / DeleteVectors / GetVectors per object: each index write follows its own item's
    conditional write and is checked against the item right after (``handler.indexing``), and a failure
    fails just that record, as SQS's partial batch responses want. (A PutVectors per batch would save
    requests, not vectors: S3 Vectors' write limits count vectors too.)"""

    def __init__(self, client: Any, bucket: str, index: str, model: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.index = index
        self.model = model  # the only model ``query`` answers (None: any)

    def _call(self, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, operation)
        try:
            with subsegment(f"s3vectors.{operation}"), timed("IndexTime"):
                response: dict[str, Any] = method(vectorBucketName=self.bucket, indexName=self.index, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"S3 Vectors {operation} {what}: {exc}") from exc
        return response

    def put(self, meta: ObjectMeta, emb: Embedding) -> None:
        data = np.asarray(emb.vector, dtype=np.float32).tolist()  # exact: every float32 is a float
        vector = {"key": vector_key(meta.pk), "data": {"float32": data}, "metadata": metadata(meta, emb)}
        self._call("put_vectors", meta.pk, vectors=[vector])

    def delete(self, pk: str) -> None:
        self._call("delete_vectors", pk, keys=[vector_key(pk)])

    def held(self, pk: str) -> Entry | None:
        got = self._call("get_vectors", pk, keys=[vector_key(pk)], returnMetadata=True)["vectors"]
        if not got:
            return None
        md = got[0].get("metadata") or {}
        return Entry(etag=str(md.get(ETAG, "")), model=str(md.get(MODEL, "")))

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None) -> list[Match]:
        if not 1 <= k <= MAX_TOP_K:
            raise ValueError(f"k must be 1-{MAX_TOP_K}, got {k}")
        directory, exact = prefix_filter(prefix)
        conditions: list[dict[str, Any]] = []
        if self.model:
            conditions.append({MODEL: {"$eq": self.model}})
        if directory:
            conditions.append({DIRS: {"$eq": directory}})
        kwargs: dict[str, Any] = {
            "topK": k if exact else MAX_TOP_K,
            "queryVector": {"float32": np.asarray(vector, dtype=np.float32).tolist()},
            "returnMetadata": True,
            "returnDistance": True,
        }
        if conditions:
            kwargs["filter"] = conditions[0] if len(conditions) == 1 else {"$and": conditions}
        found = self._call("query_vectors", prefix or "(all)", **kwargs)["vectors"]
        matches = [_match(v) for v in found]
        if not exact:
            matches = [m for m in matches if m.key.startswith(prefix or "")]
        return matches[:k]


def _match(vector: dict[str, Any]) -> Match:
    md = vector.get("metadata") or {}
    return Match(
        key=str(md.get(KEY, "")),
        bucket=str(md.get(BUCKET, "")),
        score=1.0 - float(vector.get("distance", 1.0)),
        width=int(md.get(WIDTH, 0)),
        height=int(md.get(HEIGHT, 0)),
        etag=str(md.get(ETAG, "")),
    )
