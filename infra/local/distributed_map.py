"""A local stand-in for the backfill's Step Functions Distributed Map, run over moto and the S3 function.

LOCAL EMULATION: Step Functions does not run locally, and moto stores state machines without running their
map runs. This module runs the contract that template.yaml's ``BackfillStateMachine`` sets, read from the
template itself: the ``Source`` Choice (which Map state an execution input selects), that state's item reader
(the bucket's ListObjectsV2 listing with its items' fields ``Key``, ``Etag``, ``Size``, ``LastModified`` in
epoch seconds, ``StorageClass``; a CSV manifest with a header row; or an S3 Inventory report: its
``manifest.json`` and the gzip-compressed, header-less CSV data files it lists, one item per row with the
fields named after the manifest's ``fileSchema`` columns, every value a string and keys URL-encoded as S3
Inventory writes them), ``ItemBatcher`` (``batch_size`` items per invocation, with the ``BatchInput`` the
template builds from the execution input), ``concurrency`` batches at once (one per function given: the RIE
serves one invocation at a time, like one Lambda execution environment), the ``Retry`` of the Embed task
(the errors it names, ``MaxAttempts``, ``IntervalSeconds`` x ``BackoffRate``, scaled down by
``interval_scale``), ``ToleratedFailurePercentage`` and a ``ResultWriter`` report (``SUCCEEDED_0.json``,
``FAILED_0.json`` and ``manifest.json`` under ``runs/<execution name>/<map run id>/`` of the reports bucket).
A reader that cannot read its source raises ``ItemReaderFailed`` (the map state's ``States.ItemReaderFailed``).
What it does not emulate: Express child executions' own limits, AWS's pacing, the reader's limits (item and
file sizes) and IAM (the role's reads are not checked here).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from threading import Lock
from typing import Any

from infra.local.rie import InvokeResult

ROOT = Path(__file__).resolve().parents[2]
Invoke = Callable[[Any], InvokeResult]


class StatesError(RuntimeError):
    """An error that fails the execution, with its Step Functions error name (``error``)."""

    error = "States.Runtime"


class ItemReaderFailed(StatesError):
    """The map state's item reader could not read its source (Step Functions' ``States.ItemReaderFailed``)."""

    error = "States.ItemReaderFailed"


@lru_cache(maxsize=8)
def _machine(template: str, mtime: float) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse  # the SAM CLI's parser reads the short-form intrinsics

    machine: dict[str, Any] = yaml_parse(Path(template).read_text())["Resources"]["BackfillStateMachine"]["Properties"]
    return machine


def state_machine(template: Path = ROOT / "template.yaml") -> dict[str, Any]:
    """The template's ``BackfillStateMachine`` properties (parsed once per version of the file)."""
    return _machine(str(template), template.stat().st_mtime)


_MISSING = object()


def json_path(document: Any, path: str) -> Any:
    """A reference path (``$``, ``$.a.b``) into ``document``; ``_MISSING`` where a field is absent."""
    if path == "$":
        return document
    if not path.startswith("$."):
        raise NotImplementedError(f"the local map reads $.field paths only, not {path!r}")
    value = document
    for name in path[2:].split("."):
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _holds(rule: Mapping[str, Any], document: Any) -> bool:
    """One Choice rule: ``And``/``Or``/``Not`` of ``Variable`` tests (``IsPresent``, ``StringEquals``,
    ``BooleanEquals``): the operators the template uses; any other is refused, not guessed."""
    if "And" in rule:
        return all(_holds(r, document) for r in rule["And"])
    if "Or" in rule:
        return any(_holds(r, document) for r in rule["Or"])
    if "Not" in rule:
        return not _holds(rule["Not"], document)
    value = json_path(document, rule["Variable"])
    if "IsPresent" in rule:
        return (value is not _MISSING) == bool(rule["IsPresent"])
    if value is _MISSING:  # Step Functions fails the execution here (States.Runtime); the template tests first
        raise StatesError(f"Choice on a missing path {rule['Variable']}")
    if "StringEquals" in rule:
        return isinstance(value, str) and value == rule["StringEquals"]
    if "BooleanEquals" in rule:
        return isinstance(value, bool) and value == rule["BooleanEquals"]
    raise NotImplementedError(f"the local map does not evaluate {sorted(rule)}")


