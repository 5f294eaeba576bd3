"""Read the next objects of a batch while the current one is embedded.

An S3 GET takes tens of milliseconds to its first byte; the engine is CPU-bound. A small thread pool runs
``ingest.fetch`` (reads only: the item check and the object) for up to ``depth`` events ahead, while the
events are still finished one by one, in order, on the calling thread. So the writes, their ordering, the
failure records and the batch item failures are exactly those of the sequential path; only the waiting
overlaps. An event whose object occurs earlier in the same batch is not read ahead (its checks must see the
earlier event's write), nor is a removal (it has nothing to read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from handler import events, ingest
from handler.errors import MalformedEvent
from handler.events import Action, ObjectEvent
from handler.runtime import Runtime

_pools: dict[int, ThreadPoolExecutor] = {}


def pool(depth: int) -> Executor:
    """One pool per container and depth (threads are reused across invocations)."""
    if depth not in _pools:
        _pools[depth] = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="prefetch")
    return _pools[depth]


class Prefetcher:
    def __init__(self, rt: Runtime, batch: Sequence[ObjectEvent], depth: int, executor: Executor | None = None):
        self.rt = rt
        self.batch = list(batch)
        self.depth = depth
        self.executor = executor or (pool(depth) if depth > 0 else None)
        first: dict[str, int] = {}
        self._may_read_ahead = [
            ev.action is not Action.REMOVED and first.setdefault(ev.uri, i) == i for i, ev in enumerate(self.batch)
        ]
        self._started: dict[int, Future[ingest.Result | ingest.Fetched | ingest.Unindexed]] = {}

    def take(self, index: int) -> ingest.Fetch | None:
        """Start the reads of the ``depth`` events after ``index``; this event's read if it was started
        (its result, or its exception, when called), else None: ``ingest.handle`` then reads inline."""
        for j in range(index + 1, min(len(self.batch), index + 1 + self.depth)):
            if self.executor is not None and self._may_read_ahead[j] and j not in self._started:
                self._started[j] = self.executor.submit(ingest.fetch, self.batch[j], self.rt)
        started = self._started.pop(index, None)
        return started.result if started is not None else None

    def close(self) -> None:
        """Cancel reads no event will take (their record failed first) and wait for the running ones, so
        that nothing of this batch runs on into the next invocation (callers hold the batch in
        ``contextlib.closing``)."""
        for future in self._started.values():
            future.cancel()
        for future in self._started.values():
            if not future.cancelled():
                future.exception()  # waits; its error belongs to a record that already failed
        self._started.clear()


class SqsPrefetcher(Prefetcher):
    """A ``Prefetcher`` over every object event of an SQS batch, looked up by message id. Each body is parsed
    here, once: the record handler takes its events from ``events_for``."""

    def __init__(self, rt: Runtime, records: Sequence[Mapping[str, Any]], depth: int):
        self._index: dict[str, int] = {}
        self._parsed: dict[str, list[ObjectEvent]] = {}
        batch: list[ObjectEvent] = []
        for record in records:
            try:
                parsed = events.from_message_body(record.get("body") or "")
            except MalformedEvent:
                continue  # the record handler parses it again, to raise its error for this message
            message_id = str(record.get("messageId"))
            self._index[message_id] = len(batch)
            self._parsed[message_id] = parsed
            batch.extend(parsed)
        super().__init__(rt, batch, depth)

    def events_for(self, message_id: str) -> list[ObjectEvent] | None:
        """The message's object events as parsed here (None: its body did not parse)."""
        return self._parsed.get(message_id)

    def for_message(self, message_id: str, count: int) -> list[ingest.Fetch | None]:
        first = self._index.get(message_id)
        if first is None:
            return [None] * count
        return [self.take(first + i) for i in range(count)]
