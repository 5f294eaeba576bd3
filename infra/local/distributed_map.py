"""A local stand-in for the backfill's Step Functions Distributed Map, run over moto and the S3 function.

LOCAL EMULATION: Step Functions does not run locally, and moto stores state machines without running their
map runs. This module runs the contract that template.yaml's ``BackfillStateMachine`` sets, read from the
template itself: the item reader (the bucket's ListObjectsV2 listing with its items' fields ``Key``,
``Etag``, ``Size``, ``LastModified`` in epoch seconds, ``StorageClass``; or a CSV manifest with a header row
from the reports bucket), ``ItemBatcher`` (``batch_size`` items per invocation, with the ``BatchInput`` the
template builds from the execution input), ``concurrency`` batches at once (one per function given: the RIE
serves one invocation at a time, like one Lambda execution environment), the ``Retry`` of the Embed task
(the errors it names, ``MaxAttempts``, ``IntervalSeconds`` x ``BackoffRate``, scaled down by
``interval_scale``), ``ToleratedFailurePercentage`` and a ``ResultWriter`` report (``SUCCEEDED_0.json``,
``FAILED_0.json`` and ``manifest.json`` under ``runs/<execution name>/<map run id>/`` of the reports bucket).
What it does not emulate: S3 Inventory manifests, Express child executions' own limits, and AWS's pacing.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

from infra.local.rie import InvokeResult

ROOT = Path(__file__).resolve().parents[2]
Invoke = Callable[[Any], InvokeResult]


@dataclass(frozen=True)
class RetryRule:
    errors: tuple[str, ...]
    max_attempts: int
    interval_s: float
    backoff: float
    max_delay_s: float | None = None

    def delay(self, retry: int) -> float:
        d = self.interval_s * self.backoff ** (retry - 1)
        return min(d, self.max_delay_s) if self.max_delay_s else d


@dataclass(frozen=True)
class MapDefinition:
    """What the template's Map state says, for one item source (``FromListing`` or ``FromCsv``)."""

    batch_input: dict[str, Any]
    retry: tuple[RetryRule, ...]
    tolerated_failure_percentage: float

    @classmethod
    def from_template(cls, state: str = "FromListing", template: Path = ROOT / "template.yaml") -> MapDefinition:
        from samcli.yamlhelper import yaml_parse  # the SAM CLI's parser reads the short-form intrinsics

        machine = yaml_parse(template.read_text())["Resources"]["BackfillStateMachine"]["Properties"]
        spec = machine["Definition"]["States"][state]
        embed = spec["ItemProcessor"]["States"]["Embed"]
        rules = tuple(
            RetryRule(
                errors=tuple(r["ErrorEquals"]),
                max_attempts=int(r.get("MaxAttempts", 3)),
                interval_s=float(r.get("IntervalSeconds", 1)),
                backoff=float(r.get("BackoffRate", 2.0)),
                max_delay_s=float(r["MaxDelaySeconds"]) if "MaxDelaySeconds" in r else None,
            )
            for r in embed.get("Retry", [])
        )
        return cls(spec["ItemBatcher"]["BatchInput"], rules, float(spec.get("ToleratedFailurePercentage", 0)))

    def resolve_batch_input(self, execution_input: dict[str, Any], substitutions: dict[str, str]) -> dict[str, Any]:
        """``key.$: $.field`` from the execution input; ``${Name}`` from the state machine's substitutions."""
        out: dict[str, Any] = {}
        for key, value in self.batch_input.items():
            if key.endswith(".$"):
                out[key[:-2]] = execution_input.get(str(value).removeprefix("$."))
            else:
                text = str(value)
                for name, sub in substitutions.items():
                    text = text.replace("${" + name + "}", sub)
                out[key] = text
        return out


@dataclass
class MapRunCounts:
    """The counts DescribeMapRun reports, for items and for child executions (batches)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    running: int = 0
    batches: int = 0
    batches_failed: int = 0
    retries: int = 0


@dataclass
class MapRunResult:
    status: str  # SUCCEEDED | FAILED
    counts: MapRunCounts
    report_prefix: str
    succeeded: list[dict[str, Any]] = field(default_factory=list)  # per batch: Input, Output
    failed: list[dict[str, Any]] = field(default_factory=list)  # per batch: Input, Error, Cause
    seconds: float = 0.0


def list_items(s3: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """The items Step Functions' ``s3:listObjectsV2`` reader yields."""
    items: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            items.append(
                {
                    "Etag": obj["ETag"],
                    "Key": obj["Key"],
                    "LastModified": int(obj["LastModified"].timestamp()),
                    "Size": obj["Size"],
                    "StorageClass": obj.get("StorageClass", "STANDARD"),
                }
            )
    return items


