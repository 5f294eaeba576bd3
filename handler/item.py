"""The item contract: one record per S3 object, its key, the rule that orders writes to it, its attributes and
the vector codec. Every sink stores this item; every reader (tests, the local stack, the soak) decodes it here.

Item (docs/architecture.md#the-item): ``pk`` = ``s3://{bucket}/{key}``, ``dim``, ``norm``, ``model``, ``etag``,
``version_id``, ``sequencer``, ``size``, ``width``, ``height``, ``content_type``, ``embedded_at``, ``tags``
and ``tag_scores`` (a model with a label vocabulary), plus ``order_key``, the value every conditional write
compares: a write or a delete applies only if the stored ``order_key`` is not greater, so a duplicate or late
event never replaces newer data (an equal key is the same event again and may rewrite identical data). The
vector is ``embedding`` as the deployment's ``ITEM_VECTOR`` says: ``full`` (little-endian float32 ×
``dim``), ``float16`` (little-endian float16 × ``dim``, with ``vector_format`` = ``float16``), or ``none``
(no vector in the item: it lives in the vector index alone, so the item fits one DynamoDB write unit).

A permanent input error is recorded at the same ``pk`` with ``error_code``, ``error_message``, ``failed_at``
and no ``embedding``, under the same rule: ``GetItem(pk)`` answers "what happened to this object?".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from handler import location
from layer import Embedding

# Attribute names.
PK = "pk"
ORDER_KEY = "order_key"
EMBEDDING = "embedding"
DIM = "dim"
NORM = "norm"
MODEL = "model"
ETAG = "etag"
VERSION_ID = "version_id"
SEQUENCER = "sequencer"
SIZE = "size"
WIDTH = "width"
HEIGHT = "height"
CONTENT_TYPE = "content_type"
EMBEDDED_AT = "embedded_at"
ERROR_CODE = "error_code"
ERROR_MESSAGE = "error_message"
FAILED_AT = "failed_at"
VECTOR_FORMAT = "vector_format"  # absent: float32 (the original contract)
TAGS = "tags"  # the image's zero-shot tags (labels, best first): contains(tags, :label) finds them
TAG_SCORES = "tag_scores"  # their cosine scores, in the same order
MAX_ERROR_MESSAGE = 1000
# Where an item's vector goes (ITEM_VECTOR): in the item at full precision, at half precision, or only in the
# vector index.
FULL, FLOAT16, NONE = "full", "float16", "none"
VECTOR_FORMATS = (FULL, FLOAT16, NONE)

# Sequencers are hex strings of varying length; S3 says: right-pad the shorter with zeros, then compare as
# strings. 64 digits leaves room for any sequencer S3 has produced (18-20 today).
SEQUENCER_WIDTH = 64

Attributes = dict[str, str | int | float | bytes | list[str] | list[float]]


def pk(bucket: str, key: str) -> str:
    return location.uri(bucket, key)


def order_key(sequencer: str | None, when: datetime) -> str:
    """A string that sorts in event order for one key: the sequencer where present, else the time.

    ``1…`` (sequencer) sorts after ``0…`` (time), so an event carrying S3's own ordering always wins over one
    that only has a clock (an API ``store``, or moto, which sends no sequencer)."""
    if sequencer:
        return "1" + sequencer.upper().ljust(SEQUENCER_WIDTH, "0")
    return "0" + when.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")


def encode_vector(vector: np.ndarray, fmt: str = FULL) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f2" if fmt == FLOAT16 else "<f4").tobytes()


def decode_vector(blob: bytes, fmt: str = FULL) -> np.ndarray:
    """float32, whatever it was stored as."""
    return np.frombuffer(blob, "<f2" if fmt == FLOAT16 else "<f4").astype(np.float32)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ObjectMeta:
    """What is known about the object an item describes (from the event and the GET)."""

    bucket: str
    key: str
    order_key: str
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    size: int | None = None
    content_type: str | None = None

    @property
    def pk(self) -> str:
        return pk(self.bucket, self.key)

    def attributes(self) -> Attributes:
        """The attributes every item has: key, ordering, and the object's identity where known."""
        item: Attributes = {PK: self.pk, ORDER_KEY: self.order_key}
        for name, value in ((ETAG, self.etag), (VERSION_ID, self.version_id), (SEQUENCER, self.sequencer),
                            (CONTENT_TYPE, self.content_type)):  # fmt: skip
            if value:
                item[name] = value
        if self.size is not None:
            item[SIZE] = self.size
        return item


