"""``clip-lambda backfill``: embed the objects already in the stack's bucket, on Step Functions.

    clip-lambda backfill --stack clip-lambda [--prefix photos/] [--manifest listing|csv|inventory]
        [--manifest-key KEY] [--batch-size N] [--concurrency N] [--model-id ID] [--wait]

Starts an execution of the stack's ``BackfillStateMachine`` (a Distributed Map over the bucket's listing, a
CSV manifest under manifests/ of the reports bucket, or an S3 Inventory report, which the stack's
``ImagesInventory`` parameter has S3 deliver to inventory/<bucket>/images/<YYYY-MM-DDTHH-MMZ>/manifest.json of
the reports bucket: ``--manifest inventory`` without ``--manifest-key`` takes the newest one and says which),
in batches to the S3 function, and prints its ARN. With ``--wait`` it follows the map run (DescribeMapRun's
item counts) with a progress line until the execution ends, then prints a summary and where the per-batch,
per-object report is. Objects already embedded by the deployed model are skipped by one read, so a re-run
costs the listing and those reads; ``--model-id`` makes every batch refuse to run unless the function embeds
with that model (deploy it first).

Concurrency: every running batch is one Express child execution that invokes the S3 function once at a
time, so ``--concurrency`` is the Lambda concurrency the backfill takes from the account (a Distributed Map
runs at most 10,000 at once). By default it is derived from the account's limits (``lambda:
GetAccountSettings``) and the stack's parameters (``DescribeStacks``), leaving the live functions their room,
and printed with its reasons (``choose_concurrency``); an explicit ``--concurrency`` above that bound is
lowered to it, with a warning. With a vector index, the defaults come from its write limits too
(``index_batch_size``, ``index_concurrency``): batches of 100-500 objects, one PutVectors each, and as many
at once as keep the index at 2,500 vectors/s; the progress line shows the rate against that limit.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

MANIFEST_TYPES = {"listing": "LISTING", "csv": "CSV", "inventory": "MANIFEST"}
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
# Where each manifest kind may be: the state machine's role reads manifests/* and inventory/* of the reports
# bucket (template.yaml, BackfillRole); S3 Inventory delivers under inventory/ (a copy under manifests/ works).
MANIFEST_PREFIXES = {"CSV": ("manifests/",), "MANIFEST": ("inventory/", "manifests/")}
READABLE_PREFIXES = ("manifests/", "inventory/")
INVENTORY_STAMP = "%Y-%m-%dT%H-%MZ"
MAP_MAX_CONCURRENCY = 10_000  # a Distributed Map's MaxConcurrency limit
DEFAULT_BATCH = 50  # objects per invocation without a vector index
MARGIN = 0.05  # of the pool the backfill draws from, left for other functions and bursts
# The API function's share of the pool when it has no reserved concurrency: the API stage admits at most
# ApiThrottleRate requests per second (steady and burst), and one takes under a second (cold ~0.55 s, warm
# ~35 ms, README), so it runs at most ApiThrottleRate x 1 s executions at once.
API_SECONDS_PER_REQUEST = 1.0
# template.yaml's defaults of the parameters the concurrency derivation reads, for a stack whose description
# lacks one (tests/infra/test_backfill.py checks that they are the template's).
TEMPLATE_DEFAULTS = {
    "S3FunctionTimeout": "60",
    "S3MaxConcurrency": "5",
    "S3ReservedConcurrency": "-1",
    "ApiReservedConcurrency": "-1",
    "ApiThrottleRate": "20",
}


class UsageError(Exception):
    """Refused before anything starts: printed as ``error: ...``, exit status 2."""


@dataclass(frozen=True)
class Stack:
    state_machine_arn: str
    bucket: str
    reports_bucket: str
    parameters: dict[str, str] = field(default_factory=dict)
    indexed: bool = False  # the stack has a vector index (its VectorIndexArn output)

    @classmethod
    def from_outputs(cls, outputs: list[dict[str, str]], parameters: dict[str, str] | None = None) -> Stack:
        by_key = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        return cls(by_key["BackfillStateMachineArn"], by_key["BucketName"], by_key["BackfillReportsBucketName"],
                   dict(parameters or {}), bool(by_key.get("VectorIndexArn")))  # fmt: skip

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Stack:
        """A DescribeStacks entry: its outputs and parameters."""
        parameters = {p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in description.get("Parameters", [])}
        return cls.from_outputs(list(description.get("Outputs", [])), parameters)

    def parameter(self, name: str) -> int:
        return int({**TEMPLATE_DEFAULTS, **self.parameters}[name])


def execution_input(args: argparse.Namespace) -> dict[str, Any]:
    """Every field the state machine's paths read (a missing one would be a runtime error there)."""
    kind = MANIFEST_TYPES[args.manifest]
    return {
        "prefix": args.prefix or "",
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "model_id": args.model_id,
        "keys_url_encoded": kind == "MANIFEST",  # S3 Inventory files URL-encode their keys
        "manifest": {"input_type": kind, "key": args.manifest_key or ""},
    }