def source_state(execution_input: Mapping[str, Any], template: Path = ROOT / "template.yaml") -> str:
    """The Map state an execution runs: the template's start state, through its Choice if it is one."""
    definition = state_machine(template)["Definition"]
    name = str(definition["StartAt"])
    state = definition["States"][name]
    if state["Type"] != "Choice":
        return name
    for rule in state["Choices"]:
        if _holds(rule, execution_input):
            return str(rule["Next"])
    return str(state["Default"])


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
    """What the template's Map state says, for one item source (``FromListing``, ``FromCsv`` or
    ``FromInventory``)."""

    batch_input: dict[str, Any]
    retry: tuple[RetryRule, ...]
    tolerated_failure_percentage: float
    item_reader: dict[str, Any] = field(default_factory=dict)
    state: str = ""

    @classmethod
    def from_template(cls, state: str = "FromListing", template: Path = ROOT / "template.yaml") -> MapDefinition:
        spec = state_machine(template)["Definition"]["States"][state]
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
        return cls(
            spec["ItemBatcher"]["BatchInput"],
            rules,
            float(spec.get("ToleratedFailurePercentage", 0)),
            item_reader=spec.get("ItemReader") or {},
            state=state,
        )

    def resolve_batch_input(self, execution_input: dict[str, Any], substitutions: dict[str, str]) -> dict[str, Any]:
        """``key.$: $.field`` from the execution input; ``${Name}`` from the state machine's substitutions."""
        return resolve_parameters(self.batch_input, execution_input, substitutions)

    def read_items(
        self, s3: Any, execution_input: dict[str, Any], substitutions: dict[str, str]
    ) -> list[dict[str, Any]]:
        """What the state's ``ItemReader`` yields: the reader its ``Resource`` and ``ReaderConfig`` name, over
        the ``Parameters`` it resolves from the execution input."""
        reader = self.item_reader
        params = resolve_parameters(reader.get("Parameters") or {}, execution_input, substitutions)
        resource = str(reader.get("Resource", ""))
        config = reader.get("ReaderConfig") or {}
        if resource.endswith(":s3:listObjectsV2"):
            read = lambda: list_items(s3, params["Bucket"], params.get("Prefix") or "")  # noqa: E731
        elif resource.endswith(":s3:getObject") and config.get("InputType") == "CSV":
            if config.get("CSVHeaderLocation", "FIRST_ROW") != "FIRST_ROW":
                raise NotImplementedError("the local map reads CSV manifests with a header row only")
            read = lambda: csv_items(s3, params["Bucket"], params["Key"])  # noqa: E731
        elif resource.endswith(":s3:getObject") and config.get("InputType") == "MANIFEST":
            read = lambda: inventory_items(s3, params["Bucket"], params["Key"])  # noqa: E731
        else:
            raise NotImplementedError(f"the local map has no reader for {resource} {config}")
        try:
            return read()
        except StatesError:
            raise
        except Exception as exc:  # the S3 read failed (no such key, not readable): the map state fails
            raise ItemReaderFailed(f"{self.state}: {type(exc).__name__}: {exc}") from exc


