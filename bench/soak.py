"""Load with faults: thousands of S3 events through the local stack, then the table must equal S3 exactly.

    python -m bench.soak --model build/model [--events 10000] [--functions 2]      # make soak

The production topology on loopback: moto (S3, SQS with redrive to a DLQ, DynamoDB), several S3 functions
under the Runtime Interface Emulator, one SQS poller each (the event source mapping's concurrency). The
workload puts, overwrites and deletes objects in S3 and sends S3's notifications for them as S3 does:
at least once and in no particular order (each carries its sequencer; 10% are delivered twice, and every
window of 40 is shuffled, so a put and its delete can arrive reversed), plus a few malformed messages that
must end in the DLQ. Faults while it runs: S3 answers 503 SlowDown or slowly, DynamoDB throttles in
windows and is down for a while, and a function process is killed mid-batch every so often (SIGKILL, then
restarted: its batch comes back after the visibility timeout).

At the end every object in the bucket has exactly its item (embedding, or failure record for a non-image)
with the object's ETag, and no item exists for a deleted key: 0 lost, 0 stale, 0 extra. The report gives
throughput, retries, the DLQ count and per-object latency. Writes bench/results/<cpu kind>/soak.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
from PIL import Image

from bench.machine import machine, results_dir
from handler import item
from handler.item import StoredItem
from handler.sinks.dynamodb import from_dynamodb
from infra.local.faults import FaultProxy, Mode
from infra.local.moto_stack import REGION, MotoStack, StackNames
from infra.local.poller import SqsPoller
from infra.local.rie import InvokeResult, LocalFunction
from layer.manifest import Manifest
from layer.settings import BUILD_DIR, LAMBDA_MB_PER_VCPU

MALFORMED_BODIES = ("this is not json", json.dumps({"Records": [{"eventSource": "aws:s3", "s3": 5}]}))


@dataclass
class SoakConfig:
    events: int = 10_000
    functions: int = 2
    seed: int = 0
    rate: float = 40.0  # notifications sent per second (the functions keep up, so writes and reads interleave)
    duplicate_rate: float = 0.10
    window: int = 40  # notifications shuffled within each window
    malformed: int = 4
    kill_every_s: float = 20.0
    s3_throttle_rate: float = 0.03
    s3_slow_rate: float = 0.03
    ddb_throttle_every_s: float = 15.0  # DynamoDB throttles for the first 2 s of every such period
    ddb_outage_s: float = 6.0  # and is down once, this long, halfway through
    visibility_timeout: int = 8
    max_receive_count: int = 5


@dataclass
class Workload:
    """What was done to S3 and sent to SQS: the expected final state is S3's own listing afterwards."""

    ops: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    duplicates: int = 0
    malformed: int = 0
    present: dict[str, bool] = field(default_factory=dict)  # key → is an image


def _image(rng: random.Random) -> tuple[bytes, str]:
    pixels = np.frombuffer(rng.randbytes(24 * 24 * 3), dtype=np.uint8).reshape(24, 24, 3)
    fmt = rng.choice(["PNG", "JPEG"])
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue(), "jpg" if fmt == "JPEG" else "png"


def _record(bucket: str, key: str, name: str, seq: int, *, size: int = 0, etag: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": f"{seq:016X}"}
    if name.startswith("ObjectCreated"):
        obj.update(size=size, eTag=etag)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }


