"""The soak's load (bench/soak.py), its parts without a stack: the notifications it sends are ones the S3
function reads back to the object it changed, the malformed ones are refused (they must end in the DLQ), and
its table (the run itself: tests/integration/test_soak.py)."""

from __future__ import annotations

import json

import pytest

from bench.soak import MALFORMED_BODIES, _record, markdown
from handler import events
from handler.errors import MalformedEvent
from handler.events import Action


def test_a_sent_notification_is_read_back_as_the_object_it_changed() -> None:
    key = "soak/dir a+b/x%y é.jpg"
    body = json.dumps({"Records": [_record("b", key, "ObjectCreated:Put", 26, size=10, etag="e1")]})
    [created] = events.from_message_body(body)
    assert (created.action, created.bucket, created.key, created.size, created.etag) == (
        Action.CREATED, "b", key, 10, "e1",
    )  # fmt: skip
    assert created.sequencer == "000000000000001A"
    [removed] = events.from_message_body(json.dumps({"Records": [_record("b", key, "ObjectRemoved:Delete", 27)]}))
    assert removed.action is Action.REMOVED and removed.key == key and removed.order_key > created.order_key


@pytest.mark.parametrize("body", MALFORMED_BODIES)
def test_the_malformed_messages_are_refused_by_the_function(body: str) -> None:
    with pytest.raises(MalformedEvent):
        events.from_message_body(body)


def test_the_table() -> None:
    report = {
        "machine": {"summary": "CPU X"}, "config": {"events": 10, "functions": 2},
        "workload": {"ops": {"put": 6, "delete": 4}, "messages_sent": 12, "duplicates": 1, "malformed": 4},
        "check": {"counts": {"lost": 0, "stale": 0, "extra": 0}, "dlq": 4}, "throughput_events_per_s": 9.5,
        "retries": 3, "function_errors": 1, "kills": 1,
        "faults": {"s3": {"throttle": 2, "slow": 1}, "dynamodb": {"throttle": 5, "down": 7}},
        "latency_ms": {"p50": 120, "p99": 900},
    }  # fmt: skip
    text = markdown(report)
    assert "10 S3 operations (delete 4, put 6), 12 messages (1 duplicates, 4 malformed), 2 functions." in text
    assert "| 0 | 0 | 0 | 4 (4) | 9.5 | 3 | 1 | 1 | 2 / 1 | 5 / 7 | 120 / 900 |" in text