def resolve_parameters(
    parameters: Mapping[str, Any], execution_input: Mapping[str, Any], substitutions: Mapping[str, str]
) -> dict[str, Any]:
    """A state's ``Parameters``: ``key.$`` fields are reference paths into the execution input (a path
    that is not there fails the execution, as in Step Functions), other strings take the state machine's
    ``${Name}`` substitutions."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if key.endswith(".$"):
            found = json_path(execution_input, str(value))
            if found is _MISSING:
                raise StatesError(f"the JSONPath {value!r} of {key!r} could not be found in the input")
            out[key[:-2]] = found
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
    batches_running: int = 0


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


def inventory_items(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """An S3 Inventory report (``InputType: MANIFEST``): ``manifest.json`` names the CSV data files (gzip,
    no header row) in the destination bucket and their columns (``fileSchema``); each row becomes an item
    with those column names as fields, every value the CSV's string (``"Size": "3399671"``), the ``Key``
    still URL-encoded as the inventory wrote it (Step Functions passes it on as it is). A row with fewer
    fields than the schema gets empty strings, extra fields are dropped (Step Functions' CSV rules). Each
    data file's size and MD5 are checked against the manifest (a truncated or replaced file fails the read
    here; whether Step Functions checks is not documented)."""
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except json.JSONDecodeError as exc:
        raise ItemReaderFailed(f"s3://{bucket}/{key} is not an S3 Inventory manifest (JSON): {exc}") from exc
    if not isinstance(manifest, dict) or not {"fileFormat", "fileSchema", "files"} <= manifest.keys():
        raise ItemReaderFailed(f"s3://{bucket}/{key} lacks fileFormat, fileSchema or files: not an inventory manifest")
    if manifest["fileFormat"] != "CSV":
        raise ItemReaderFailed(f"the inventory's format is {manifest['fileFormat']}: Step Functions reads CSV only")
    columns = [c.strip() for c in str(manifest["fileSchema"]).split(",")]
    destination = str(manifest.get("destinationBucket") or bucket).split(":::", 1)[-1]  # a bucket ARN, or a name
    items: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        data = s3.get_object(Bucket=destination, Key=entry["key"])["Body"].read()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if len(data) != int(entry["size"]) or md5 != entry["MD5checksum"]:
            raise ItemReaderFailed(f"s3://{destination}/{entry['key']} differs from its manifest (size or MD5)")
        text = gzip.decompress(data).decode("utf-8")
        for row in csv.reader(io.StringIO(text)):
            if row:
                items.append({c: (row[i] if i < len(row) else "") for i, c in enumerate(columns)})
    return items


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

    @property
    def substitutions(self) -> dict[str, str]:
        """The template's ``DefinitionSubstitutions`` the map states use, with the local values."""
        return {"ImagesBucket": self.images_bucket, "ReportsBucket": self.reports_bucket, "Partition": "aws"}

    def snapshot(self, counts: MapRunCounts) -> MapRunCounts:
        """A consistent copy of a running map's counts (they change under the map's lock)."""
        with self._lock:
            return dataclasses.replace(counts)

    def run(
        self,
        execution_input: dict[str, Any],
        *,
        name: str | None = None,
        before_batch: Callable[[list[dict[str, Any]]], None] | None = None,
        progress: Callable[[MapRunCounts], None] | None = None,
        started: Callable[[MapDefinition, MapRunCounts], None] | None = None,
    ) -> MapRunResult:
        """One execution: ``execution_input`` as ``clip-lambda backfill`` sends it (prefix, batch_size,
        concurrency, model_id, keys_url_encoded, manifest), through the template's ``Source`` Choice to its
        Map state. ``before_batch`` runs before each batch is invoked (tests delete objects there: "deleted
        meanwhile"); ``started`` once the items are read (the map run exists from then on), with the live
        counts (read them through ``snapshot``). Raises ``ItemReaderFailed`` when the reader cannot read."""
        t0 = time.perf_counter()
        definition = MapDefinition.from_template(source_state(execution_input, self.template), self.template)
        items = definition.read_items(self.s3, execution_input, self.substitutions)
        batch_input = definition.resolve_batch_input(execution_input, self.substitutions)
        size = int(execution_input.get("batch_size") or 1)
        width = max(1, min(int(execution_input.get("concurrency") or 1), len(self.functions)))
        counts = MapRunCounts(total=len(items), pending=len(items))
        if started:
            started(definition, counts)
        result = MapRunResult("SUCCEEDED", counts, report_prefix="")
        free = list(self.functions[:width])

        def child(batch: list[dict[str, Any]]) -> None:
            with self._lock:
                fn = free.pop()
                counts.pending -= len(batch)
                counts.running += len(batch)
                counts.batches_running += 1
            try:
                if before_batch:
                    before_batch(batch)
                self._child(fn, {"Items": batch, "BatchInput": batch_input}, definition, counts, result)
            finally:
                with self._lock:
                    free.append(fn)
                    counts.running -= len(batch)
                    counts.batches_running -= 1
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
