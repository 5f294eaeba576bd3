"""The vector index follows the table: an invocation's index changes, gathered and made together.

The conditional write to DynamoDB decides (ordering, idempotency, failures); the index has no conditional
writes, so it is only ever brought in line with the items as read back. ``IndexWrites`` collects the index
side of every table write of an invocation (``add``: a ``Put`` for an embedding, a ``Delete`` for a removal or
a failure record, with the record that owns it), and ``flush`` makes them with as few requests as S3 Vectors
allows:

1. one change per object (the last: it follows the last table write), PutVectors and DeleteVectors of up to
   ``MAX_WRITE_BATCH`` each; a request that fails fails exactly the records whose changes it carried;
2. the items read again, strongly consistent, ``get_many`` (BatchGetItem: 100 a request); while an item holds
   something else (a concurrent event changed it meanwhile), the index is made to hold that instead, and read
   again. The last index write of all is then by a writer whose next read saw the item's final state: no
   stale vector, no vector of a deleted object, whatever the interleaving.

An item that does not hold its vector (``ITEM_VECTOR=none``: it lives in the index alone) is corrected with a
vector from ``resolve`` (the object read at the item's ETag and embedded again). When that is impossible (the
object has changed or gone since: its own event is on the way, or the item is another model's), the index's
vector is withdrawn instead: never a stale vector, and the object's next event or the backfill puts it back.

A failed record is retried. The retry finds the item a duplicate, and ``handler.ingest.fetch`` asks the index
what it holds; if that is not the item's vector, the same steps repair it. A late repair never resurrects a
deleted object's vector: it starts from the item as read and re-reads it after writing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from handler import item
from handler.errors import TransientError
from handler.item import ObjectMeta, StoredItem
from handler.observability import count, logger
from handler.sinks import Sink
from handler.vector_index import MAX_WRITE_BATCH, Entry, VectorIndex
from layer import Embedding
from layer.tags import Tag

# Rounds of "write, read back" before giving up (with a TransientError: the records are retried). Each extra
# round needs another event changing the same item between our write and our read.
MAX_ROUNDS = 4

Owner = Hashable  # what a failure is reported against: an SQS message id, an event's position
# The vector of an item that does not hold it, or None when it cannot be had (see the module docstring).
Resolve = Callable[[str, StoredItem], "Embedding | None"]
T = TypeVar("T")


@dataclass(frozen=True)
class Put:
    meta: ObjectMeta
    emb: Embedding

    @property
    def pk(self) -> str:
        return self.meta.pk

    @property
    def entry(self) -> Entry:
        return Entry(etag=self.meta.etag or "", model=self.emb.model)


@dataclass(frozen=True)
class Delete:
    pk: str
    withdrawn: bool = False  # the item's vector could not be had: not checked against the item again

    entry = None


Change = Put | Delete


def expected(stored: StoredItem | None) -> Entry | None:
    """What the index should hold for an item (None: nothing, for no item or a failure record)."""
    if stored is None or not stored.has_embedding:
        return None
    return Entry(etag=str(stored.attributes.get(item.ETAG, "")), model=str(stored.attributes.get(item.MODEL, "")))


def change_for(pk: str, stored: StoredItem | None, resolve: Resolve | None = None) -> Change:
    """The index change that makes it hold what ``stored`` holds."""
    if stored is None or not stored.has_embedding:
        return Delete(pk)
    a = stored.attributes
    vector = stored.vector
    if vector is None:
        emb = resolve(pk, stored) if resolve is not None else None
        if emb is None:
            return Delete(pk, withdrawn=True)
    else:
        emb = Embedding(vector=vector, norm=float(a.get(item.NORM, 1.0)), width=int(a.get(item.WIDTH, 0)),
                        height=int(a.get(item.HEIGHT, 0)), model=str(a.get(item.MODEL, "")),
                        tags=stored_tags(a))  # fmt: skip
    bucket, _, key = pk.removeprefix("s3://").partition("/")  # literally: no %xx decoding of the key
    meta = ObjectMeta(bucket=bucket, key=key, order_key=stored.order_key, etag=a.get(item.ETAG))
    return Put(meta, emb)


def stored_tags(a: Mapping[str, Any]) -> tuple[Tag, ...]:
    """An item's tags (labels and scores), as the engine gave them."""
    labels, scores = a.get(item.TAGS) or [], a.get(item.TAG_SCORES) or []
    return tuple(Tag(str(label), float(score)) for label, score in zip(labels, scores, strict=False))


def chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


