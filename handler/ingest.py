"""One object event → engine → sink (→ vector index): the S3 function's work for each record, and the API's
``store``.

Outcomes are values (``Result``); only ``TransientError`` escapes, so the caller can fail just that record.
Where a vector index is configured it follows each table write (``handler.indexing``); the API's ``store``
leaves it alone (the API may not write the index): those items are indexed by their object's S3 event, or
as duplicates by the backfill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from handler import indexing, item, objects
from handler.errors import AccessDenied, ObjectChanged, ObjectGone, TransientError
from handler.events import Action, ObjectEvent
from handler.item import ObjectMeta, StoredItem
from handler.observability import count, logger, record_failure
from handler.runtime import Runtime
from layer import Embedding, ImageError, ImageTooLarge


class Outcome(StrEnum):
    EMBEDDED = "embedded"  # item written
    DELETED = "deleted"  # item removed (or was already absent)
    DUPLICATE = "duplicate"  # the item already holds this ETag embedded by this model
    STALE = "stale"  # the item holds a newer event's data: nothing written
    GONE = "gone"  # the object was deleted before it was read
    CHANGED = "changed"  # the object was replaced before it was read: its own event will follow
    FAILED = "failed"  # permanent input error, recorded at the item's pk


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    uri: str
    code: str | None = None


@dataclass(frozen=True)
class Fetched:
    """What ``fetch`` read for an object still to embed: the bytes, or the permanent error that refuses it."""

    meta: ObjectMeta
    data: bytes = b""
    error: ImageError | None = None


@dataclass(frozen=True)
class Unindexed:
    """A duplicate whose vector the index does not hold (an earlier attempt failed between the table and the
    index, or the item predates the index): ``finish`` makes the index follow ``stored``."""

    result: Result
    stored: StoredItem


# A create event's I/O before the engine: a terminal Result, the object to embed, or an index to repair.
Fetch = Callable[[], "Result | Fetched | Unindexed"]


def handle(ev: ObjectEvent, rt: Runtime, fetched: Fetch | None = None) -> Result:
    """``fetched``: this event's ``fetch``, already started (``handler.prefetch``); else it runs here."""
    with logger.append_context_keys(s3_uri=ev.uri, event_name=ev.event_name, order_key=ev.order_key):
        t0 = time.perf_counter()
        if ev.action is Action.REMOVED:
            result = remove(ev, rt)  # writes no vector: a model that failed its self-check may still delete
        else:
            rt.require_sound_model()
            result = finish(ev, rt, fetched() if fetched else fetch(ev, rt))
        count(f"Objects{result.outcome.value.capitalize()}")
        duration_ms = round((time.perf_counter() - t0) * 1e3, 1)  # read + embed + write of this object
        logger.info(
            "object processed", extra={"outcome": result.outcome.value, "code": result.code, "duration_ms": duration_ms}
        )
        return result


def remove(ev: ObjectEvent, rt: Runtime) -> Result:
    deleted = rt.sink.delete(ev.uri, ev.order_key)
    if deleted:
        follow(rt, indexing.Delete(ev.uri))
    return Result(Outcome.DELETED if deleted else Outcome.STALE, ev.uri)


def follow(rt: Runtime, change: indexing.Change) -> None:
    """The index side of a table write that was just applied (nothing without an index)."""
    if rt.index is not None:
        indexing.follow(rt.sink, rt.index, change)


def duplicate(rt: Runtime, pk: str, stored: StoredItem) -> Result | Unindexed:
    """Already done, if the index (where there is one) holds the item's vector too: a read only."""
    done = Result(Outcome.DUPLICATE, pk)
    if rt.index is None or rt.index.held(pk) == indexing.expected(stored):
        return done
    return Unindexed(done, stored)


