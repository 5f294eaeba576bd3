"""The S3 function: object created → embedding item; object removed → item deleted.

Invoked by an SQS event source mapping (the default topology: S3 → SQS → Lambda, with
``ReportBatchItemFailures`` so that only failed messages return to the queue and, after the redrive limit,
to the DLQ), by direct S3 notifications, or by EventBridge "Object Created" / "Object Deleted" events.
Direct and EventBridge invocations are asynchronous: a transient failure raises, so Lambda retries the event
and then sends it to the function's on-failure destination / DLQ. The backfill's state machine (a Step
Functions Distributed Map over the bucket) invokes it with batches of listed objects: the same ingest path.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from contextlib import closing
from functools import partial
from typing import Any, cast

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler import events, ingest, prefetch, runtime, settings
from handler.errors import IndexMisconfigured, MalformedEvent, ModelMismatch, ModelUnsound, TransientError
from handler.indexing import Owner
from handler.observability import count, logger, metrics, tracer

# An all-failed batch is reported as batchItemFailures too (not raised): the result is the same, the logs
# are clearer, and the mapping never disables itself over a bad batch.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

if settings.in_lambda():
    runtime.current()  # INIT: load the model and create the clients before the first event


def record_handler(record: SQSRecord, batch: ingest.Ingest, ahead: prefetch.SqsPrefetcher | None = None) -> list[str]:
    """One SQS message (usually one S3 record), handled into ``batch``. Raises to fail just this message.
    ``ahead``: the batch's bodies, parsed once, and its reads, started while earlier messages were embedded."""
    with logger.append_context_keys(message_id=record.message_id):
        object_events = ahead.events_for(record.message_id) if ahead else None
        if object_events is None:
            try:
                object_events = events.from_message_body(record.body)
            except MalformedEvent:
                count("MalformedMessages")
                logger.exception("unparseable SQS message: it will be retried and then kept in the DLQ")
                raise
        fetched = ahead.for_message(record.message_id, len(object_events)) if ahead else [None] * len(object_events)
        try:
            return [
                batch.handle(ev, record.message_id, f).outcome.value
                for ev, f in zip(object_events, fetched, strict=True)
            ]
        except ModelUnsound:
            refused_unsound()
            raise
        except IndexMisconfigured as exc:
            refused_misconfigured(exc)
            raise
        except TransientError:
            count("TransientFailures")
            logger.exception("transient failure: the message returns to the queue")
            raise


def reason(exc: TransientError) -> str:
    return f"{exc.code}: {exc.remedy}" if isinstance(exc, IndexMisconfigured) else str(exc)


def report_failed(failed: dict[Owner, TransientError], uris: dict[Owner, str], owner_key: str = "position") -> None:
    """Log (with the owner under ``owner_key``) and count the records ``Ingest.flush`` could not finish (the
    index writes, the delete check)."""
    for owner, exc in failed.items():
        with logger.append_context_keys(**{owner_key: owner}):
            if isinstance(exc, IndexMisconfigured):
                refused_misconfigured(exc, uris.get(owner))
            else:
                count("TransientFailures")
                logger.error("transient failure after the writes: the record is retried",
                             extra={"s3_uri": uris.get(owner), "error": str(exc)[:500]})  # fmt: skip


def refused_unsound(uri: str | None = None) -> None:
    """A record this sandbox may not embed: counted, logged with its reason; it returns to the queue (or the
    caller retries it) and ends in the DLQ if no sound sandbox takes it."""
    count("SelfCheckRefusals")
    logger.error(
        "record refused: model_self_check_failed",
        extra={"reason": ModelUnsound.code, **({"s3_uri": uri} if uri else {})},
    )


def refused_misconfigured(exc: IndexMisconfigured, uri: str | None = None) -> None:
    """A record the vector index refused for good (no such index, another dimension, no permission): not a
    transient failure, but the record is kept all the same (it returns to the queue, then the DLQ, or the
    caller retries it) for a redrive once the deployment is fixed. Counted and logged with the fix."""
    count("IndexMisconfigured")
    logger.error(
        "permanent vector index error: the record is kept (retried, then the DLQ) until the index is fixed",
        extra={
            "reason": exc.code,
            "operation": exc.operation,
            "aws_code": exc.aws_code,
            "remedy": exc.remedy,
            "error_message": exc.detail,
            **({"s3_uri": uri} if uri else {}),
        },
    )