def check_args(args: argparse.Namespace) -> None:
    """What can be refused before any AWS call."""
    if not (args.batch_size is None or 1 <= args.batch_size <= 1000) or not (
        args.concurrency is None or 1 <= args.concurrency <= 10000
    ):
        raise UsageError("--batch-size 1..1000 and --concurrency 1..10000 (a Distributed Map's limits)")
    kind = MANIFEST_TYPES[args.manifest]
    if kind != "LISTING" and args.prefix:
        raise UsageError(f"--prefix applies to the listing only: a {args.manifest} manifest lists its own objects")
    if kind == "CSV" and not args.manifest_key:
        raise UsageError("--manifest csv needs --manifest-key: a CSV under manifests/ of the reports bucket")
    if kind != "LISTING" and args.manifest_key:
        where = MANIFEST_PREFIXES[kind]
        if not args.manifest_key.startswith(where):
            under = " or ".join(where)
            raise UsageError(f"--manifest-key must name an object under {under} of the reports bucket "
                             f"(what the backfill's role reads), not {args.manifest_key!r}")  # fmt: skip
        if kind == "MANIFEST" and not args.manifest_key.endswith("manifest.json"):
            raise UsageError("--manifest inventory reads an S3 Inventory report's manifest.json")


# ------------------------------------------------------------------------------------------- inventories
def newest_inventory_manifest(s3: Any, stack: Stack, now: datetime | None = None) -> tuple[str, str]:
    """The newest S3 Inventory report of the stack's bucket in the reports bucket (by the time S3 took it,
    from its key ``inventory/<bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.json``): its key and a line
    saying which it is."""
    base = f"inventory/{stack.bucket}/"
    pattern = re.compile(
        rf"^{re.escape(base)}(?P<config>[^/]+)/(?P<taken>\d{{4}}-\d\d-\d\dT\d\d-\d\dZ)/manifest\.json$"
    )
    found: list[tuple[str, datetime, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.reports_bucket, Prefix=base):
        for obj in page.get("Contents", []):
            m = pattern.match(obj["Key"])
            if m:
                found.append((m["taken"], obj["LastModified"], obj["Key"]))
    if not found:
        raise UsageError(
            f"no S3 Inventory report under s3://{stack.reports_bucket}/{base}: deploy with ImagesInventory=Daily "
            "or Weekly and wait for the first report (up to 48 hours), or use --manifest listing"
        )
    taken, _, key = max(found)
    when = datetime.strptime(taken, INVENTORY_STAMP).replace(tzinfo=UTC)
    hours = ((now or datetime.now(UTC)) - when).total_seconds() / 3600
    line = (f"inventory manifest: s3://{stack.reports_bucket}/{key} (the newest of {len(found)}, taken {taken}, "
            f"{hours:,.0f} h ago: objects uploaded since are embedded by their live events)")  # fmt: skip
    return key, line


def check_inventory_manifest(s3: Any, stack: Stack, key: str) -> dict[str, Any]:
    """The manifest.json, checked for what the state machine needs: a CSV report of the stack's bucket,
    delivered to the reports bucket under a prefix the role reads, with Bucket and Key columns."""
    from botocore.exceptions import ClientError

    where = f"s3://{stack.reports_bucket}/{key}"
    try:
        body = s3.get_object(Bucket=stack.reports_bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise UsageError(f"cannot read {where}: {exc.response.get('Error', {}).get('Code', exc)}") from exc
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not {"fileFormat", "fileSchema", "files"} <= manifest.keys():
        raise UsageError(f"{where} is not an S3 Inventory manifest.json (fileFormat, fileSchema, files)")
    if manifest["fileFormat"] != "CSV":
        raise UsageError(f"{where} is a {manifest['fileFormat']} inventory: Step Functions reads CSV inventories only")
    if manifest.get("sourceBucket") != stack.bucket:
        raise UsageError(f"{where} lists bucket {manifest.get('sourceBucket')!r}, not the stack's {stack.bucket}")
    columns = [c.strip() for c in str(manifest["fileSchema"]).split(",")]
    if not {"Bucket", "Key"} <= set(columns):
        raise UsageError(f"{where} has no Bucket and Key columns ({manifest['fileSchema']})")
    destination = str(manifest.get("destinationBucket", "")).split(":::", 1)[-1]
    if destination != stack.reports_bucket:
        raise UsageError(f"{where} has its data files in {destination!r}, not the reports bucket")
    unreadable = [
        f.get("key", "") for f in manifest["files"] if not str(f.get("key", "")).startswith(READABLE_PREFIXES)
    ]
    if unreadable:
        raise UsageError(f"{where} lists data files the backfill's role cannot read (not under inventory/): "
                         f"{unreadable[:3]}")  # fmt: skip
    return manifest


# ------------------------------------------------------------------------------------------- index sizing
# The S3 function's time per object in a backfill batch: 12-MP JPEGs at 1,024 MB on an AVX2-only x86 CPU
# (Lambda's x86 fleet), billed ms per image measured by bench/cost.py (docs/cost.md). Smaller images and
# VNNI CPUs are faster: the index then throttles the excess and the clients' adaptive retries slow down to it.
SECONDS_PER_OBJECT = 0.2
MIN_BATCH = 100  # one PutVectors per invocation: at most 10 per 1,000 objects
BATCH_TIME_SHARE = 0.5  # of the function's timeout a batch may take at SECONDS_PER_OBJECT


def index_batch_size(timeout_s: int, seconds_per_object: float) -> int:
    """Objects per invocation: one PutVectors holds them (≤ 500, the request limit), at least ``MIN_BATCH``
    (≤ 10 requests per 1,000 vectors, far below the 1,000 requests/s limit at any concurrency the vectors/s
    limit allows), and within half the function's timeout."""
    from handler.vector_index import MAX_WRITE_BATCH

    fits = math.floor(timeout_s * BATCH_TIME_SHARE / seconds_per_object)
    return max(MIN_BATCH, min(MAX_WRITE_BATCH, fits))


def index_concurrency(seconds_per_object: float) -> int:
    """Invocations at once that keep one index at its write limit: 2,500 vectors/s x the seconds an object
    takes (each invocation writes about one vector per ``seconds_per_object``)."""
    from handler.vector_index import WRITE_VECTORS_PER_S

    return math.ceil(WRITE_VECTORS_PER_S * seconds_per_object)


# ------------------------------------------------------------------------------------------- concurrency
@dataclass(frozen=True)
class ConcurrencyChoice:
    value: int
    line: str  # what was chosen and why, one line
    warning: bool = False


def choose_concurrency(
    settings: Mapping[str, Any],
    parameters: Mapping[str, str],
    requested: int | None = None,
    index_bound: int | None = None,
) -> ConcurrencyChoice:
    """The backfill's concurrency from GetAccountSettings' ``AccountLimit`` and the stack's parameters.

    The backfill invokes the S3 function, which draws from its reserved concurrency if it has one
    (``S3ReservedConcurrency``), else from the account's unreserved pool, shared with the API function
    (unless that one is reserved apart) and every other unreserved function. From that pool it leaves the
    live functions their room: the SQS mapping's ``S3MaxConcurrency`` (throttled SQS invokes count receives
    towards the dead-letter queue), plus the API function's ``ApiThrottleRate`` x 1 s where it shares the
    pool, plus a 5% margin (at least 1). The rest, at most 10,000 (a Distributed Map's limit) and at least
    1, is the bound; ``requested`` above it is lowered to it, with a warning. ``index_bound`` (a stack with a
    vector index: ``index_concurrency``) caps the default, not an explicit ``requested``: more would only be
    throttled by the index."""
    limits = settings["AccountLimit"]
    limit = int(limits["ConcurrentExecutions"])
    unreserved = int(limits.get("UnreservedConcurrentExecutions", limit))
    p = {**TEMPLATE_DEFAULTS, **parameters}
    sqs, s3_reserved = int(p["S3MaxConcurrency"]), int(p["S3ReservedConcurrency"])
    account = f"account limit {limit:,}, unreserved {unreserved:,}"
    if s3_reserved >= 0:
        pool, live = s3_reserved, sqs
        source = f"the S3 function's reserved {s3_reserved:,} ({account}), leaving {live:,} for its SQS mapping"
    else:
        api_reserved = int(p["ApiReservedConcurrency"]) >= 0
        api = 0 if api_reserved else math.ceil(int(p["ApiThrottleRate"]) * API_SECONDS_PER_REQUEST)
        pool, live = unreserved, sqs + api
        api_text = "API reserved apart" if api_reserved else f"API {api:,}"
        source = f"{account}, leaving {live:,} for the live functions (SQS mapping {sqs:,}, {api_text})"
    margin = max(1, math.ceil(pool * MARGIN))
    room = pool - live - margin
    bound = max(1, min(room, MAP_MAX_CONCURRENCY))
    why = f"{source} and a {MARGIN:.0%} margin ({margin:,})"
    if room < 1:
        why += "; no room left: 1, the minimum (its invokes are throttled and retried while the pool is busy)"
    elif room > MAP_MAX_CONCURRENCY:
        why += f"; a Distributed Map runs at most {MAP_MAX_CONCURRENCY:,}"
    if requested is None:
        if index_bound is not None and index_bound < bound:
            why = (f"the vector index's 2,500 vectors/s at ~{index_bound / 2500:.2f} s per object (of {bound:,} the "
                   f"account allows: {why})")  # fmt: skip
            return ConcurrencyChoice(index_bound, f"concurrency {index_bound:,}: {why}")
        return ConcurrencyChoice(bound, f"concurrency {bound:,}: {why}")
    if requested > bound:
        return ConcurrencyChoice(bound, f"warning: --concurrency {requested:,} lowered to {bound:,}: {why}", True)
    return ConcurrencyChoice(requested, f"concurrency {requested:,} (as asked; at most {bound:,}: {why})")


def account_concurrency(
    lambda_client: Any, stack: Stack, requested: int | None, index_bound: int | None = None
) -> ConcurrencyChoice:
    """``choose_concurrency`` with the account's settings; where they cannot be read, an explicit
    ``requested`` is used unchecked (with a warning) and no default is guessed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        settings = lambda_client.get_account_settings()
    except (BotoCoreError, ClientError) as exc:
        reason = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        reason = f"GetAccountSettings: {reason or type(exc).__name__}"
        if requested is None:
            raise UsageError(
                f"cannot read the account's Lambda concurrency ({reason}): pass --concurrency N, at most the "
                f"unreserved concurrency less what the live functions need (S3MaxConcurrency "
                f"{stack.parameter('S3MaxConcurrency')} + ApiThrottleRate {stack.parameter('ApiThrottleRate')})"
            ) from exc
        return ConcurrencyChoice(requested, f"warning: --concurrency {requested:,} not checked ({reason})", True)
    return choose_concurrency(settings, stack.parameters, requested, index_bound)


# ------------------------------------------------------------------------------------------- progress
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

    def line(self, seconds: float, width: int = 30, indexed: bool = False) -> str:
        """The progress line; with a vector index, the write rate against its 2,500 vectors/s (each object
        done is at most one vector: failures and deletions write none)."""
        from handler.vector_index import WRITE_VECTORS_PER_S

        done = self.succeeded + self.failed
        frac = done / self.total if self.total else 0.0
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        rate = done / seconds if seconds > 0 else 0.0
        eta = f", ETA {(self.total - done) / rate / 60:.0f} min" if rate > 0 and self.total > done else ""
        limit = f" (≤ {rate:,.0f} vectors/s of the index's {WRITE_VECTORS_PER_S:,})" if indexed else ""
        return (
            f"[{bar}] {frac:6.1%}  {done:,}/{self.total:,} done ({self.failed:,} failed, {self.running:,} running)"
            f"  {rate:,.1f} objects/s{limit}{eta}"
        )


def watch(
    sfn: Any, execution_arn: str, out: TextIO, poll_s: float = 5.0, indexed: bool = False
) -> tuple[str, Progress | None]:
    """Follow the execution and its map run until the execution ends: (status, the map run's last counts)."""
    t0 = time.monotonic()
    progress: Progress | None = None
    while True:
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
        if runs:
            progress = Progress.of(sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]))
            print("\r" + progress.line(time.monotonic() - t0, indexed=indexed), end="", file=out, flush=True)
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
    ap.add_argument(
        "--manifest-key",
        help="csv: the CSV's key under manifests/ of the reports bucket; inventory: an S3 Inventory manifest.json "
        "(inventory/<bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.json; default: the newest)",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        help="objects per invocation (default: derived from the vector index's limits and the function's timeout, "
        "100-500: one PutVectors per batch; 50 without an index)",
    )
    ap.add_argument(
        "--seconds-per-object",
        type=float,
        default=SECONDS_PER_OBJECT,
        help=f"the function's time per object, for the index-derived defaults (default {SECONDS_PER_OBJECT}: "
        "12-MP JPEGs at 1,024 MB on AVX2)",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        help="batches at once = Lambda concurrency used (default: what the account leaves the live functions; "
        "a larger value is lowered to that)",
    )
    ap.add_argument("--model-id", help="refuse to run unless the deployed function embeds with this model")
    ap.add_argument("--name", help="execution name (default backfill-<UTC time>)")
    ap.add_argument("--wait", action="store_true", help="show progress until the execution ends")
    ap.add_argument("--region")
    return ap


def main(argv: list[str] | None = None, *, session: Any = None, out: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args, session, out)
    except UsageError as exc:
        print(f"error: {exc}", file=out)
        return 2


def run(args: argparse.Namespace, session: Any, out: TextIO) -> int:
    check_args(args)
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=args.region)
    stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    stack = Stack.from_description(stacks[0])
    if args.bucket and args.bucket != stack.bucket:
        raise UsageError(f"stack {args.stack} backfills its own bucket {stack.bucket}, not {args.bucket}")
    if MANIFEST_TYPES[args.manifest] == "MANIFEST":
        s3 = session.client("s3")
        if not args.manifest_key:
            args.manifest_key, line = newest_inventory_manifest(s3, stack)
            print(line, file=out)
        check_inventory_manifest(s3, stack, args.manifest_key)
    index_bound = index_concurrency(args.seconds_per_object) if stack.indexed else None
    if args.batch_size is None:
        timeout = stack.parameter("S3FunctionTimeout")
        args.batch_size = index_batch_size(timeout, args.seconds_per_object) if stack.indexed else DEFAULT_BATCH
        why = (f"one PutVectors per batch, within half the {timeout} s timeout at {args.seconds_per_object} s per "
               "object" if stack.indexed else "no vector index")  # fmt: skip
        print(f"batch size {args.batch_size}: {why}", file=out)
    choice = account_concurrency(session.client("lambda"), stack, args.concurrency, index_bound)
    print(choice.line, file=out)
    args.concurrency = choice.value
    payload = execution_input(args)
    sfn = session.client("stepfunctions")
    name = args.name or "backfill-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    arn = sfn.start_execution(stateMachineArn=stack.state_machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    print(arn)
    reports = f"s3://{stack.reports_bucket}/runs/{name}/"
    if not args.wait:
        print(f"started; follow it in the Step Functions console (--wait follows it here). Report: {reports}", file=out)
        return 0
    status, progress = watch(sfn, arn, out, indexed=stack.indexed)
    summary = {"execution": arn, "status": status, "report": reports}
    if progress:
        summary.update(total=progress.total, succeeded=progress.succeeded, failed=progress.failed)
    print(json.dumps(summary))
    if progress and progress.failed:
        print(f"{progress.failed:,} objects in failed batches: see FAILED_*.json under {reports}", file=out)
    return 0 if status == "SUCCEEDED" and not (progress and progress.failed) else 1


if __name__ == "__main__":
    sys.exit(main())