def generate(cfg: SoakConfig, stack: MotoStack, stop: threading.Event) -> Workload:
    """Do ``cfg.events`` S3 operations and send their notifications (shuffled, some twice), paced."""
    rng = random.Random(cfg.seed)
    s3, sqs, bucket = stack.client("s3"), stack.client("sqs"), stack.names.bucket
    work = Workload()
    window: list[str] = []
    late: list[str] = []

    def flush() -> None:
        rng.shuffle(window)
        window.extend(late[: len(late) // 2])  # duplicates delivered a window or two later
        del late[: len(late) // 2]
        for i in range(0, len(window), 10):
            entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(window[i : i + 10])]
            sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
        work.sent += len(window)
        window.clear()

    malformed_at = {int(cfg.events * (k + 1) / (cfg.malformed + 1)) for k in range(cfg.malformed)}
    t0 = time.monotonic()
    for i in range(cfg.events):
        if stop.is_set():
            break
        keys = list(work.present)
        r = rng.random()
        if keys and r < 0.15:
            op, key = "overwrite", rng.choice(keys)
        elif keys and r < 0.27:
            op, key = "delete", rng.choice(keys)
        elif r < 0.32:
            op, key = "non_image", f"soak/docs/note {i}.txt"
        else:
            op, key = "put", rng.choice([f"soak/img/{i:06d}", f"soak/dir one/ü-{i}", f"soak/{i % 97}/{i}"])
        if op == "delete":
            s3.delete_object(Bucket=bucket, Key=key)
            work.present.pop(key)
            record = _record(bucket, key, "ObjectRemoved:Delete", i + 1)
        else:
            if op == "non_image":
                data, is_image = f"not an image {i}\n".encode(), False
            else:
                data, ext = _image(rng)
                is_image = True
                if op == "put":
                    key = f"{key}.{ext}"
            etag = s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
            work.present[key] = is_image
            record = _record(bucket, key, "ObjectCreated:Put", i + 1, size=len(data), etag=etag)
        work.ops[op] += 1
        body = json.dumps({"Records": [record]})
        window.append(body)
        if rng.random() < cfg.duplicate_rate:
            late.append(body)
            work.duplicates += 1
        if i in malformed_at:
            window.append(MALFORMED_BODIES[work.malformed % len(MALFORMED_BODIES)])
            work.malformed += 1
        if len(window) >= cfg.window:
            flush()
            time.sleep(max(0.0, t0 + (i + 1) / cfg.rate - time.monotonic()))
    window.extend(late)
    late.clear()
    flush()
    return work


class Functions:
    """The S3 function instances, each with a poller; ``kill_one`` crashes one mid-batch and restarts it."""

    def __init__(self, stack: MotoStack, env: dict[str, str], n: int, model: Path) -> None:
        self.busy = [threading.Event() for _ in range(n)]
        self.fns = [
            LocalFunction(
                "handler.s3.lambda_handler",
                env={**env, "MODEL_DIR": str(model)},
                name=f"soak-{i}",
                timeout_s=60,
                memory_mb=LAMBDA_MB_PER_VCPU,
            )
            for i in range(n)
        ]
        self.pollers = [
            SqsPoller(stack.client("sqs"), stack.queue_url, stack.queue_arn, self._invoker(i), wait_seconds=1)
            for i in range(n)
        ]
        self.kills = 0
        self.invoke_errors = 0

    def _invoker(self, i: int) -> Any:
        def invoke(event: dict[str, Any]) -> InvokeResult:
            self.busy[i].set()
            try:
                return self.fns[i].invoke(event)
            except OSError:  # killed mid-invoke: the batch is not deleted and returns after the timeout
                self.invoke_errors += 1
                return InvokeResult(payload=None, error=True, wall_ms=0.0)
            finally:
                self.busy[i].clear()

        return invoke

    def start(self) -> Functions:
        for fn, poller in zip(self.fns, self.pollers, strict=True):
            fn.start()
            poller.start()
        return self

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.fns))
        self.busy[i].wait(timeout=10)  # mid-batch, if one comes
        proc = self.fns[i]._proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            self.kills += 1
        self.fns[i].start()  # a new execution environment: INIT again

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        for fn in self.fns:
            fn.stop()

    def logs(self) -> list[dict[str, Any]]:
        records = []
        for fn in self.fns:
            for line in fn.logs().splitlines():
                if line.startswith("{") and '"object processed"' in line:
                    records.append(json.loads(line))
        return records


def _scan(ddb: Any, table: str) -> dict[str, StoredItem]:
    items: dict[str, StoredItem] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for typed in page["Items"]:
            stored = StoredItem(from_dynamodb(typed))
            items[str(stored.attributes[item.PK])] = stored
    return items


def _objects(s3: Any, bucket: str) -> dict[str, str]:
    objects: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            objects[obj["Key"]] = obj["ETag"].strip('"')
    return objects


def check(stack: MotoStack, work: Workload) -> dict[str, Any]:
    """The table against S3's final state, and the DLQ against the malformed messages."""
    bucket = stack.names.bucket
    objects = _objects(stack.client("s3"), bucket)
    items = _scan(stack.client("dynamodb"), stack.names.table)
    lost, stale, wrong_kind = [], [], []
    for key, etag in objects.items():
        stored = items.get(item.pk(bucket, key))
        if stored is None:
            lost.append(key)
        elif stored.attributes.get(item.ETAG) != etag:
            stale.append(key)
        elif stored.has_embedding != work.present[key]:
            wrong_kind.append(key)
    expected = {item.pk(bucket, key) for key in objects}
    extra = sorted(pk for pk in items if pk not in expected)
    sqs = stack.client("sqs")
    dlq: list[str] = []
    while msgs := sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10).get("Messages", []):
        dlq += [m["Body"] for m in msgs]
        sqs.delete_message_batch(
            QueueUrl=stack.dlq_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
        )
    return {
        "objects": len(objects),
        "items": len(items),
        "lost": lost[:20],
        "stale": stale[:20],
        "extra": extra[:20],
        "wrong_kind": wrong_kind[:20],
        "counts": {"lost": len(lost), "stale": len(stale), "extra": len(extra), "wrong_kind": len(wrong_kind)},
        "dlq": len(dlq),
        "dlq_unexpected": [b[:200] for b in dlq if b not in MALFORMED_BODIES],
    }


