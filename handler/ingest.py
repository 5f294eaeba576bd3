"""Object events → engine → sink (→ vector index): the S3 function's work for an invocation's records
(``Ingest``), and the API's ``store``.

Outcomes are values (``Result``); only ``TransientError`` escapes, so the caller can fail just that record.
Where a vector index is configured it follows the table writes (``handler.indexing``), batched per
invocation by ``Ingest.flush``; the API's ``store`` leaves it alone (the API may not write the index): those
items are indexed by their object's S3 event, or as duplicates by the backfill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum

from handler import indexing, item, objects
from handler.errors import AccessDenied, ObjectChanged, ObjectGone, TransientError
from handler.events import Action, ObjectEvent
from handler.indexing import Owner
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


class Ingest:
    """One invocation's object events, in order: each read, embedded and written to the table by ``handle``;
    what may wait is gathered and done by ``flush``, which the caller runs once, after the last event:

    - the index side of every table write (``handler.indexing.IndexWrites``: a few PutVectors for the whole
      invocation instead of one per object);
    - the HEAD after each write that closes the race with a delete (``confirm``): started on a thread right
      after the write, so it overlaps the next image's embedding, and its answer awaited by ``flush``.

    Failures are reported against the ``owner`` each event was handled for (an SQS message id, a position).
    """

    def __init__(self, rt: Runtime, executor: Executor | None = None) -> None:
        self.rt = rt
        self.executor = executor or confirm_pool()
        self.writes = indexing.IndexWrites(rt.sink, rt.index, self.resolve) if rt.index is not None else None
        self.results: list[tuple[Owner, Result]] = []
        self._confirms: list[tuple[int, ObjectMeta, Future[bool]]] = []

    def handle(self, ev: ObjectEvent, owner: Owner, fetched: Fetch | None = None) -> Result:
        """``fetched``: this event's ``fetch``, already started (``handler.prefetch``); else it runs here.
        The result is final unless ``flush`` finds the object deleted meanwhile (``GONE``)."""
        rt = self.rt
        with logger.append_context_keys(s3_uri=ev.uri, event_name=ev.event_name, order_key=ev.order_key):
            t0 = time.perf_counter()
            if ev.action is Action.REMOVED:
                result = self.remove(ev, owner)  # writes no vector: a model that failed its self-check may delete
            else:
                rt.require_sound_model()
                result = self.finish(ev, owner, fetched() if fetched else fetch(ev, rt))
            self.results.append((owner, result))
            duration_ms = round((time.perf_counter() - t0) * 1e3, 1)  # read + embed + write of this object
            logger.info(
                "object processed",
                extra={"outcome": result.outcome.value, "code": result.code, "duration_ms": duration_ms},
            )
            return result

    def flush(self) -> Flushed:
        """The deferred work of every event handled: the delete-race checks, then the index. Returns the
        final results and the owners that must be retried (with why); counts the outcomes."""
        failed: dict[Owner, TransientError] = {}
        for slot, meta, answer in self._confirms:
            owner, written = self.results[slot]
            try:
                self.results[slot] = (owner, self.confirmed(meta, written, answer.result(), owner))
            except TransientError as exc:
                failed[owner] = exc
        self._confirms.clear()
        if self.writes is not None:
            for owner, why in self.writes.flush().items():
                failed.setdefault(owner, why)
        for _, result in self.results:
            count(f"Objects{result.outcome.value.capitalize()}")
        return Flushed(results=[r for _, r in self.results], failed=failed)

    def remove(self, ev: ObjectEvent, owner: Owner) -> Result:
        deleted = self.rt.sink.delete(ev.uri, ev.order_key)
        if deleted:
            self.follow(indexing.Delete(ev.uri), owner)
        return Result(Outcome.DELETED if deleted else Outcome.STALE, ev.uri)

    def follow(self, change: indexing.Change, owner: Owner) -> None:
        """The index side of a table write that was just applied (nothing without an index)."""
        if self.writes is not None:
            self.writes.add(change, owner)

    def finish(self, ev: ObjectEvent, owner: Owner, fetched: Result | Fetched | Unindexed) -> Result:
        """The engine and the writes, in event order: embed, conditional put (or the failure record); the
        index and the confirmation follow in ``flush``."""
        rt = self.rt
        if isinstance(fetched, Result):
            return fetched
        if isinstance(fetched, Unindexed):
            count("IndexRepairs")
            logger.info("the index did not hold the item's vector: repairing it")
            self.follow(indexing.change_for(fetched.result.uri, fetched.stored, self.resolve), owner)
            return fetched.result
        meta = fetched.meta
        if fetched.error is not None:
            return self.fail(ev, owner, meta, fetched.error)
        try:
            emb = rt.embed_image(fetched.data)
        except ImageError as exc:
            return self.fail(ev, owner, meta, exc)
        if not rt.sink.put_embedding(meta, emb):
            return Result(Outcome.STALE, meta.pk)
        self.follow(indexing.Put(meta, emb), owner)
        return self.confirm(ev, meta, Result(Outcome.EMBEDDED, meta.pk))

    def confirm(self, ev: ObjectEvent, meta: ObjectMeta, written: Result) -> Result:
        """Close the race with a delete that happened while we read and embedded: its event may already have
        run and found nothing to delete. The HEAD starts now, on another thread (it overlaps the next
        image); ``flush`` takes our item back out if the key is gone (only if still ours), so that no item,
        embedding or failure record, outlives its object."""
        answer = self.executor.submit(objects.exists, self.rt.s3, ev.bucket, ev.key)
        self._confirms.append((len(self.results), meta, answer))
        return written

    def confirmed(self, meta: ObjectMeta, written: Result, exists: bool, owner: Owner) -> Result:
        if exists:
            return written
        logger.info("object deleted while it was embedded: its item is taken back", extra={"s3_uri": meta.pk})
        if self.rt.sink.delete(meta.pk, meta.order_key):
            self.follow(indexing.Delete(meta.pk), owner)
        return Result(Outcome.GONE, meta.pk)

    def fail(self, ev: ObjectEvent, owner: Owner, meta: ObjectMeta, exc: ImageError) -> Result:
        """A permanent input error: log it with the key, count it, record it at the item's pk; no retry."""
        logger.warning(
            "image rejected", extra={"s3_uri": meta.pk, "error_code": exc.code, "error_message": exc.message}
        )
        record_failure(exc.code)
        failed = Result(Outcome.FAILED, meta.pk, exc.code)
        if not self.rt.settings.record_failures:
            return failed
        if not self.rt.sink.put_failure(meta, exc.code, exc.message, self.rt.engine.model_id):
            return Result(Outcome.STALE, meta.pk)
        self.follow(indexing.Delete(meta.pk), owner)  # a failure record holds no vector: nor does the index
        return self.confirm(ev, meta, failed)

    def resolve(self, pk: str, stored: StoredItem) -> Embedding | None:
        """The vector of an item that does not hold it (``ITEM_VECTOR=none``), for the index to hold again:
        the object read at the item's ETag and embedded, if this model made the item and the object has not
        changed since (else None: its next event, or the backfill, indexes it). Raises ``TransientError``."""
        a = stored.attributes
        if a.get(item.MODEL) != self.rt.engine.model_id:
            return None
        bucket, _, key = pk.removeprefix("s3://").partition("/")
        try:
            blob = objects.read_object(self.rt.s3, bucket, key, max_bytes=self.rt.settings.limits.max_bytes,
                                       etag=a.get(item.ETAG), version_id=a.get(item.VERSION_ID))  # fmt: skip
            emb = self.rt.embed_image(blob.data)
        except (ObjectGone, ObjectChanged, ImageError):
            return None
        except AccessDenied as exc:
            raise TransientError(str(exc)) from exc
        count("IndexReembedded")
        return emb


