"""An SQS event source mapping emulator: receive ≤ 10 messages, invoke the function with Lambda's SQS event,
delete only what succeeded.

As Lambda's mapping with ``ReportBatchItemFailures``: a function error or timeout deletes nothing (the
whole batch returns after the visibility timeout); otherwise every message except those in
``batchItemFailures`` is deleted. Retries and the DLQ are SQS's own redrive policy, applied on receive
(``maxReceiveCount``), exactly as in AWS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local.rie import InvokeResult

Invoke = Callable[[dict[str, Any]], InvokeResult]


@dataclass
class PollStats:
    batches: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0
    function_errors: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def add(self, other: PollStats) -> None:
        self.batches += other.batches
        self.received += other.received
        self.deleted += other.deleted
        self.failed += other.failed
        self.function_errors += other.function_errors
        self.batch_sizes += other.batch_sizes


def to_lambda_record(msg: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS ``ReceiveMessage`` message → a record of Lambda's SQS event."""
    attributes = {k: str(v) for k, v in msg.get("Attributes", {}).items()}
    message_attributes = {
        name: {
            "stringValue": a.get("StringValue"),
            "binaryValue": a.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": a.get("DataType", "String"),
        }
        for name, a in msg.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": msg["MessageId"],
        "receiptHandle": msg["ReceiptHandle"],
        "body": msg["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": msg.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


@dataclass
class SqsPoller:
    sqs: Any
    queue_url: str
    queue_arn: str
    invoke: Invoke
    batch_size: int = 10
    wait_seconds: int = 1
    region: str = "us-east-1"
    stats: PollStats = field(default_factory=PollStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll_once(self) -> PollStats:
        """One receive → invoke → delete cycle. A ``batch_size`` over 10 (SQS's most per ReceiveMessage)
        gathers receives until it is full or the queue has nothing more, as the event source mapping does
        with a batching window."""
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(self.batch_size - len(messages), 10),
                WaitTimeSeconds=self.wait_seconds if not messages else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            more = got.get("Messages", [])
            messages += more
            if not more or self.batch_size <= 10:
                break
        stats = PollStats()
        if not messages:
            return stats
        stats.batches, stats.received = 1, len(messages)
        stats.batch_sizes.append(len(messages))
        records = [to_lambda_record(m, self.queue_arn, self.region) for m in messages]
        result = self.invoke({"Records": records})
        if result.error or not isinstance(result.payload, dict):
            stats.function_errors += 1
            stats.failed = len(messages)  # nothing deleted: all return after the visibility timeout
        else:
            failed_ids = {f["itemIdentifier"] for f in result.payload.get("batchItemFailures", [])}
            done = [m for m in messages if m["MessageId"] not in failed_ids]
            stats.failed = len(messages) - len(done)
            if done:
                for start in range(0, len(done), 10):  # DeleteMessageBatch takes 10 at most
                    resp = self.sqs.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                 for i, m in enumerate(done[start : start + 10])],
                    )  # fmt: skip
                    stats.deleted += len(resp.get("Successful", []))
        self.stats.add(stats)
        return stats

    def queue_depth(self) -> int:
        """Visible + in-flight + delayed messages (what is still to be delivered or retried)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def drain(self, timeout: float = 120.0, max_batches: int = 1000) -> PollStats:
        """Poll until the queue (including in-flight retries) is empty; bounded in time and batches."""
        deadline = time.monotonic() + timeout
        total = PollStats()
        while time.monotonic() < deadline and total.batches < max_batches:
            total.add(self.poll_once())
            if self.queue_depth() == 0:
                return total
        raise TimeoutError(f"queue not drained after {timeout:.0f}s ({total})")

    # --- background mode (the local stack) ---------------------------------------------------------
    def start(self) -> SqsPoller:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sqs-poller", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                self._stop.wait(1.0)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
