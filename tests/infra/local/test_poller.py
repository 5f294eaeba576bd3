"""The SQS event source mapping's emulation (infra/local/poller.py), against a stub queue: Lambda's SQS event,
and only the messages the function did not report as failed are deleted."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.poller import PollStats, SqsPoller, to_lambda_record
from infra.local.rie import InvokeResult

ARN = "arn:aws:sqs:us-east-1:123456789012:clip-lambda-events"


def message(i: int) -> dict[str, Any]:
    return {"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": f"body {i}", "MD5OfBody": "md5",
            "Attributes": {"ApproximateReceiveCount": 2}}  # fmt: skip


class Queue:
    """``receive_message`` hands out ``messages`` once; deletes are recorded."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.received: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def receive_message(self, **kw: Any) -> dict[str, Any]:
        self.received.append(kw)
        out, self.messages = self.messages[: kw["MaxNumberOfMessages"]], self.messages[kw["MaxNumberOfMessages"] :]
        return {"Messages": out} if out else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.deleted += [e["ReceiptHandle"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def poller(queue: Queue, answer: InvokeResult, seen: list[dict[str, Any]]) -> SqsPoller:
    def invoke(event: dict[str, Any]) -> InvokeResult:
        seen.append(event)
        return answer

    return SqsPoller(queue, "url", ARN, invoke, batch_size=25)


def test_a_message_becomes_a_record_of_lambdas_sqs_event() -> None:
    msg = {**message(1), "MessageAttributes": {"kind": {"StringValue": "s3", "DataType": "String"}}}
    record = to_lambda_record(msg, ARN, "eu-west-1")
    assert record == {
        "messageId": "m1", "receiptHandle": "r1", "body": "body 1", "md5OfBody": "md5",
        "attributes": {"ApproximateReceiveCount": "2"},  # strings, as Lambda delivers them
        "messageAttributes": {"kind": {"stringValue": "s3", "binaryValue": None, "stringListValues": [],
                                       "binaryListValues": [], "dataType": "String"}},
        "eventSource": "aws:sqs", "eventSourceARN": ARN, "awsRegion": "eu-west-1",
    }  # fmt: skip


def test_only_what_the_function_did_not_report_failed_is_deleted() -> None:
    queue, seen = Queue([message(i) for i in range(3)]), list[dict[str, Any]]()
    answer = InvokeResult({"batchItemFailures": [{"itemIdentifier": "m1"}]}, False, 1.0)
    stats = poller(queue, answer, seen).poll_once()
    assert [r["messageId"] for r in seen[0]["Records"]] == ["m0", "m1", "m2"]
    assert queue.deleted == ["r0", "r2"]
    assert (stats.batches, stats.received, stats.deleted, stats.failed, stats.batch_sizes) == (1, 3, 2, 1, [3])
    assert queue.received[0]["MaxNumberOfMessages"] == 10  # SQS's own maximum, whatever the batch size says


@pytest.mark.parametrize(
    "answer", [InvokeResult({"errorType": "Runtime.ExitError"}, True, 1.0), InvokeResult("timed out", False, 1.0)]
)
def test_a_function_error_deletes_nothing(answer: InvokeResult) -> None:
    queue, seen = Queue([message(0), message(1)]), list[dict[str, Any]]()
    p = poller(queue, answer, seen)
    stats = p.poll_once()
    assert queue.deleted == [] and (stats.function_errors, stats.failed, stats.deleted) == (1, 2, 0)
    assert p.stats.function_errors == 1  # kept across polls
    assert p.poll_once() == PollStats() and len(seen) == 1  # an empty receive invokes nothing


def test_stats_add_up() -> None:
    total = PollStats()
    total.add(PollStats(batches=1, received=3, deleted=2, failed=1, batch_sizes=[3]))
    total.add(PollStats(batches=1, received=1, deleted=1, function_errors=0, batch_sizes=[1]))
    assert total == PollStats(batches=2, received=4, deleted=3, failed=1, function_errors=0, batch_sizes=[3, 1])
