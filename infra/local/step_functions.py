"""LOCAL EMULATION of the few Step Functions API actions ``clip-lambda backfill`` calls, on 127.0.0.1, for the
backfill state machine of the local stack: Step Functions does not run locally (and moto stores executions
without running a Distributed Map).

    with LocalStepFunctions(runner=LocalDistributedMap(...), state_machine_arn=ARN).start() as sfn:
        env["AWS_ENDPOINT_URL_SFN"] = sfn.endpoint   # botocore's endpoint variable for the SFN service
        subprocess.run(["clip-lambda", "backfill", "--wait", ...], env=env)

It speaks the AWS JSON 1.0 protocol (``POST /``, ``Content-Type: application/x-amz-json-1.0``, ``X-Amz-Target:
AWSStepFunctions.<Action>``) and answers:

- ``StartExecution`` (the one state machine it serves; a name used before is ``ExecutionAlreadyExists``,
  input that is not a JSON object ``InvalidExecutionInput``): runs the execution in a background thread with
  ``LocalDistributedMap`` (the template's ``Source`` Choice, then the Map state it selects: item reader,
  batches to the functions under the RIE, retries, tolerated failures, the ResultWriter report);
- ``DescribeExecution``: ``RUNNING``, then ``SUCCEEDED``, or ``FAILED`` with the error and cause (the item
  reader's ``States.ItemReaderFailed``, ``States.ExceedToleratedFailureThreshold``, ``States.Runtime``);
- ``ListMapRuns``: the execution's map run once its items are read;
- ``DescribeMapRun``: its status, ``maxConcurrency``, tolerated failure, and item and child-execution
  (batch) counts while it runs.

Unknown actions are ``UnknownOperationException``, unknown ARNs ``ExecutionDoesNotExist`` /
``ResourceNotFound``. Requests are not authenticated (SigV4 is not checked) and nothing else of the service
exists; timestamps are epoch seconds, as the JSON protocol carries them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.distributed_map import LocalDistributedMap, MapDefinition, MapRunCounts, StatesError
from infra.local.net import HOST, LoopbackHttpServer

TARGET_PREFIX = "AWSStepFunctions."
CONTENT_TYPE = "application/x-amz-json-1.0"


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass
class MapRun:
    arn: str
    state: str
    counts: MapRunCounts
    max_concurrency: int
    tolerated_failure_percentage: float
    start: float
    status: str = "RUNNING"
    stop: float | None = None


@dataclass
class Execution:
    arn: str
    name: str
    input: str
    start: float
    status: str = "RUNNING"
    stop: float | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    map_run: MapRun | None = None


@dataclass
class LocalStepFunctions(LoopbackHttpServer):
    """The backfill state machine ``state_machine_arn``, run by ``runner`` (module docstring)."""

    runner: LocalDistributedMap
    state_machine_arn: str = "arn:aws:states:us-east-1:123456789012:stateMachine:clip-lambda-backfill"
    port: int = 0
    before_batch: Callable[[list[dict[str, Any]]], None] | None = None  # passed to the runner (tests)
    executions: dict[str, Execution] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    # ------------------------------------------------------------------------------------------- actions
    def start_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("stateMachineArn") != self.state_machine_arn:
            raise ApiError(
                "StateMachineDoesNotExist", f"State Machine Does Not Exist: '{request.get('stateMachineArn')}'"
            )
        name = str(request.get("name") or uuid.uuid4())
        try:
            document = json.loads(request.get("input") or "{}")
        except ValueError as exc:
            raise ApiError("InvalidExecutionInput", f"Invalid State Machine Execution Input: {exc}") from exc
        if not isinstance(document, dict):
            raise ApiError("InvalidExecutionInput", "this state machine's input is a JSON object")
        arn = self.execution_arn(name)
        with self._lock:
            if arn in self.executions:
                raise ApiError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
            execution = self.executions[arn] = Execution(arn, name, request.get("input") or "{}", time.time())
        worker = threading.Thread(target=self._run, args=(execution, document), name=f"sfn-{name}", daemon=True)
        self._workers.append(worker)
        worker.start()
        return {"executionArn": arn, "startDate": execution.start}

    def describe_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        ex = self._execution(request.get("executionArn"))
        out: dict[str, Any] = {
            "executionArn": ex.arn, "stateMachineArn": self.state_machine_arn, "name": ex.name,
            "status": ex.status, "startDate": ex.start, "input": ex.input,
        }  # fmt: skip
        for key, value in (("stopDate", ex.stop), ("output", ex.output), ("error", ex.error), ("cause", ex.cause)):
            if value is not None:
                out[key] = value
        return out

    def list_map_runs(self, request: dict[str, Any]) -> dict[str, Any]:
        ex = self._execution(request.get("executionArn"))
        runs = [ex.map_run] if ex.map_run is not None else []
        return {
            "mapRuns": [
                {"executionArn": ex.arn, "mapRunArn": r.arn, "stateMachineArn": self.state_machine_arn,
                 "startDate": r.start, **({"stopDate": r.stop} if r.stop is not None else {})}
                for r in runs
            ]
        }  # fmt: skip

    def describe_map_run(self, request: dict[str, Any]) -> dict[str, Any]:
        arn = request.get("mapRunArn")
        with self._lock:
            found = [(ex, ex.map_run) for ex in self.executions.values() if ex.map_run and ex.map_run.arn == arn]
        if not found:
            raise ApiError("ResourceNotFound", f"Map Run Does Not Exist: '{arn}'")
        ex, run = found[0]
        assert run is not None
        c = self.runner.snapshot(run.counts)
        items = {"pending": c.pending, "running": c.running, "succeeded": c.succeeded, "failed": c.failed,
                 "timedOut": 0, "aborted": 0, "total": c.total, "resultsWritten": c.succeeded + c.failed}  # fmt: skip
        done = c.batches - c.batches_failed
        batches_total = -(-c.total // max(1, int(json.loads(ex.input).get("batch_size") or 1)))
        children = {"pending": max(0, batches_total - c.batches - c.batches_running), "running": c.batches_running,
                    "succeeded": done, "failed": c.batches_failed, "timedOut": 0, "aborted": 0,
                    "total": batches_total, "resultsWritten": c.batches}  # fmt: skip
        out: dict[str, Any] = {
            "mapRunArn": run.arn, "executionArn": ex.arn, "status": run.status, "startDate": run.start,
            "maxConcurrency": run.max_concurrency, "toleratedFailurePercentage": run.tolerated_failure_percentage,
            "toleratedFailureCount": 0, "itemCounts": items, "executionCounts": children,
        }  # fmt: skip
        if run.stop is not None:
            out["stopDate"] = run.stop
        return out

    def action(self, name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The handler of ``AWSStepFunctions.<name>``."""
        handlers = {"StartExecution": self.start_execution, "DescribeExecution": self.describe_execution,
                    "ListMapRuns": self.list_map_runs, "DescribeMapRun": self.describe_map_run}  # fmt: skip
        if name not in handlers:
            raise ApiError("UnknownOperationException", f"AWSStepFunctions.{name} is not emulated locally")
        return handlers[name]

    def _execution(self, arn: Any) -> Execution:
        with self._lock:
            found = self.executions.get(str(arn))
        if found is None:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return found

    # ------------------------------------------------------------------------------------------- running
    def _run(self, ex: Execution, document: dict[str, Any]) -> None:
        def started(definition: MapDefinition, counts: MapRunCounts) -> None:
            arn = (self.state_machine_arn.replace(":stateMachine:", ":mapRun:")
                   + f"/{definition.state}:{uuid.uuid4()}")  # fmt: skip
            ex.map_run = MapRun(arn, definition.state, counts, int(document.get("concurrency") or 0),
                                definition.tolerated_failure_percentage, time.time())  # fmt: skip

        try:
            result = self.runner.run(document, name=ex.name, started=started, before_batch=self.before_batch)
        except StatesError as exc:
            self._end(ex, "FAILED", error=exc.error, cause=str(exc))
            return
        except Exception as exc:  # the emulation itself broke: the execution fails visibly, not silently
            self._end(ex, "FAILED", error="States.Runtime", cause=f"{type(exc).__name__}: {exc}")
            return
        if result.status == "SUCCEEDED":
            output = {"MapRunArn": ex.map_run.arn if ex.map_run else None, "ResultWriterDetails": {
                "Bucket": self.runner.reports_bucket, "Key": result.report_prefix + "manifest.json"}}  # fmt: skip
            self._end(ex, "SUCCEEDED", output=json.dumps(output))
        else:
            self._end(ex, "FAILED", error="States.ExceedToleratedFailureThreshold",
                      cause="The specified tolerated failure threshold was exceeded")  # fmt: skip

    def _end(self, ex: Execution, status: str, **fields: str) -> None:
        now = time.time()
        with self._lock:
            if ex.map_run is not None:
                ex.map_run.status, ex.map_run.stop = status, now
            for key, value in fields.items():
                setattr(ex, key, value)
            ex.status, ex.stop = status, now

    def wait(self, execution_arn: str, timeout: float = 600.0) -> Execution:
        """Block until an execution has ended (tests), bounded by ``timeout``."""
        ex = self._execution(execution_arn)
        deadline = time.monotonic() + timeout
        while ex.status == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
        return ex

    # ------------------------------------------------------------------------------------------- server
    def start(self) -> LocalStepFunctions:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                try:
                    if not target.startswith(TARGET_PREFIX) or self.path.split("?")[0] != "/":
                        raise ApiError("UnknownOperationException", f"unknown operation {target!r} at {self.path}")
                    action = emulator.action(target.removeprefix(TARGET_PREFIX))
                    try:
                        request = json.loads(body or b"{}")
                    except ValueError as exc:
                        raise ApiError("SerializationException", f"the request body is not JSON: {exc}") from exc
                    if not isinstance(request, dict):
                        raise ApiError("SerializationException", "the request body is not a JSON object")
                    self._reply(200, action(request))
                except ApiError as exc:
                    self._reply(exc.status, {"__type": exc.code, "message": str(exc)}, {"x-amzn-ErrorType": exc.code})

            def do_GET(self) -> None:
                self._reply(404, {"__type": "UnknownOperationException", "message": "POST / only"})

        return self.serve(Handler, "local-step-functions")

    def stop(self) -> None:
        super().stop()
        for worker in self._workers:
            worker.join(30)