def csv_items(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """A CSV manifest with a header row (``CSVHeaderLocation: FIRST_ROW``): one item per row."""
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def batches(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class LocalDistributedMap:
    def __init__(
        self,
        s3: Any,
        images_bucket: str,
        reports_bucket: str,
        functions: Sequence[Invoke],
        *,
        interval_scale: float = 0.01,
        template: Path = ROOT / "template.yaml",
    ) -> None:
        self.s3 = s3
        self.images_bucket = images_bucket
        self.reports_bucket = reports_bucket
        self.functions = list(functions)
        self.interval_scale = interval_scale
        self.template = template
        self._lock = Lock()

    def run(
        self,
        execution_input: dict[str, Any],
        *,
        name: str | None = None,
        before_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        progress: Callable[[MapRunCounts], None] | None = None,
    ) -> MapRunResult:
        """One execution: ``execution_input`` as ``clip-lambda backfill`` sends it (prefix, batch_size,
        concurrency, model_id, keys_url_encoded, manifest). ``before_batch`` runs before each batch is
        invoked (tests delete objects there: "deleted meanwhile")."""
        t0 = time.perf_counter()
        manifest = execution_input.get("manifest") or {}
        kind = manifest.get("input_type")
        if kind == "CSV":
            definition = MapDefinition.from_template("FromCsv", self.template)
            items = csv_items(self.s3, self.reports_bucket, manifest["key"])
        elif kind in (None, "", "LISTING"):
            definition = MapDefinition.from_template("FromListing", self.template)
            items = list_items(self.s3, self.images_bucket, execution_input.get("prefix") or "")
        else:
            raise NotImplementedError(f"the local map does not read {kind} manifests")
        batch_input = definition.resolve_batch_input(execution_input, {"ImagesBucket": self.images_bucket})
        size = int(execution_input.get("batch_size") or 1)
        width = max(1, min(int(execution_input.get("concurrency") or 1), len(self.functions)))
        counts = MapRunCounts(total=len(items), pending=len(items))
        result = MapRunResult("SUCCEEDED", counts, report_prefix="")
        free = list(self.functions[:width])

        def child(batch: list[dict[str, Any]]) -> None:
            with self._lock:
                fn = free.pop()
                counts.pending -= len(batch)
                counts.running += len(batch)
            try:
                if before_batch:
                    before_batch(batch)
                self._child(fn, {"Items": batch, "BatchInput": batch_input}, definition, counts, result)
            finally:
                with self._lock:
                    free.append(fn)
                    counts.running -= len(batch)
                if progress:
                    progress(counts)

        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="map-child") as pool:
            list(pool.map(child, batches(items, size)))
        if counts.total and 100 * counts.failed / counts.total > definition.tolerated_failure_percentage:
            result.status = "FAILED"
        result.report_prefix = self._write_report(name or uuid.uuid4().hex[:12], result)
        result.seconds = time.perf_counter() - t0
        return result

    def _child(
        self,
        fn: Invoke,
        payload: dict[str, Any],
        definition: MapDefinition,
        counts: MapRunCounts,
        result: MapRunResult,
    ) -> None:
        """One child execution: the Embed task with its Retry rules."""
        attempts: dict[RetryRule, int] = {}
        while True:
            out = fn(payload)
            if not out.error:
                with self._lock:
                    counts.succeeded += len(payload["Items"])
                    counts.batches += 1
                    result.succeeded.append({"Input": payload, "Output": out.payload, "Status": "SUCCEEDED"})
                return
            body = out.payload if isinstance(out.payload, dict) else {}
            error = str(body.get("errorType", "Lambda.Unknown"))
            rule = next((r for r in definition.retry if error in r.errors or "States.ALL" in r.errors), None)
            if rule is not None and attempts.get(rule, 0) < rule.max_attempts:
                attempts[rule] = attempts.get(rule, 0) + 1
                with self._lock:
                    counts.retries += 1
                time.sleep(rule.delay(attempts[rule]) * self.interval_scale)
                continue
            cause = str(body.get("errorMessage", out.payload))
            with self._lock:
                counts.failed += len(payload["Items"])
                counts.batches += 1
                counts.batches_failed += 1
                result.failed.append({"Input": payload, "Error": error, "Cause": cause, "Status": "FAILED"})
            return

    def _write_report(self, name: str, result: MapRunResult) -> str:
        """ResultWriter's layout: the run's files and a manifest naming them."""
        prefix = f"runs/{name}/{uuid.uuid4()}/"
        files = {"SUCCEEDED_0.json": result.succeeded, "FAILED_0.json": result.failed}
        for file, rows in files.items():
            self.s3.put_object(Bucket=self.reports_bucket, Key=prefix + file, Body=json.dumps(rows).encode())
        manifest = {
            "DestinationBucket": self.reports_bucket,
            "MapRunArn": f"local:mapRun:{name}",
            "ResultFiles": {
                "SUCCEEDED": [{"Key": prefix + "SUCCEEDED_0.json", "Size": len(json.dumps(result.succeeded))}],
                "FAILED": [{"Key": prefix + "FAILED_0.json", "Size": len(json.dumps(result.failed))}],
                "PENDING": [],
            },
        }
        self.s3.put_object(Bucket=self.reports_bucket, Key=prefix + "manifest.json", Body=json.dumps(manifest).encode())
        return prefix
