"""Normalise every S3 event shape into one typed ``ObjectEvent``.

Shapes: S3 notifications delivered through SQS (the default topology), direct S3 notifications, EventBridge
"Object Created" / "Object Deleted" events (direct, or through SQS), and S3 → SNS → SQS fan-out. The
``s3:TestEvent`` that S3 sends when a notification is configured is ignored. Keys arrive URL-encoded with
``+`` for a space; they are decoded here, once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent

from handler import item, location
from handler.errors import MalformedEvent
from handler.item import SEQUENCER_WIDTH

_SEQUENCER = re.compile(rf"^[0-9A-Fa-f]{{1,{SEQUENCER_WIDTH}}}$")
EventKind = Literal["sqs", "s3", "eventbridge", "test", "backfill", "unknown"]


class Action(StrEnum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectEvent:
    action: Action
    bucket: str
    key: str  # URL-decoded
    event_time: datetime  # UTC
    event_name: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    source: str = "s3"

    def __post_init__(self) -> None:
        """Fields S3 itself guarantees, checked here so that a malformed event fails as one (and no S3 or
        DynamoDB call ever carries a name botocore would refuse, or a sequencer that is not one)."""
        try:
            location.check(self.bucket, self.key)
        except location.InvalidLocation as exc:
            raise MalformedEvent(str(exc)) from exc
        if self.size is not None and (isinstance(self.size, bool) or self.size < 0):
            raise MalformedEvent(f"invalid object size {self.size!r}")
        if self.sequencer is not None and not _SEQUENCER.match(self.sequencer):
            raise MalformedEvent(f"invalid sequencer {self.sequencer[:80]!r}")
        for name in ("etag", "version_id"):  # hex and URL-safe ASCII in every S3 event: they go into headers
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, str) and len(value) <= 1024 and value.isascii() and value.isprintable()
            ):
                raise MalformedEvent(f"invalid {name} {str(value)[:80]!r}")

    @property
    def uri(self) -> str:
        return item.pk(self.bucket, self.key)

    @property
    def order_key(self) -> str:
        return item.order_key(self.sequencer, self.event_time)


def parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise TypeError(f"eventTime {value!r} is not a string")
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def classify(event: Any) -> EventKind:
    """Which shape a Lambda invocation event has."""
    if not isinstance(event, dict):
        return "unknown"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        source = records[0].get("eventSource") or records[0].get("EventSource")
        return "sqs" if source == "aws:sqs" else "s3" if source == "aws:s3" else "unknown"
    if event.get("Event") == "s3:TestEvent":
        return "test"
    if "detail-type" in event and event.get("source") == "aws.s3":
        return "eventbridge"
    if isinstance(event.get("Items"), list) and isinstance(event.get("BatchInput", {}), dict):
        return "backfill"  # a Step Functions Distributed Map batch (ItemBatcher)
    return "unknown"


def from_s3_notification(payload: dict[str, Any]) -> list[ObjectEvent]:
    """An S3 notification (``{"Records": [...]}``); events other than created/removed are dropped."""
    out: list[ObjectEvent] = []
    try:
        for rec in S3Event(payload).records:
            name = rec.event_name
            if name.startswith("ObjectCreated:"):
                action = Action.CREATED
            elif name.startswith("ObjectRemoved:"):
                action = Action.REMOVED
            else:
                continue  # restore, replication, lifecycle transitions: no change to the pixels
            obj = rec.s3.get_object
            raw = obj.raw_event
            out.append(
                ObjectEvent(
                    action=action,
                    bucket=rec.s3.bucket.name,
                    key=unquote_plus(obj.key),
                    event_time=parse_time(rec.event_time),
                    event_name=name,
                    size=_size(raw.get("size")),
                    etag=obj.etag or None,
                    version_id=obj.version_id or None,
                    sequencer=raw.get("sequencer") or None,
                    source="s3",
                )
            )
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MalformedEvent(f"not an S3 notification: {exc!r}") from exc
    return out


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"size {value!r} is not an integer")
    return int(value)


def from_eventbridge(payload: dict[str, Any]) -> list[ObjectEvent]:
    """An EventBridge S3 event; only "Object Created" and "Object Deleted" change an item."""
    ev = S3EventBridgeNotificationEvent(payload)
    try:
        kind = ev.detail_type
        if kind == "Object Created":
            action = Action.CREATED
        elif kind == "Object Deleted":
            action = Action.REMOVED
        else:
            return []
        obj = ev.detail.object
        raw = obj.raw_event
        return [
            ObjectEvent(
                action=action,
                bucket=ev.detail.bucket.name,
                key=obj.key,  # the data class URL-decodes (unquote_plus)
                event_time=parse_time(ev.time),
                event_name=f"EventBridge:{kind}",
                size=_size(obj.raw_event.get("size")),
                etag=obj.etag or None,
                version_id=raw.get("version-id") or None,
                sequencer=raw.get("sequencer") or None,
                source="eventbridge",
            )
        ]
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MalformedEvent(f"not an S3 EventBridge event: {exc!r}") from exc


@dataclass(frozen=True)
class BackfillBatch:
    """A batch of the backfill's Distributed Map: ``Items`` from its ItemReader (an S3 listing: ``Key``,
    ``Etag``, ``Size``, ``LastModified``; an inventory or CSV manifest: ``Bucket``, ``Key`` and what the
    manifest holds), ``BatchInput`` from the state machine (the bucket, whether keys are URL-encoded as in
    S3 Inventory files, and the model id the run expects)."""

    events: list[ObjectEvent]
    expect_model: str | None = None


def _first(entry: dict[str, Any], *names: str) -> Any:
    return next((entry[n] for n in names if entry.get(n) not in (None, "")), None)


def _listed_time(value: Any) -> datetime:
    """A listing's LastModified: epoch seconds from Step Functions' S3 reader, ISO 8601 from a manifest."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return parse_time(value)


