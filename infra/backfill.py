"""``clip-lambda backfill``: embed the objects already in the stack's bucket, on Step Functions.

    clip-lambda backfill --stack clip-lambda [--prefix photos/] [--manifest listing|csv|inventory]
        [--manifest-key manifests/...] [--batch-size 50] [--concurrency 500] [--model-id ID] [--wait]

Starts an execution of the stack's ``BackfillStateMachine`` (a Distributed Map: the bucket's listing, or a
CSV / S3 Inventory manifest in the reports bucket, in batches to the S3 function) and prints its ARN. With
``--wait`` it follows the map run (DescribeMapRun's item counts) with a progress line until the execution
ends, then prints a summary and where the per-batch, per-object report is. Objects already embedded by the
deployed model are skipped by one read, so a re-run costs the listing and those reads; ``--model-id``
makes every batch refuse to run unless the function embeds with that model (deploy it first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

MANIFEST_TYPES = {"listing": "LISTING", "csv": "CSV", "inventory": "MANIFEST"}
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass(frozen=True)
class Stack:
    state_machine_arn: str
    bucket: str
    reports_bucket: str

    @classmethod
    def from_outputs(cls, outputs: list[dict[str, str]]) -> Stack:
        by_key = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        return cls(by_key["BackfillStateMachineArn"], by_key["BucketName"], by_key["BackfillReportsBucketName"])


def execution_input(args: argparse.Namespace) -> dict[str, Any]:
    """Every field the state machine's paths read (a missing one would be a runtime error there)."""
    kind = MANIFEST_TYPES[args.manifest]
    if kind != "LISTING" and not (args.manifest_key or "").startswith("manifests/"):
        raise SystemExit("error: --manifest-key must name an object under manifests/ of the reports bucket")
    return {
        "prefix": args.prefix or "",
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "model_id": args.model_id,
        "keys_url_encoded": kind == "MANIFEST",  # S3 Inventory files URL-encode their keys
        "manifest": {"input_type": kind, "key": args.manifest_key or ""},
    }


@dataclass(frozen=True)
class Progress:
    total: int
    succeeded: int
    failed: int
    running: int
    pending: int

    @classmethod
    def of(cls, map_run: dict[str, Any]) -> Progress:
        c = map_run.get("itemCounts", {})
        failed = int(c.get("failed", 0)) + int(c.get("timedOut", 0)) + int(c.get("aborted", 0))
        return cls(int(c.get("total", 0)), int(c.get("succeeded", 0)), failed, int(c.get("running", 0)),
                   int(c.get("pending", 0)))  # fmt: skip

    def line(self, seconds: float, width: int = 30) -> str:
        done = self.succeeded + self.failed
        frac = done / self.total if self.total else 0.0
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        rate = done / seconds if seconds > 0 else 0.0
        eta = f", ETA {(self.total - done) / rate / 60:.0f} min" if rate > 0 and self.total > done else ""
        return (
            f"[{bar}] {frac:6.1%}  {done:,}/{self.total:,} done ({self.failed:,} failed, {self.running:,} running)"
            f"  {rate:,.1f} objects/s{eta}"
        )


def watch(sfn: Any, execution_arn: str, out: TextIO, poll_s: float = 5.0) -> tuple[str, Progress | None]:
    """Follow the execution and its map run until the execution ends: (status, the map run's last counts)."""
    t0 = time.monotonic()
    progress: Progress | None = None
    while True:
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
        if runs:
            progress = Progress.of(sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]))
            print("\r" + progress.line(time.monotonic() - t0), end="", file=out, flush=True)
        if status in TERMINAL:
            print(file=out)
            return status, progress
        time.sleep(poll_s)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clip-lambda backfill", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="clip-lambda", help="the deployed stack (its outputs name everything)")
    ap.add_argument("--bucket", help="must be the stack's bucket (checked); default: it")
    ap.add_argument("--prefix", default="", help="only keys under this prefix (listing)")
    ap.add_argument("--manifest", choices=sorted(MANIFEST_TYPES), default="listing")
    ap.add_argument("--manifest-key", help="csv/inventory: the manifest's key under manifests/ in the reports bucket")
    ap.add_argument("--batch-size", type=int, default=50, help="objects per invocation (default 50)")
    ap.add_argument("--concurrency", type=int, default=500, help="batches at once (Lambda concurrency used)")
    ap.add_argument("--model-id", help="refuse to run unless the deployed function embeds with this model")
    ap.add_argument("--name", help="execution name (default backfill-<UTC time>)")
    ap.add_argument("--wait", action="store_true", help="show progress until the execution ends")
    ap.add_argument("--region")
    return ap


def main(argv: list[str] | None = None, *, session: Any = None, out: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    if not 1 <= args.batch_size <= 1000 or not 1 <= args.concurrency <= 10000:
        print("error: --batch-size 1..1000 and --concurrency 1..10000 (a Distributed Map's limits)", file=out)
        return 2
    payload = execution_input(args)
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=args.region)
    stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    stack = Stack.from_outputs(stacks[0].get("Outputs", []))
    if args.bucket and args.bucket != stack.bucket:
        print(f"error: stack {args.stack} backfills its own bucket {stack.bucket}, not {args.bucket}", file=out)
        return 2
    sfn = session.client("stepfunctions")
    name = args.name or "backfill-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    arn = sfn.start_execution(stateMachineArn=stack.state_machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    print(arn)
    reports = f"s3://{stack.reports_bucket}/runs/{name}/"
    if not args.wait:
        print(f"started; follow it with the Step Functions console, or again with --wait. Report: {reports}", file=out)
        return 0
    status, progress = watch(sfn, arn, out)
    summary = {"execution": arn, "status": status, "report": reports}
    if progress:
        summary.update(total=progress.total, succeeded=progress.succeeded, failed=progress.failed)
    print(json.dumps(summary))
    if progress and progress.failed:
        print(f"{progress.failed:,} objects in failed batches: see FAILED_*.json under {reports}", file=out)
    return 0 if status == "SUCCEEDED" and not (progress and progress.failed) else 1


if __name__ == "__main__":
    sys.exit(main())
