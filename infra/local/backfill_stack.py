"""LOCAL EMULATION of what ``clip-lambda backfill`` reads from a deployed stack and its account, so that the
CLI runs unchanged (as a subprocess, with endpoint variables) against the local stack:

- DescribeStacks: ``publish_stack`` creates a CloudFormation stack in moto from a tiny template whose
  ``Outputs`` carry the real template's output keys (only those: checked) with the local values, and whose
  ``Parameters`` are the real template's, with their defaults or the values given (the CLI reads
  ``S3MaxConcurrency`` and the reserved concurrencies there). Nothing else of the template is created;
- Lambda's GetAccountSettings, which moto (5.2) does not implement: ``LambdaAccountFront`` answers it with
  the limits it is given and forwards every other Lambda request to moto;
- Step Functions: ``infra.local.step_functions.LocalStepFunctions`` runs the backfill state machine with
  ``LocalDistributedMap`` over moto and the S3 functions under the RIE.

``LocalBackfill`` wires the three over a running ``MotoStack`` and the S3 functions; ``cli_env()`` is the
environment the CLI runs with (moto for S3 and CloudFormation, the fronts for Lambda and Step Functions,
moto's credentials and region, no user AWS configuration).

    with LocalBackfill(moto, [fn.invoke for fn in functions]).start() as local:
        subprocess.run([sys.executable, "-m", "infra.cli", "backfill", "--wait"], env=local.cli_env())
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.local.distributed_map import LocalDistributedMap
from infra.local.moto_stack import CREDENTIALS, REGION, MotoStack
from infra.local.net import HOST, LoopbackHttpServer
from infra.local.rie import InvokeResult
from infra.local.step_functions import LocalStepFunctions

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
ACCOUNT_SETTINGS_PATH = "/2016-08-19/account-settings"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def template_outputs_and_parameters(template: Path = ROOT / "template.yaml") -> tuple[list[str], dict[str, str]]:
    """The real template's output keys, and its parameters with their defaults (as DescribeStacks shows them)."""
    keys, defaults = _outputs_and_parameters(str(template), template.stat().st_mtime)
    return list(keys), dict(defaults)


@lru_cache(maxsize=4)
def _outputs_and_parameters(template: str, mtime: float) -> tuple[tuple[str, ...], dict[str, str]]:
    from samcli.yamlhelper import yaml_parse

    doc = yaml_parse(Path(template).read_text())
    return tuple(doc["Outputs"]), {name: str(spec.get("Default", "")) for name, spec in doc["Parameters"].items()}


def publish_stack(
    cfn: Any,
    name: str,
    outputs: Mapping[str, str],
    parameters: Mapping[str, str] | None = None,
    template: Path = ROOT / "template.yaml",
) -> dict[str, Any]:
    """A stack named ``name`` in moto's CloudFormation whose description carries ``outputs`` (keys of the real
    template only) and the real template's parameters (``parameters`` override their defaults); returns its
    DescribeStacks entry."""
    keys, defaults = template_outputs_and_parameters(template)
    unknown = set(outputs) - set(keys)
    if unknown:
        raise ValueError(f"not outputs of template.yaml: {sorted(unknown)}")
    unknown = set(parameters or {}) - set(defaults)
    if unknown:
        raise ValueError(f"not parameters of template.yaml: {sorted(unknown)}")
    body = {
        "Description": "LOCAL EMULATION: the outputs and parameters of a clip-lambda stack, nothing else",
        "Parameters": {p: {"Type": "String", "Default": d} for p, d in defaults.items()},
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    given = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()]
    try:
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(body), Parameters=given)
    except cfn.exceptions.AlreadyExistsException:
        cfn.update_stack(StackName=name, TemplateBody=json.dumps(body), Parameters=given)
    description: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return description


