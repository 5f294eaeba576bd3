"""``clip-lambda backfill`` against stubbed CloudFormation and Step Functions clients (botocore's Stubber
checks every request's parameters): what it starts, what it shows while it waits, how it ends."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra import backfill

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:clip-lambda-backfill"
EXEC = "arn:aws:states:us-east-1:123456789012:execution:clip-lambda-backfill:run1"
MAP_RUN = EXEC.replace(":execution:", ":mapRun:") + "/FromListing:abc"
OUTPUTS = [
    {"OutputKey": "BackfillStateMachineArn", "OutputValue": ARN},
    {"OutputKey": "BucketName", "OutputValue": "clip-123-abc"},
    {"OutputKey": "BackfillReportsBucketName", "OutputValue": "clip-reports"},
]


class Session:
    def __init__(self) -> None:
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        self.clients = {name: session.client(name) for name in ("cloudformation", "stepfunctions")}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}
        self.stubs["cloudformation"].add_response(
            "describe_stacks",
            {"Stacks": [{"StackName": "clip-lambda", "CreationTime": "2026-01-01T00:00:00Z",
                         "StackStatus": "CREATE_COMPLETE", "Outputs": OUTPUTS}]},
            {"StackName": "clip-lambda"},
        )  # fmt: skip

    def client(self, name: str) -> Any:
        return self.clients[name]

    def __enter__(self) -> Session:
        for stub in self.stubs.values():
            stub.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()
            stub.deactivate()


def expect_start(session: Session, payload: dict[str, Any]) -> None:
    session.stubs["stepfunctions"].add_response(
        "start_execution",
        {"executionArn": EXEC, "startDate": "2026-11-29T00:00:00Z"},
        {"stateMachineArn": ARN, "name": "run1", "input": json.dumps(payload)},
    )


def map_run(total: int, succeeded: int, failed: int = 0, running: int = 0) -> dict[str, Any]:
    counts = {
        "pending": total - succeeded - failed - running, "running": running, "succeeded": succeeded,
        "failed": failed, "timedOut": 0, "aborted": 0, "total": total, "resultsWritten": succeeded + failed,
    }  # fmt: skip
    return {
        "mapRunArn": MAP_RUN, "executionArn": EXEC, "status": "RUNNING", "startDate": "2026-11-29T00:00:00Z",
        "maxConcurrency": 500, "toleratedFailurePercentage": 100.0, "toleratedFailureCount": 0,
        "itemCounts": counts, "executionCounts": counts,
    }  # fmt: skip


def expect_poll(session: Session, status: str, run: dict[str, Any]) -> None:
    stub = session.stubs["stepfunctions"]
    stub.add_response(
        "describe_execution",
        {"executionArn": EXEC, "stateMachineArn": ARN, "status": status, "startDate": "2026-11-29T00:00:00Z"},
        {"executionArn": EXEC},
    )
    stub.add_response(
        "list_map_runs",
        {"mapRuns": [{"executionArn": EXEC, "mapRunArn": MAP_RUN, "stateMachineArn": ARN,
                      "startDate": "2026-11-29T00:00:00Z"}]},
        {"executionArn": EXEC},
    )  # fmt: skip
    stub.add_response("describe_map_run", run, {"mapRunArn": MAP_RUN})


def test_starts_a_listing_run_with_every_field_the_state_machine_reads(capsys) -> None:
    with Session() as session:
        expect_start(session, {
            "prefix": "photos/", "batch_size": 50, "concurrency": 500, "model_id": None,
            "keys_url_encoded": False, "manifest": {"input_type": "LISTING", "key": ""},
        })  # fmt: skip
        err = io.StringIO()
        assert backfill.main(["--prefix", "photos/", "--name", "run1"], session=session, out=err) == 0
    assert capsys.readouterr().out.strip() == EXEC
    assert "s3://clip-reports/runs/run1/" in err.getvalue()


def test_an_inventory_manifest_has_url_encoded_keys_and_a_model_check() -> None:
    with Session() as session:
        expect_start(session, {
            "prefix": "", "batch_size": 100, "concurrency": 50, "model_id": "openai/clip-vit-base-patch32",
            "keys_url_encoded": True, "manifest": {"input_type": "MANIFEST", "key": "manifests/inv/manifest.json"},
        })  # fmt: skip
        argv = ["--manifest", "inventory", "--manifest-key", "manifests/inv/manifest.json", "--batch-size", "100",
                "--concurrency", "50", "--model-id", "openai/clip-vit-base-patch32", "--name", "run1"]  # fmt: skip
        assert backfill.main(argv, session=session, out=io.StringIO()) == 0


def test_wait_shows_progress_then_the_summary(monkeypatch, capsys) -> None:
    monkeypatch.setattr(backfill.time, "sleep", lambda s: None)
    with Session() as session:
        expect_start(session, execution := backfill.execution_input(backfill.parser().parse_args([])))
        expect_poll(session, "RUNNING", map_run(1000, 500, running=100))
        expect_poll(session, "SUCCEEDED", map_run(1000, 1000))
        err = io.StringIO()
        assert backfill.main(["--name", "run1", "--wait"], session=session, out=err) == 0
    assert execution["manifest"] == {"input_type": "LISTING", "key": ""}
    shown = err.getvalue()
    assert "500/1,000 done (0 failed, 100 running)" in shown and " 50.0%" in shown
    assert "1,000/1,000 done" in shown and "100.0%" in shown
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"execution": EXEC, "status": "SUCCEEDED", "report": "s3://clip-reports/runs/run1/",
                       "total": 1000, "succeeded": 1000, "failed": 0}  # fmt: skip


def test_failed_objects_make_the_exit_status_1_and_point_at_the_report(monkeypatch, capsys) -> None:
    monkeypatch.setattr(backfill.time, "sleep", lambda s: None)
    with Session() as session:
        expect_start(session, backfill.execution_input(backfill.parser().parse_args([])))
        expect_poll(session, "SUCCEEDED", map_run(1000, 975, failed=25))
        err = io.StringIO()
        assert backfill.main(["--name", "run1", "--wait"], session=session, out=err) == 1
    assert "25 objects in failed batches: see FAILED_*.json under s3://clip-reports/runs/run1/" in err.getvalue()


def test_another_bucket_is_refused_before_anything_starts() -> None:
    with Session() as session:
        err = io.StringIO()
        assert backfill.main(["--bucket", "someone-elses"], session=session, out=err) == 2
    assert "backfills its own bucket clip-123-abc" in err.getvalue()


@pytest.mark.parametrize("argv", [["--manifest", "csv"], ["--manifest", "csv", "--manifest-key", "x.csv"]])
def test_a_manifest_must_be_under_manifests(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match="manifests/"):
        backfill.main(argv, session=object(), out=io.StringIO())


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--concurrency", "10001"]])
def test_limits_of_a_distributed_map(argv: list[str]) -> None:
    assert backfill.main(argv, session=object(), out=io.StringIO()) == 2


def test_the_progress_line() -> None:
    p = backfill.Progress(total=10_000_000, succeeded=2_500_000, failed=10, running=500, pending=7_499_490)
    line = p.line(seconds=900)
    assert "25.0%" in line and "2,500,010/10,000,000 done (10 failed, 500 running)" in line
    assert "2,777.8 objects/s" in line and "ETA 45 min" in line