def run(cfg: SoakConfig, model: Path, log: Any = print) -> dict[str, Any]:
    names = StackNames(
        notifications=False,
        visibility_timeout=cfg.visibility_timeout,
        max_receive_count=cfg.max_receive_count,
        dimension=Manifest.read(model).dim,
    )
    rng = random.Random(cfg.seed + 1)
    t_start = time.monotonic()
    outage: dict[str, float] = {}

    def s3_faults() -> Mode:
        r = rng.random()
        return (
            "throttle"
            if r < cfg.s3_throttle_rate
            else "slow"
            if r < cfg.s3_throttle_rate + cfg.s3_slow_rate
            else "pass"
        )

    def ddb_faults() -> Mode:
        now = time.monotonic()
        if outage and outage["from"] <= now < outage["to"]:
            return "down"
        return "throttle" if (now - t_start) % cfg.ddb_throttle_every_s < 2.0 else "pass"

    with MotoStack(names=names) as stack:
        s3_proxy = FaultProxy(stack.endpoint, flavor="s3", chooser=s3_faults).start()
        ddb_proxy = FaultProxy(stack.endpoint, flavor="dynamodb", chooser=ddb_faults).start()
        env = stack.function_env(AWS_ENDPOINT_URL_S3=s3_proxy.endpoint, AWS_ENDPOINT_URL_DYNAMODB=ddb_proxy.endpoint)
        functions = Functions(stack, env, cfg.functions, model).start()
        stop = threading.Event()

        def chaos() -> None:
            while not stop.wait(cfg.kill_every_s):
                functions.kill_one(rng)

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        try:
            t0 = time.monotonic()
            log(f"soak: {cfg.events} events through {cfg.functions} functions ...")
            sender = threading.Thread(target=lambda: result.update(work=generate(cfg, stack, stop)), daemon=True)
            result: dict[str, Any] = {}
            sender.start()
            half = cfg.events / cfg.rate / 2
            time.sleep(min(half, 60))
            outage.update({"from": time.monotonic(), "to": time.monotonic() + cfg.ddb_outage_s})
            sender.join()
            work: Workload = result["work"]
            sent_s = time.monotonic() - t0
            deadline = time.monotonic() + 300 + cfg.events / 5
            while functions.pollers[0].queue_depth() > 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("the queue did not drain")
                time.sleep(1)
            duration = time.monotonic() - t0
        finally:
            stop.set()
            killer.join(timeout=cfg.kill_every_s + 30)
            functions.stop()
            s3_proxy.stop()
            ddb_proxy.stop()
        verdict = check(stack, work)
    records = functions.logs()
    outcomes = Counter(r.get("outcome") for r in records)
    latencies = sorted(r["duration_ms"] for r in records if r.get("outcome") in ("embedded", "failed"))
    received = sum(p.stats.received for p in functions.pollers)
    report = {
        "machine": machine(),
        "config": asdict(cfg),
        "workload": {
            "ops": dict(work.ops),
            "messages_sent": work.sent,
            "duplicates": work.duplicates,
            "malformed": work.malformed,
        },
        "seconds": round(duration, 1),
        "sending_seconds": round(sent_s, 1),
        "throughput_events_per_s": round(work.sent / duration, 1),
        "receives": received,
        "retries": received - work.sent,
        "invokes": sum(p.stats.batches for p in functions.pollers),
        "function_errors": sum(p.stats.function_errors for p in functions.pollers) + functions.invoke_errors,
        "kills": functions.kills,
        "faults": {"s3": dict(s3_proxy.counts), "dynamodb": dict(ddb_proxy.counts)},
        "outcomes": dict(outcomes),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p99": round(latencies[int(len(latencies) * 0.99) - 1], 1) if latencies else None,
        },
        "check": verdict,
    }
    return report


def markdown(r: dict[str, Any]) -> str:
    c, w = r["check"], r["workload"]
    return "\n".join(
        [
            f"Machine: {r['machine']['summary']}. {r['config']['events']} S3 operations "
            f"({', '.join(f'{k} {v}' for k, v in sorted(w['ops'].items()))}), {w['messages_sent']} messages "
            f"({w['duplicates']} duplicates, {w['malformed']} malformed), {r['config']['functions']} functions.",
            "",
            "| lost | stale | extra | DLQ (malformed sent) | events/s | retries | function errors | kills "
            "| S3 faults (503 / slow) | DynamoDB faults (throttle / down) | p50 / p99 ms per object |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
            f"| {c['counts']['lost']} | {c['counts']['stale']} | {c['counts']['extra']} "
            f"| {c['dlq']} ({w['malformed']}) "
            f"| {r['throughput_events_per_s']} | {r['retries']} | {r['function_errors']} | {r['kills']} "
            f"| {r['faults']['s3']['throttle']} / {r['faults']['s3']['slow']} "
            f"| {r['faults']['dynamodb']['throttle']} / {r['faults']['dynamodb']['down']} "
            f"| {r['latency_ms']['p50']} / {r['latency_ms']['p99']} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=BUILD_DIR)
    p.add_argument("--events", type=int, default=SoakConfig.events)
    p.add_argument("--functions", type=int, default=SoakConfig.functions)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=results_dir() / "soak.json")
    args = p.parse_args(argv)
    report = run(SoakConfig(events=args.events, functions=args.functions, seed=args.seed), args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    ok = not any(report["check"]["counts"].values()) and not report["check"]["dlq_unexpected"]
    return 0 if ok and report["check"]["dlq"] == report["workload"]["malformed"] else 1


if __name__ == "__main__":
    sys.exit(main())
