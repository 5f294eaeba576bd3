"""The vector index follows the table: after each change of an item, make the index hold what the item holds.

The conditional write to DynamoDB decides (ordering, idempotency, failures); the index has no conditional
writes, so it is only ever brought in line with the item as read back:

1. whoever changed an item makes the matching index change (``put`` for an embedding; ``delete`` for a
   removal or a failure record), then reads the item again (strongly consistent) and, while it holds
   something else (a concurrent event changed it meanwhile), makes the index hold that instead. The last
   index write of all is then by a writer whose next read saw the item's final state: no stale vector, no
   vector of a deleted object, whatever the interleaving.
2. an index failure raises ``TransientError``: the record is retried. The retry finds the item a duplicate,
   and ``ingest.fetch`` asks the index what it holds (a read); if that is not the item's vector, ``finish``
   repairs it by step 1. Items written before the index existed are repaired the same way by the backfill.
   A late repair never resurrects a deleted object's vector: it starts from the item as read and re-reads
   it after writing.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler import item
from handler.errors import TransientError
from handler.item import ObjectMeta, StoredItem
from handler.observability import count, logger
from handler.sinks import Sink
from handler.vector_index import Entry, VectorIndex
from layer import Embedding

# Rounds of "write, read back" before giving up (with a TransientError: the record is retried). Each extra
# round needs another event changing the same item between our write and our read.
MAX_ROUNDS = 4


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

    def apply(self, index: VectorIndex) -> None:
        index.put(self.meta, self.emb)


@dataclass(frozen=True)
class Delete:
    pk: str

    entry = None

    def apply(self, index: VectorIndex) -> None:
        index.delete(self.pk)


Change = Put | Delete


def expected(stored: StoredItem | None) -> Entry | None:
    """What the index should hold for an item (None: nothing, for no item or a failure record)."""
    if stored is None or not stored.has_embedding:
        return None
    return Entry(etag=str(stored.attributes.get(item.ETAG, "")), model=str(stored.attributes.get(item.MODEL, "")))


def change_for(pk: str, stored: StoredItem | None) -> Change:
    """The index change that makes it hold what ``stored`` holds."""
    vector = None if stored is None else stored.vector
    if stored is None or vector is None:
        return Delete(pk)
    a = stored.attributes
    bucket, _, key = pk.removeprefix("s3://").partition("/")  # literally: no %xx decoding of the key
    meta = ObjectMeta(bucket=bucket, key=key, order_key=stored.order_key, etag=a.get(item.ETAG))
    emb = Embedding(vector=vector, norm=float(a.get(item.NORM, 1.0)), width=int(a.get(item.WIDTH, 0)),
                    height=int(a.get(item.HEIGHT, 0)), model=str(a.get(item.MODEL, "")))  # fmt: skip
    return Put(meta, emb)


def follow(sink: Sink, index: VectorIndex, change: Change) -> None:
    """Make ``change`` (the index side of a table write just made), then read the item back until the
    index holds what the item holds."""
    for round_ in range(MAX_ROUNDS):
        change.apply(index)
        stored = sink.get(change.pk)
        if expected(stored) == change.entry:
            if round_:
                count("IndexRaces")
                logger.info("the item changed while the index followed it", extra={"rounds": round_ + 1})
            return
        change = change_for(change.pk, stored)
    raise TransientError(f"{change.pk}: the item kept changing while the index followed it")


def repair(sink: Sink, index: VectorIndex, pk: str, stored: StoredItem) -> None:
    """A duplicate whose vector the index does not hold (an earlier attempt failed between the two
    writes): make the index hold the stored item's, as any writer would."""
    count("IndexRepairs")
    logger.info("the index did not hold the item's vector: repaired")
    follow(sink, index, change_for(pk, stored))