def from_backfill_batch(payload: dict[str, Any]) -> BackfillBatch:
    """Each listed object as a created event of source "backfill", ordered by its LastModified: any S3 event
    (which carries a sequencer) for the same object takes precedence, so a live upload is never overwritten
    by the backfill's older listing."""
    batch_input = payload.get("BatchInput") or {}
    default_bucket = batch_input.get("bucket")
    encoded = bool(batch_input.get("keys_url_encoded"))
    out: list[ObjectEvent] = []
    try:
        for entry in payload["Items"]:
            key = _first(entry, "Key", "key")
            etag = _first(entry, "Etag", "ETag", "etag")
            size = _first(entry, "Size", "size")
            out.append(
                ObjectEvent(
                    action=Action.CREATED,
                    bucket=_first(entry, "Bucket", "bucket") or default_bucket or "",
                    key=unquote_plus(key) if encoded and isinstance(key, str) else key,
                    event_time=_listed_time(_first(entry, "LastModified", "LastModifiedDate", "last_modified")),
                    event_name="Backfill",
                    size=_size(size),
                    etag=etag.strip('"') if isinstance(etag, str) else None,
                    version_id=_first(entry, "VersionId", "version_id"),
                    source="backfill",
                )
            )
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MalformedEvent(f"not a backfill batch: {exc!r}") from exc
    expect = batch_input.get("model_id")
    return BackfillBatch(out, expect_model=str(expect) if expect else None)


def from_payload(payload: Any) -> list[ObjectEvent]:
    """Any direct invocation payload or decoded SQS body. ``[]`` for the test event."""
    kind = classify(payload)
    if kind == "s3":
        return from_s3_notification(payload)
    if kind == "eventbridge":
        return from_eventbridge(payload)
    if kind == "test":
        return []
    if isinstance(payload, dict) and payload.get("Type") == "Notification" and "Message" in payload:
        return from_message_body(payload["Message"])  # S3 → SNS → SQS fan-out
    shape = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
    raise MalformedEvent(f"unrecognised event shape: {shape}")


def from_message_body(body: str) -> list[ObjectEvent]:
    """The body of one SQS message (JSON text)."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"SQS message body is not JSON: {str(body)[:80]!r}") from exc
    return from_payload(payload)
