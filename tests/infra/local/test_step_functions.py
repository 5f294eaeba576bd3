"""The local Step Functions emulation (infra/local/step_functions.py), with the stack description and account
settings the backfill CLI reads (infra/local/backfill_stack.py, tested there), over real HTTP on 127.0.0.1
with boto3 and with ``clip-lambda backfill`` itself as a subprocess; moto is a real server, the S3 function
an in-process fake (tests/integration/test_backfill_inventory.py runs the real one under the RIE)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local.backfill_stack import LocalBackfill
from infra.local.moto_stack import REGION
from tests.infra.local.conftest import N
from tests.infra.local.functions import Function


def sfn_client(local: LocalBackfill) -> Any:
    assert local.sfn is not None
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return session.client("stepfunctions", endpoint_url=local.sfn.endpoint)


def execution_input(**changes: Any) -> dict[str, Any]:
    return {"prefix": "sfn/", "batch_size": 5, "concurrency": 2, "model_id": None, "keys_url_encoded": False,
            "manifest": {"input_type": "LISTING", "key": ""}, **changes}  # fmt: skip


def cli(local: LocalBackfill, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "backfill", *argv],
        env=env or local.cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_an_execution_runs_the_map_and_reports_its_counts(local: LocalBackfill, function: Function) -> None:
    sfn = sfn_client(local)
    assert local.sfn is not None
    arn = sfn.start_execution(stateMachineArn=local.state_machine_arn, name="e1", input=json.dumps(execution_input()))[
        "executionArn"
    ]
    assert arn == "arn:aws:states:us-east-1:123456789012:execution:clip-lambda-backfill:e1"
    assert local.sfn.wait(arn).status == "SUCCEEDED"
    described = sfn.describe_execution(executionArn=arn)
    assert described["status"] == "SUCCEEDED" and described["stopDate"] >= described["startDate"]
    assert json.loads(described["input"]) == execution_input()
    output = json.loads(described["output"])
    assert output["ResultWriterDetails"]["Key"].startswith("runs/e1/")
    (run,) = sfn.list_map_runs(executionArn=arn)["mapRuns"]
    assert run["mapRunArn"].startswith(local.state_machine_arn.replace(":stateMachine:", ":mapRun:") + "/FromListing:")
    m = sfn.describe_map_run(mapRunArn=run["mapRunArn"])
    assert (m["status"], m["maxConcurrency"], m["toleratedFailurePercentage"]) == ("SUCCEEDED", 2, 100.0)
    assert m["itemCounts"]["total"] == m["itemCounts"]["succeeded"] == m["itemCounts"]["resultsWritten"] == N
    assert (m["itemCounts"]["pending"], m["itemCounts"]["running"], m["itemCounts"]["failed"]) == (0, 0, 0)
    assert m["executionCounts"]["total"] == m["executionCounts"]["succeeded"] == 5  # ceil(23 / 5) batches
    assert sorted(it["Key"] for e in function.events for it in e["Items"]) == [f"sfn/{i:03d}.jpg" for i in range(N)]


def test_while_it_runs_the_map_run_shows_running_and_pending_items(local: LocalBackfill, function: Function) -> None:
    sfn = sfn_client(local)
    assert local.sfn is not None
    function.gate.clear()  # the first batch stays in the function until released
    payload = json.dumps(execution_input(concurrency=1))
    arn = sfn.start_execution(stateMachineArn=local.state_machine_arn, name="e2", input=payload)["executionArn"]
    try:
        assert function.entered.wait(60)
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        (run,) = sfn.list_map_runs(executionArn=arn)["mapRuns"]
        m = sfn.describe_map_run(mapRunArn=run["mapRunArn"])
        assert m["status"] == "RUNNING" and "stopDate" not in m
        assert {k: m["itemCounts"][k] for k in ("total", "running", "pending", "succeeded")} == {
            "total": N, "running": 5, "pending": N - 5, "succeeded": 0
        }  # fmt: skip
        assert (m["executionCounts"]["running"], m["executionCounts"]["pending"]) == (1, 4)
    finally:
        function.gate.set()
    assert local.sfn.wait(arn).status == "SUCCEEDED"


def test_the_api_errors_the_cli_could_meet(local: LocalBackfill, function: Function) -> None:
    sfn = sfn_client(local)
    start = {"stateMachineArn": local.state_machine_arn, "name": "dup", "input": json.dumps(execution_input())}
    sfn.start_execution(**start)
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(**start)
    with pytest.raises(sfn.exceptions.StateMachineDoesNotExist):
        sfn.start_execution(**{**start, "stateMachineArn": start["stateMachineArn"] + "-other", "name": "x"})
    with pytest.raises(sfn.exceptions.InvalidExecutionInput):
        sfn.start_execution(**{**start, "name": "bad-input", "input": "[1, 2]"})
    missing = local.state_machine_arn.replace(":stateMachine:", ":execution:") + ":never"
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn=missing)
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.list_map_runs(executionArn=missing)
    with pytest.raises(sfn.exceptions.ResourceNotFound):
        sfn.describe_map_run(mapRunArn=missing.replace(":execution:", ":mapRun:") + "/FromListing:x")
    with pytest.raises(ClientError, match="UnknownOperationException"):
        sfn.list_state_machines()
    assert local.sfn is not None
    local.sfn.wait(local.sfn.execution_arn("dup"))


def test_an_unreadable_manifest_fails_the_execution_as_the_item_reader(
    local: LocalBackfill, function: Function
) -> None:
    sfn = sfn_client(local)
    assert local.sfn is not None
    payload = execution_input(manifest={"input_type": "CSV", "key": "manifests/none.csv"})
    arn = sfn.start_execution(stateMachineArn=local.state_machine_arn, name="e3", input=json.dumps(payload))[
        "executionArn"
    ]
    assert local.sfn.wait(arn).status == "FAILED"
    described = sfn.describe_execution(executionArn=arn)
    assert described["error"] == "States.ItemReaderFailed" and "NoSuchKey" in described["cause"]
    assert sfn.list_map_runs(executionArn=arn)["mapRuns"] == []


def test_an_input_without_a_field_the_map_reads_fails_the_execution(local: LocalBackfill, function: Function) -> None:
    sfn = sfn_client(local)
    assert local.sfn is not None
    payload = execution_input()
    del payload["model_id"]  # BatchInput's model_id.$: $.model_id
    arn = sfn.start_execution(stateMachineArn=local.state_machine_arn, name="e4", input=json.dumps(payload))[
        "executionArn"
    ]
    assert local.sfn.wait(arn).status == "FAILED"
    described = sfn.describe_execution(executionArn=arn)
    assert described["error"] == "States.Runtime" and "'$.model_id'" in described["cause"]
    assert function.events == []


def test_the_cli_runs_unchanged_against_the_local_stack(local: LocalBackfill, function: Function) -> None:
    assert local.sfn is not None and local.account is not None
    calls = local.account.calls
    done = cli(local, "--prefix", "sfn/", "--batch-size", "4", "--name", "cli1", "--wait")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary == {
        "execution": local.sfn.execution_arn("cli1"), "status": "SUCCEEDED",
        "report": "s3://clip-backfill-reports/runs/cli1/", "total": N, "succeeded": N, "failed": 0,
    }  # fmt: skip
    # The concurrency it derived from the local account (100) and the stack's parameters: 100 - 25 - 5.
    assert "concurrency 70: account limit 100, unreserved 100, leaving 25 for the live functions" in done.stderr
    assert json.loads(local.sfn.executions[local.sfn.execution_arn("cli1")].input)["concurrency"] == 70
    assert local.account.calls == calls + 1
    # An explicit one above the bound is lowered to it.
    started = cli(local, "--prefix", "sfn/", "--concurrency", "500", "--name", "cli2")
    assert started.returncode == 0, started.stderr
    assert "warning: --concurrency 500 lowered to 70:" in started.stderr
    assert json.loads(local.sfn.wait(local.sfn.execution_arn("cli2")).input)["concurrency"] == 70


def test_failed_batches_end_the_cli_with_status_1(local: LocalBackfill, function: Function) -> None:
    function.fail = True
    done = cli(local, "--prefix", "sfn/", "--batch-size", "10", "--name", "cli3", "--wait")
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["failed"] == N
    report = "s3://clip-backfill-reports/runs/cli3/"
    assert f"{N} objects in failed batches: see FAILED_*.json under {report}" in done.stderr


def test_where_the_account_settings_cannot_be_read_the_cli_wants_a_concurrency(
    local: LocalBackfill, function: Function
) -> None:
    env = local.cli_env()
    del env["AWS_ENDPOINT_URL_LAMBDA"]  # moto itself: GetAccountSettings is not implemented there (404)
    refused = cli(local, "--prefix", "sfn/", "--name", "cli4", env=env)
    assert refused.returncode == 2 and "cannot read the account's Lambda concurrency" in refused.stderr
    started = cli(local, "--prefix", "sfn/", "--concurrency", "3", "--name", "cli5", env=env)
    assert started.returncode == 0 and "warning: --concurrency 3 not checked (GetAccountSettings:" in started.stderr
    assert local.sfn is not None
    assert json.loads(local.sfn.wait(local.sfn.execution_arn("cli5")).input)["concurrency"] == 3


def test_every_server_binds_loopback(local: LocalBackfill) -> None:
    assert local.sfn is not None and local.account is not None
    for server in (local.sfn, local.account):
        assert server._server is not None and server._server.server_address[0] == "127.0.0.1"