@dataclass(frozen=True)
class Flushed:
    results: list[Result]  # every event's final result, in order
    failed: dict[Owner, TransientError]  # the owners to retry


_confirm_pool: ThreadPoolExecutor | None = None


def confirm_pool() -> Executor:
    """The HEADs of ``Ingest.confirm`` (one pool per container; a HEAD is short, two threads keep up)."""
    global _confirm_pool  # noqa: PLW0603 - one pool per container
    if _confirm_pool is None:
        _confirm_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="confirm")
    return _confirm_pool


def handle(ev: ObjectEvent, rt: Runtime, fetched: Fetch | None = None) -> Result:
    """One event on its own (tests, tools): handled and flushed; raises what must be retried."""
    batch = Ingest(rt)
    batch.handle(ev, 0, fetched)
    done = batch.flush()
    if done.failed:
        raise next(iter(done.failed.values()))
    return done.results[0]


def duplicate(rt: Runtime, pk: str, stored: StoredItem) -> Result | Unindexed:
    """Already done, if the index (where there is one) holds the item's vector too: a read only."""
    done = Result(Outcome.DUPLICATE, pk)
    if rt.index is None or rt.index.held_many([pk])[pk] == indexing.expected(stored):
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


def store(rt: Runtime, blob: objects.S3Blob, emb: Embedding) -> Outcome:
    """The API's ``store``: the item the S3 function would write, ordered by the object's LastModified
    (no sequencer outside an S3 event, so any S3 event for the object takes precedence), with its vector in
    the item even where items are lean."""
    meta = ObjectMeta(
        bucket=blob.bucket,
        key=blob.key,
        order_key=item.order_key(None, blob.last_modified),
        etag=blob.etag,
        version_id=blob.version_id,
        size=blob.size,
        content_type=blob.content_type,
    )
    # The API may not write the index, so a lean deployment's item keeps this vector: the object's S3 event
    # (or the backfill) finds it a duplicate and indexes it from the item, embedding nothing.
    keep = item.FULL if rt.settings.item_vector_format == item.NONE else None
    if rt.sink.put_embedding(meta, emb, keep):
        return Outcome.EMBEDDED
    stored = rt.sink.get(meta.pk)  # a newer event's item: the same bytes and model count as stored
    if stored is not None and stored.has_embedding and stored.is_duplicate(blob.etag, emb.model):
        return Outcome.DUPLICATE
    return Outcome.STALE