def fetch(ev: ObjectEvent, rt: Runtime) -> Result | Fetched | Unindexed:
    """Reads only (safe to run ahead, in another thread): the stored item's checks, then the object (or,
    over the size limit, its HEAD). Writes nothing: ordering and idempotency are decided by ``finish``'s
    conditional writes, these checks only skip work."""
    meta = ObjectMeta(
        bucket=ev.bucket,
        key=ev.key,
        order_key=ev.order_key,
        etag=ev.etag,
        version_id=ev.version_id,
        sequencer=ev.sequencer,
        size=ev.size,
    )
    stored = rt.sink.get(meta.pk)
    if stored is not None and ev.source == "backfill":
        # A backfill's listing is ordered by LastModified, before any S3 event's sequencer: it fills gaps and
        # re-embeds the same bytes with a new model (keeping the item's place in the order), nothing else.
        if stored.is_duplicate(ev.etag, rt.engine.model_id):
            return duplicate(rt, meta.pk, stored)
        if stored.is_newer_than(meta.order_key):
            if not stored.holds(ev.etag):
                return Result(Outcome.STALE, meta.pk)
            meta = replace(meta, order_key=stored.order_key)
    elif stored is not None:
        if stored.is_newer_than(meta.order_key):
            return Result(Outcome.STALE, meta.pk)
        if stored.is_duplicate(ev.etag, rt.engine.model_id):
            return duplicate(rt, meta.pk, stored)

    max_bytes = rt.settings.limits.max_bytes
    if ev.size is not None and ev.size > max_bytes:  # refused without downloading, if it exists at all
        try:
            head = objects.head_object(rt.s3, ev.bucket, ev.key, etag=ev.etag, version_id=ev.version_id)
        except ObjectGone:
            return Result(Outcome.GONE, meta.pk)
        except ObjectChanged:
            return Result(Outcome.CHANGED, meta.pk)
        except AccessDenied as exc:
            raise TransientError(str(exc)) from exc
        meta = replace(meta, etag=head.etag or meta.etag, version_id=head.version_id or meta.version_id,
                       size=head.size, content_type=head.content_type)  # fmt: skip
        return Fetched(meta, error=ImageTooLarge(f"object is {head.size} bytes; the limit is {max_bytes}"))
    try:
        blob = objects.read_object(
            rt.s3, ev.bucket, ev.key, max_bytes=max_bytes, etag=ev.etag, version_id=ev.version_id
        )
    except ObjectGone:
        return Result(Outcome.GONE, meta.pk)
    except ObjectChanged:
        return Result(Outcome.CHANGED, meta.pk)
    except AccessDenied as exc:  # a permissions problem someone can fix: retry, then the DLQ keeps it
        raise TransientError(str(exc)) from exc
    except ImageTooLarge as exc:
        return Fetched(meta, error=exc)
    meta = replace(
        meta,
        etag=blob.etag or meta.etag,
        version_id=blob.version_id or meta.version_id,
        size=blob.size,
        content_type=blob.content_type,
    )
    return Fetched(meta, blob.data)


def finish(ev: ObjectEvent, rt: Runtime, fetched: Result | Fetched | Unindexed) -> Result:
    """The engine and the writes, in event order: embed, conditional put (or the failure record), the index,
    confirm."""
    if isinstance(fetched, Result):
        return fetched
    if isinstance(fetched, Unindexed):
        if rt.index is not None:
            indexing.repair(rt.sink, rt.index, fetched.result.uri, fetched.stored)
        return fetched.result
    meta = fetched.meta
    if fetched.error is not None:
        return fail(rt, ev, meta, fetched.error)
    try:
        emb = rt.embed_image(fetched.data)
    except ImageError as exc:
        return fail(rt, ev, meta, exc)
    if not rt.sink.put_embedding(meta, emb):
        return Result(Outcome.STALE, meta.pk)
    follow(rt, indexing.Put(meta, emb))
    return confirm(ev, rt, meta, Result(Outcome.EMBEDDED, meta.pk))


def confirm(ev: ObjectEvent, rt: Runtime, meta: ObjectMeta, written: Result) -> Result:
    """Close the race with a delete that happened while we read and embedded: its event may already have
    run and found nothing to delete. If the key is gone now, take our item back out (only if still ours),
    so that no item, embedding or failure record, outlives its object."""
    if not objects.exists(rt.s3, ev.bucket, ev.key):
        if rt.sink.delete(meta.pk, meta.order_key):
            follow(rt, indexing.Delete(meta.pk))
        return Result(Outcome.GONE, meta.pk)
    return written


def fail(rt: Runtime, ev: ObjectEvent, meta: ObjectMeta, exc: ImageError) -> Result:
    """A permanent input error: log it with the key, count it, record it at the item's pk; no retry."""
    logger.warning("image rejected", extra={"s3_uri": meta.pk, "error_code": exc.code, "error_message": exc.message})
    record_failure(exc.code)
    failed = Result(Outcome.FAILED, meta.pk, exc.code)
    if not rt.settings.record_failures:
        return failed
    if not rt.sink.put_failure(meta, exc.code, exc.message, rt.engine.model_id):
        return Result(Outcome.STALE, meta.pk)
    follow(rt, indexing.Delete(meta.pk))  # a failure record holds no vector: nor does the index
    return confirm(ev, rt, meta, failed)


def store(rt: Runtime, blob: objects.S3Blob, emb: Embedding) -> Outcome:
    """The API's ``store``: the item the S3 function would write, ordered by the object's LastModified
    (no sequencer outside an S3 event, so any S3 event for the object takes precedence)."""
    meta = ObjectMeta(
        bucket=blob.bucket,
        key=blob.key,
        order_key=item.order_key(None, blob.last_modified),
        etag=blob.etag,
        version_id=blob.version_id,
        size=blob.size,
        content_type=blob.content_type,
    )
    if rt.sink.put_embedding(meta, emb):
        return Outcome.EMBEDDED
    stored = rt.sink.get(meta.pk)  # a newer event's item: the same bytes and model count as stored
    if stored is not None and stored.has_embedding and stored.is_duplicate(blob.etag, emb.model):
        return Outcome.DUPLICATE
    return Outcome.STALE
