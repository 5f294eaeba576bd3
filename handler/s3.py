"""The S3 function: object created → embedding item; object removed → item deleted.

Invoked by an SQS event source mapping (the default topology: S3 → SQS → Lambda, with
``ReportBatchItemFailures`` so that only failed messages return to the queue and, after the redrive limit,
to the DLQ), by direct S3 notifications, or by EventBridge "Object Created" / "Object Deleted" events.
Direct and EventBridge invocations are asynchronous: a transient failure raises, so Lambda retries the event
and then sends it to the function's on-failure destination / DLQ.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler import events, ingest, prefetch, runtime, settings
from handler.errors import MalformedEvent, TransientError
from handler.observability import count, logger, metrics, tracer

# An all-failed batch is reported as batchItemFailures too (not raised): the result is the same, the logs
# are clearer, and the mapping never disables itself over a bad batch.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

if settings.in_lambda():
    runtime.current()  # INIT: load the model and create the clients before the first event


def record_handler(record: SQSRecord, ahead: prefetch.SqsPrefetcher | None = None) -> list[str]:
    """One SQS message (usually one S3 record). Raises to fail just this message. ``ahead``: the batch's
    reads, started while earlier messages were embedded."""
    with logger.append_context_keys(message_id=record.message_id):
        try:
            object_events = events.from_message_body(record.body)
        except MalformedEvent:
            count("MalformedMessages")
            logger.exception("unparseable SQS message: it will be retried and then kept in the DLQ")
            raise
        rt = runtime.current()
        fetched = ahead.for_message(record.message_id, len(object_events)) if ahead else [None] * len(object_events)
        try:
            return [ingest.handle(ev, rt, f).outcome.value for ev, f in zip(object_events, fetched, strict=True)]
        except TransientError:
            count("TransientFailures")
            logger.exception("transient failure: the message returns to the queue")
            raise


def handle_direct(event: dict[str, Any]) -> dict[str, Any]:
    """Direct S3 notification or EventBridge event: process every record, raise if any must be retried."""
    rt = runtime.current()
    outcomes: list[str] = []
    retry: list[str] = []
    object_events = events.from_payload(event)
    with prefetch.batch(rt, object_events) as ahead:
        for i, ev in enumerate(object_events):
            try:
                outcomes.append(ingest.handle(ev, rt, ahead.take(i)).outcome.value)
            except TransientError as exc:
                count("TransientFailures")
                logger.exception("transient failure", extra={"s3_uri": ev.uri})
                retry.append(f"{ev.uri}: {exc}")
    if retry:  # the rest are idempotent: a retry finds them as duplicates
        raise TransientError(f"{len(retry)} record(s) to retry: " + "; ".join(retry)[:2000])
    return {"outcomes": outcomes}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = events.classify(event)
    logger.append_keys(event_kind=kind)
    if kind == "sqs":
        with prefetch.sqs_batch(runtime.current(), event["Records"]) as ahead:
            response = process_partial_response(
                event=event, record_handler=partial(record_handler, ahead=ahead), processor=processor, context=context
            )
        return dict(response)
    if kind == "test":
        logger.info("s3:TestEvent ignored")
        count("TestEventsIgnored")
        return {"outcomes": []}
    return handle_direct(event)