def handle_all(object_events: list[events.ObjectEvent]) -> list[ingest.Result]:
    """Every event of an invocation, reading ahead, their index writes batched; raises once at the end if any
    must be retried (the rest are idempotent: the retry finds them as duplicates)."""
    rt = runtime.current()
    batch = ingest.Ingest(rt)
    retry: dict[int, str] = {}
    with closing(prefetch.Prefetcher(rt, object_events, rt.settings.prefetch)) as ahead:
        for i, ev in enumerate(object_events):
            try:
                batch.handle(ev, i, ahead.take(i))
            except ModelUnsound as exc:
                refused_unsound(ev.uri)
                retry[i] = exc.code
            except IndexMisconfigured as exc:
                refused_misconfigured(exc, ev.uri)
                retry[i] = reason(exc)
            except TransientError as exc:
                count("TransientFailures")
                logger.exception("transient failure", extra={"s3_uri": ev.uri})
                retry[i] = reason(exc)
    done = batch.flush()
    report_failed(done.failed, {i: ev.uri for i, ev in enumerate(object_events)})
    for owner, why in done.failed.items():
        retry.setdefault(cast(int, owner), reason(why))
    if retry:
        reasons = "; ".join(f"{object_events[i].uri}: {why}" for i, why in sorted(retry.items()))
        raise TransientError(f"{len(retry)} record(s) to retry: " + reasons[:2000])
    return done.results


def handle_sqs(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """An SQS batch: each message handled by Powertools' batch processor (a raising one is a batch item
    failure), then the batch's deferred writes (``Ingest.flush``); a message whose index write or delete
    check failed is added to the batch item failures, so that exactly the failed messages return."""
    rt = runtime.current()
    batch = ingest.Ingest(rt)
    with closing(prefetch.SqsPrefetcher(rt, event["Records"], rt.settings.prefetch)) as ahead:
        response: dict[str, Any] = dict(process_partial_response(
            event=event, record_handler=partial(record_handler, batch=batch, ahead=ahead), processor=processor,
            context=context,
        ))  # fmt: skip
    done = batch.flush()
    if done.failed:
        uris = {owner: result.uri for owner, result in batch.results}
        report_failed(done.failed, uris, "message_id")
        failures: list[dict[str, str]] = list(response.get("batchItemFailures") or [])
        listed = {f["itemIdentifier"] for f in failures}
        failures += [{"itemIdentifier": str(o)} for o in done.failed if str(o) not in listed]
        response["batchItemFailures"] = failures
    return response


def handle_direct(event: dict[str, Any]) -> dict[str, Any]:
    """Direct S3 notification or EventBridge event: Lambda retries the event when this raises."""
    return {"outcomes": [r.outcome.value for r in handle_all(events.from_payload(event))]}


def handle_backfill(event: dict[str, Any]) -> dict[str, Any]:
    """A batch of the backfill's Distributed Map: each object's outcome, which the map run's ResultWriter
    keeps as the backfill's report. A transient failure raises (the state machine retries the batch); a
    model other than the one the run expects fails the batch without touching an item."""
    batch = events.from_backfill_batch(event)
    model = runtime.current().engine.model_id
    if batch.expect_model and batch.expect_model != model:
        raise ModelMismatch(f"this function embeds with {model!r}; the backfill expects {batch.expect_model!r}")
    results = handle_all(batch.events)
    summary = Counter(r.outcome.value for r in results)
    return {"counts": dict(summary), "results": [dataclasses.asdict(r) for r in results]}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = events.classify(event)
    logger.append_keys(event_kind=kind)
    if kind == "sqs":
        return handle_sqs(event, context)
    if kind == "backfill":
        return handle_backfill(event)
    if kind == "test":
        logger.info("s3:TestEvent ignored")
        count("TestEventsIgnored")
        return {"outcomes": []}
    return handle_direct(event)