def embedding_item(meta: ObjectMeta, emb: Embedding, vector: str = FULL) -> Attributes:
    """The item of an embedded object; ``vector``: where its vector goes (``FULL``, ``FLOAT16``, ``NONE``)."""
    held: Attributes = {}
    if vector == FULL:
        held = {EMBEDDING: encode_vector(emb.vector)}
    elif vector == FLOAT16:
        held = {EMBEDDING: encode_vector(emb.vector, FLOAT16), VECTOR_FORMAT: FLOAT16}
    if emb.tags:
        held[TAGS] = [t.label for t in emb.tags]
        held[TAG_SCORES] = [t.score for t in emb.tags]
    return {
        **meta.attributes(),
        **held,
        DIM: emb.dim,
        NORM: float(emb.norm),
        MODEL: emb.model,
        WIDTH: emb.width,
        HEIGHT: emb.height,
        EMBEDDED_AT: now_iso(),
    }


def failure_item(meta: ObjectMeta, code: str, message: str, model: str) -> Attributes:
    return {
        **meta.attributes(),
        ERROR_CODE: code,
        ERROR_MESSAGE: message[:MAX_ERROR_MESSAGE],
        MODEL: model,
        FAILED_AT: now_iso(),
    }


@dataclass(frozen=True)
class StoredItem:
    """An item as a sink reads it back, with the two questions the writer asks of it."""

    attributes: Mapping[str, Any]

    @property
    def pk(self) -> str:
        return str(self.attributes.get(PK, ""))

    @property
    def order_key(self) -> str:
        return str(self.attributes.get(ORDER_KEY, ""))

    @property
    def has_embedding(self) -> bool:
        """The object was embedded (whether or not the item holds the vector: ``ITEM_VECTOR=none``)."""
        return EMBEDDED_AT in self.attributes or EMBEDDING in self.attributes

    @property
    def vector(self) -> np.ndarray | None:
        """The vector as float32, if the item holds one (None for a lean item or a failure record)."""
        blob = self.attributes.get(EMBEDDING)
        return None if blob is None else decode_vector(blob, str(self.attributes.get(VECTOR_FORMAT, FULL)))

    def is_newer_than(self, order: str) -> bool:
        """The item holds a later event's data than the event with ``order``: that event must not write."""
        return self.order_key > order

    def holds(self, etag: str | None) -> bool:
        """The item describes these bytes (whatever the model or outcome)."""
        return bool(etag) and self.attributes.get(ETAG) == etag

    def is_duplicate(self, etag: str | None, model: str) -> bool:
        """Already done: these bytes embedded by this model, or these bytes failed (they would fail again)."""
        if not etag or self.attributes.get(ETAG) != etag:
            return False
        if self.has_embedding:
            return self.attributes.get(MODEL) == model
        return ERROR_CODE in self.attributes


def dynamodb_item_bytes(attributes: Attributes) -> int:
    """The item's size as DynamoDB counts it (names' UTF-8 lengths plus values': strings in UTF-8, binaries as
    stored, numbers ~1 byte per 2 significant digits + 1), which sets its write units: one per started KB."""
    size = 0
    for name, value in attributes.items():
        size += len(name.encode())
        size += _value_bytes(value)
    return size


def _value_bytes(value: Any) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):  # 3 bytes for the list, 1 per element, plus the elements
        return 3 + sum(1 + _value_bytes(v) for v in value)
    digits = len(repr(value).replace("-", "").replace(".", "").lstrip("0")) or 1
    return (digits + 1) // 2 + 1


def write_units(attributes: Attributes) -> int:
    return max(1, -(-dynamodb_item_bytes(attributes) // 1024))