@dataclass
class LambdaAccountFront(LoopbackHttpServer):
    """Lambda's GetAccountSettings with these limits (a new account: 10; the default quota: 1,000); every
    other Lambda request is forwarded to moto (``target``)."""

    target: str
    concurrent_executions: int = 1000
    unreserved_concurrent_executions: int | None = None  # default: all of it
    port: int = 0
    calls: int = 0  # GetAccountSettings answered (tests read it)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def settings(self) -> dict[str, Any]:
        unreserved = self.unreserved_concurrent_executions
        return {
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800,
                "CodeSizeUnzipped": 262_144_000,
                "CodeSizeZipped": 52_428_800,
                "ConcurrentExecutions": self.concurrent_executions,
                "UnreservedConcurrentExecutions": self.concurrent_executions if unreserved is None else unreserved,
            },
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
        }

    def start(self) -> LambdaAccountFront:
        front = self
        target = urlsplit(self.target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "GET" and urlsplit(self.path).path.rstrip("/") == ACCOUNT_SETTINGS_PATH:
                    front.calls += 1
                    self._reply(200, [("Content-Type", "application/json")], json.dumps(front.settings()).encode())
                    return
                conn = http.client.HTTPConnection(target.hostname or HOST, target.port or 80, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    self._reply(resp.status, resp.getheaders(), resp.read())
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return self.serve(Handler, "lambda-account")


@dataclass
class LocalBackfill:
    """The backfill's control plane over a running ``MotoStack`` (module docstring)."""

    moto: MotoStack
    functions: Sequence[Callable[[Any], InvokeResult]]
    reports_bucket: str = "clip-backfill-reports"
    stack_name: str = "clip-lambda"
    parameters: dict[str, str] = field(default_factory=dict)  # template parameters (default: its defaults)
    concurrent_executions: int = 1000
    unreserved_concurrent_executions: int | None = None
    interval_scale: float = 0.01
    sfn: LocalStepFunctions | None = None
    account: LambdaAccountFront | None = None
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def state_machine_arn(self) -> str:
        return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.stack_name}-backfill"

    def outputs(self) -> dict[str, str]:
        """The template outputs the local stack has a value for."""
        return {
            "BucketName": self.moto.names.bucket,
            "TableName": self.moto.names.table,
            "QueueUrl": self.moto.queue_url,
            "DeadLetterQueueUrl": self.moto.dlq_url,
            "BackfillStateMachineArn": self.state_machine_arn,
            "BackfillReportsBucketName": self.reports_bucket,
        }

    def start(self) -> LocalBackfill:
        s3 = self.moto.client("s3")
        if self.reports_bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=self.reports_bucket)
        try:
            runner = LocalDistributedMap(s3, self.moto.names.bucket, self.reports_bucket, self.functions,
                                         interval_scale=self.interval_scale)  # fmt: skip
            self.sfn = LocalStepFunctions(runner=runner, state_machine_arn=self.state_machine_arn).start()
            self.account = LambdaAccountFront(
                target=self.moto.endpoint,
                concurrent_executions=self.concurrent_executions,
                unreserved_concurrent_executions=self.unreserved_concurrent_executions,
            ).start()
            cfn = self.moto.client("cloudformation")
            self.description = publish_stack(cfn, self.stack_name, self.outputs(), self.parameters)
        except BaseException:
            self.stop()
            raise
        return self

    def cli_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment ``clip-lambda backfill`` runs with against this stack: ``base`` (default: this
        process's) without any AWS_* setting of the user's, plus moto's credentials, the region and the
        endpoints (botocore's AWS_ENDPOINT_URL and its per-service AWS_ENDPOINT_URL_<SERVICE ID>)."""
        if self.sfn is None or self.account is None:
            raise RuntimeError("LocalBackfill is not started")
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
        return {
            **env,
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_ENDPOINT_URL": self.moto.endpoint,
            "AWS_ENDPOINT_URL_SFN": self.sfn.endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": self.account.endpoint,
        }

    def stop(self) -> None:
        for server in (self.sfn, self.account):
            if server is not None:
                server.stop()
        self.sfn = self.account = None

    def __enter__(self) -> LocalBackfill:
        return self if self.sfn is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
