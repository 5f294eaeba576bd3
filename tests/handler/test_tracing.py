"""Tracing costs INIT only where it records: with tracing off (PassThrough, local runs, tests) neither the
X-Ray SDK nor boto3 is imported by either function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handler.settings import tracing_enabled

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
        ({}, False),  # outside Lambda
    ],
)
def test_tracing_follows_powertools_rule(env: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(env) is enabled


def modules_after_import(**env: str) -> dict[str, object]:
    code = (
        "import json, sys, handler.s3, handler.api\n"
        "from handler.observability import tracer\n"
        "print(json.dumps({'xray': 'aws_xray_sdk.core' in sys.modules, 'boto3': 'boto3' in sys.modules,"
        " 'provider': type(tracer.provider).__name__, 'disabled': bool(tracer.disabled)}))"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT")}
    base.update(AWS_DEFAULT_REGION="us-east-1", **env)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_tracing_off_imports_neither_xray_nor_boto3() -> None:
    got = modules_after_import(LAMBDA_TASK_ROOT=str(ROOT), POWERTOOLS_TRACE_DISABLED="true")
    assert got == {"xray": False, "boto3": False, "provider": "UntracedProvider", "disabled": True}


def test_tracing_on_uses_the_xray_provider() -> None:
    got = modules_after_import(LAMBDA_TASK_ROOT=str(ROOT), POWERTOOLS_TRACE_DISABLED="false")
    assert got["xray"] is True and got["provider"] == "AsyncAWSXRayRecorder" and got["disabled"] is False


def test_tracing_reads_the_process_environment_by_default(monkeypatch) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    assert tracing_enabled() is True
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    assert tracing_enabled() is False