@dataclass
class IndexWrites:
    """The index changes of one invocation (module docstring). Not thread-safe: one per invocation."""

    sink: Sink
    index: VectorIndex
    resolve: Resolve | None = None
    _pending: dict[str, tuple[Change, set[Owner]]] = field(default_factory=dict)
    requests: int = 0  # PutVectors + DeleteVectors made by this batch (the cost benchmarks read it)

    def add(self, change: Change, owner: Owner) -> None:
        """The index side of a table write just applied; the object's last change replaces earlier ones."""
        _, owners = self._pending.pop(change.pk, (None, set()))
        self._pending[change.pk] = (change, owners | {owner})

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> dict[Owner, TransientError]:
        """Make every change; the owners whose changes could not be made, with why (their records must be
        retried). Empty: the index holds what every item holds."""
        failed: dict[Owner, TransientError] = {}
        pending, self._pending = self._pending, {}
        for round_ in range(MAX_ROUNDS):
            if not pending:
                return failed
            pending = self._write(pending, failed)
            pending = self._check(pending, failed, round_)
        for _, owners in pending.values():
            exc = TransientError(f"{len(pending)} item(s) kept changing while the index followed them")
            failed.update(dict.fromkeys(owners, exc))
        return failed

    def _write(self, pending: dict[str, tuple[Change, set[Owner]]],
               failed: dict[Owner, TransientError]) -> dict[str, tuple[Change, set[Owner]]]:  # fmt: skip
        """Make the changes, one request per ``MAX_WRITE_BATCH``; the changes that were made."""
        puts = [c for c, _ in pending.values() if isinstance(c, Put)]
        deletes = [c.pk for c, _ in pending.values() if isinstance(c, Delete)]
        written = dict(pending)
        requests: list[tuple[Callable[[], None], list[str]]] = [
            *((lambda b=batch: self.index.put_many([(p.meta, p.emb) for p in b]), [p.pk for p in batch])
              for batch in chunks(puts, MAX_WRITE_BATCH)),
            *((lambda b=batch: self.index.delete_many(b), list(batch)) for batch in chunks(deletes, MAX_WRITE_BATCH)),
        ]  # fmt: skip
        for call, pks in requests:
            self.requests += 1
            try:
                call()
            except TransientError as exc:
                count("IndexWriteFailures")
                for pk in pks:
                    failed.update(dict.fromkeys(written.pop(pk)[1], exc))
        count("IndexWriteRequests", len(requests))
        count("IndexVectorsWritten", sum(1 for c, _ in written.values() if isinstance(c, Put)))
        return written

    def _check(self, written: dict[str, tuple[Change, set[Owner]]], failed: dict[Owner, TransientError],
               round_: int) -> dict[str, tuple[Change, set[Owner]]]:  # fmt: skip
        """Read the items back; the corrections for those that changed meanwhile."""
        checked = {pk: v for pk, v in written.items() if not (isinstance(v[0], Delete) and v[0].withdrawn)}
        if not checked:
            return {}
        try:
            stored = self.sink.get_many(list(checked))
        except TransientError as exc:
            for _, owners in checked.values():
                failed.update(dict.fromkeys(owners, exc))
            return {}
        corrections: dict[str, tuple[Change, set[Owner]]] = {}
        for pk, (change, owners) in checked.items():
            now = stored.get(pk)
            if expected(now) == change.entry:
                continue
            try:
                fix = change_for(pk, now, self.resolve)
            except TransientError as exc:
                failed.update(dict.fromkeys(owners, exc))
                continue
            if isinstance(fix, Delete) and fix.withdrawn:
                count("IndexWithdrawn")
                logger.info("vector withdrawn from the index: the item's vector cannot be had now", extra={"pk": pk})
            corrections[pk] = (fix, owners)
        if corrections:
            count("IndexRaces", len(corrections))
            logger.info("items changed while the index followed them", extra={"items": len(corrections),
                                                                              "round": round_ + 1})  # fmt: skip
        return corrections


def stored_vector(stored: StoredItem, index: VectorIndex | None) -> tuple[np.ndarray | None, str | None]:
    """An item's vector from wherever it lives, and where: ``"item"`` (``ITEM_VECTOR`` full or float16),
    ``"index"`` (a lean item: the index holds the vector written for this item's ETag and model), or
    ``(None, None)`` (a failure record, or an index that does not hold this item's vector yet)."""
    vector = stored.vector
    if vector is not None:
        return vector, "item"
    if index is None or not stored.has_embedding:
        return None, None
    got = index.vectors([stored.pk]).get(stored.pk)
    if got is None or got.entry != expected(stored):
        return None, None
    return got.vector, "index"
