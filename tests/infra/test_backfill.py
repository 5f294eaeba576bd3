"""``clip-lambda backfill`` against stubbed CloudFormation, S3, Lambda and Step Functions clients (botocore's
Stubber checks every request's parameters): what it starts, how it finds an S3 Inventory manifest and how it
derives its concurrency from the account, what it shows while it waits, how it ends."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from infra import backfill

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:clip-lambda-backfill"
EXEC = "arn:aws:states:us-east-1:123456789012:execution:clip-lambda-backfill:run1"
MAP_RUN = EXEC.replace(":execution:", ":mapRun:") + "/FromListing:abc"
BUCKET, REPORTS = "clip-123-abc", "clip-reports"
OUTPUTS = [
    {"OutputKey": "BackfillStateMachineArn", "OutputValue": ARN},
    {"OutputKey": "BucketName", "OutputValue": BUCKET},
    {"OutputKey": "BackfillReportsBucketName", "OutputValue": REPORTS},
]
INVENTORY = f"inventory/{BUCKET}/images/2026-11-28T00-00Z/manifest.json"


INDEX_ARN = "arn:aws:s3vectors:us-east-1:123456789012:bucket/clip-vectors-abc/index/images"


class Session:
    def __init__(self, parameters: dict[str, str] | None = None, outputs: list[dict[str, str]] = OUTPUTS) -> None:
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        names = ("cloudformation", "stepfunctions", "lambda", "s3")
        self.clients = {name: session.client(name) for name in names}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}
        stack: dict[str, Any] = {"StackName": "clip-lambda", "CreationTime": "2026-01-01T00:00:00Z",
                                 "StackStatus": "CREATE_COMPLETE", "Outputs": outputs}  # fmt: skip
        if parameters is not None:
            stack["Parameters"] = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
        self.stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "clip-lambda"})

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


def account(limit: int, unreserved: int | None = None) -> dict[str, Any]:
    """A GetAccountSettings response."""
    return {
        "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
                         "ConcurrentExecutions": limit,
                         "UnreservedConcurrentExecutions": limit if unreserved is None else unreserved},
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 2},
    }  # fmt: skip


def expect_account(session: Session, limit: int = 1000, unreserved: int | None = None) -> None:
    session.stubs["lambda"].add_response("get_account_settings", account(limit, unreserved), {})


def expect_start(session: Session, payload: dict[str, Any]) -> None:
    session.stubs["stepfunctions"].add_response(
        "start_execution",
        {"executionArn": EXEC, "startDate": "2026-11-29T00:00:00Z"},
        {"stateMachineArn": ARN, "name": "run1", "input": json.dumps(payload)},
    )


def manifest(**changes: Any) -> dict[str, Any]:
    """An S3 Inventory manifest.json of the stack's bucket, delivered to the reports bucket."""
    return {
        "sourceBucket": BUCKET, "destinationBucket": f"arn:aws:s3:::{REPORTS}", "version": "2016-11-30",
        "creationTimestamp": "1764288000000", "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
        "files": [{"key": f"inventory/{BUCKET}/images/data/{n}.csv.gz", "size": 100, "MD5checksum": "0" * 32}
                  for n in "ab"],
        **changes,
    }  # fmt: skip


def expect_manifest(session: Session, key: str, body: dict[str, Any] | bytes) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    session.stubs["s3"].add_response(
        "get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))}, {"Bucket": REPORTS, "Key": key}
    )


def listed(*keys: str) -> dict[str, Any]:
    when = datetime(2026, 11, 29, tzinfo=UTC)
    return {"Contents": [{"Key": k, "LastModified": when, "Size": 10} for k in keys], "IsTruncated": False}


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


def default_input(**changes: Any) -> dict[str, Any]:
    args = backfill.parser().parse_args([])
    args.batch_size = backfill.DEFAULT_BATCH  # the test stack has no vector index
    for k, v in changes.items():
        setattr(args, k, v)
    return backfill.execution_input(args)


# ------------------------------------------------------------------------------------------- starting
def test_starts_a_listing_run_with_every_field_the_state_machine_reads(capsys) -> None:
    with Session() as session:
        expect_account(session)
        expect_start(session, {
            "prefix": "photos/", "batch_size": 50, "concurrency": 925, "model_id": None,
            "keys_url_encoded": False, "manifest": {"input_type": "LISTING", "key": ""},
        })  # fmt: skip
        err = io.StringIO()
        assert backfill.main(["--prefix", "photos/", "--name", "run1"], session=session, out=err) == 0
    assert capsys.readouterr().out.strip() == EXEC
    assert "s3://clip-reports/runs/run1/" in err.getvalue()
    assert "concurrency 925: account limit 1,000, unreserved 1,000" in err.getvalue()


def test_with_a_vector_index_the_batch_and_concurrency_come_from_its_write_limits(capsys) -> None:
    """2,500 vectors/s x 0.2 s per object = 500 at once (below the account's 925); batches of 150 (60 s
    timeout x 0.5 / 0.2 s), one PutVectors each: 6.7 requests per 1,000 objects."""
    indexed = [*OUTPUTS, {"OutputKey": "VectorIndexArn", "OutputValue": INDEX_ARN}]
    with Session(outputs=indexed) as session:
        expect_account(session)
        expect_start(session, {
            "prefix": "", "batch_size": 150, "concurrency": 500, "model_id": None,
            "keys_url_encoded": False, "manifest": {"input_type": "LISTING", "key": ""},
        })  # fmt: skip
        err = io.StringIO()
        assert backfill.main(["--name", "run1"], session=session, out=err) == 0
    assert "batch size 150: one PutVectors per batch, within half the 60 s timeout" in err.getvalue()
    assert "concurrency 500: the vector index's 2,500 vectors/s at ~0.20 s per object (of 925" in err.getvalue()
    assert backfill.index_batch_size(900, 0.2) == 500 and backfill.index_batch_size(30, 0.5) == 100
    line = backfill.Progress(total=10_000_000, succeeded=1_200_000, failed=0, running=500, pending=0).line(
        600.0, indexed=True
    )
    assert "2,000.0 objects/s (≤ 2,000 vectors/s of the index's 2,500), ETA 73 min" in line


def test_an_inventory_manifest_under_inventory_has_url_encoded_keys_and_a_model_check() -> None:
    with Session() as session:
        expect_manifest(session, INVENTORY, manifest())
        expect_account(session)
        expect_start(session, {
            "prefix": "", "batch_size": 100, "concurrency": 50, "model_id": "openai/clip-vit-base-patch32",
            "keys_url_encoded": True, "manifest": {"input_type": "MANIFEST", "key": INVENTORY},
        })  # fmt: skip
        argv = ["--manifest", "inventory", "--manifest-key", INVENTORY, "--batch-size", "100",
                "--concurrency", "50", "--model-id", "openai/clip-vit-base-patch32", "--name", "run1"]  # fmt: skip
        err = io.StringIO()
        assert backfill.main(argv, session=session, out=err) == 0
    assert "concurrency 50 (as asked; at most 925:" in err.getvalue()


def test_without_a_key_the_newest_inventory_report_is_taken_and_named(monkeypatch) -> None:
    base = f"inventory/{BUCKET}/"
    keys = [
        base + "images/2026-11-21T00-00Z/manifest.json",
        base + "images/2026-11-21T00-00Z/manifest.checksum",
        base + "images/2026-11-28T00-00Z/manifest.checksum",
        base + "images/2026-11-28T00-00Z/manifest.json",  # the newest report
        base + "images/2026-11-14T00-00Z/manifest.json",
        base + "images/data/9a1e.csv.gz",
        base + "images/hive/dt=2026-11-28-00-00/symlink.txt",
        base + "images/2026-11-29T00-00Z/not-a-manifest.json",
    ]
    with Session() as session:
        session.stubs["s3"].add_response("list_objects_v2", listed(*keys), {"Bucket": REPORTS, "Prefix": base})
        expect_manifest(session, INVENTORY, manifest())
        expect_account(session)
        expect_start(session, {**default_input(concurrency=925), "keys_url_encoded": True,
                               "manifest": {"input_type": "MANIFEST", "key": INVENTORY}})  # fmt: skip
        err = io.StringIO()
        assert backfill.main(["--manifest", "inventory", "--name", "run1"], session=session, out=err) == 0
    assert f"inventory manifest: s3://{REPORTS}/{INVENTORY} (the newest of 3, taken 2026-11-28T00-00Z" in err.getvalue()


def test_no_inventory_report_yet_is_refused_with_what_to_do() -> None:
    with Session() as session:
        session.stubs["s3"].add_response(
            "list_objects_v2", {"IsTruncated": False}, {"Bucket": REPORTS, "Prefix": f"inventory/{BUCKET}/"}
        )
        err = io.StringIO()
        assert backfill.main(["--manifest", "inventory"], session=session, out=err) == 2
    assert "no S3 Inventory report under s3://clip-reports/inventory/clip-123-abc/" in err.getvalue()
    assert "ImagesInventory=Daily" in err.getvalue()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (manifest(fileFormat="ORC"), "Step Functions reads CSV inventories only"),
        (manifest(sourceBucket="someone-elses"), "lists bucket 'someone-elses', not the stack's clip-123-abc"),
        (manifest(destinationBucket="arn:aws:s3:::elsewhere"), "data files in 'elsewhere'"),
        (manifest(fileSchema="Key, Size"), "no Bucket and Key columns"),
        (manifest(files=[{"key": "data/x.csv.gz", "size": 1, "MD5checksum": "0"}]), "cannot read"),
        (b"<html>not json</html>", "is not an S3 Inventory manifest.json"),
    ],
)
def test_an_inventory_manifest_the_state_machine_could_not_use_is_refused(body: Any, message: str) -> None:
    with Session() as session:
        expect_manifest(session, INVENTORY, body)
        err = io.StringIO()
        assert backfill.main(["--manifest", "inventory", "--manifest-key", INVENTORY], session=session, out=err) == 2
    assert message in err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--manifest", "csv"], "--manifest csv needs --manifest-key"),
        (["--manifest", "csv", "--manifest-key", "x.csv"], "under manifests/ of the reports bucket"),
        (["--manifest", "csv", "--manifest-key", "inventory/b/x.csv"], "under manifests/ of"),
        (["--manifest", "inventory", "--manifest-key", "runs/x/manifest.json"], "under inventory/ or manifests/"),
        (["--manifest", "inventory", "--manifest-key", "inventory/b/images/data/x.csv.gz"], "manifest.json"),
        (["--manifest", "csv", "--manifest-key", "manifests/a.csv", "--prefix", "p/"], "--prefix applies to"),
        (["--batch-size", "0"], "--batch-size 1..1000"),
        (["--concurrency", "10001"], "--concurrency 1..10000"),
        (["--concurrency", "0"], "--concurrency 1..10000"),
    ],
)
def test_refused_before_any_aws_call(argv: list[str], message: str) -> None:
    err = io.StringIO()
    assert backfill.main(argv, session=object(), out=err) == 2
    assert message in err.getvalue()


def test_a_csv_manifest_under_manifests_starts() -> None:
    with Session() as session:
        expect_account(session)
        expect_start(session, {**default_input(concurrency=925),
                               "manifest": {"input_type": "CSV", "key": "manifests/a.csv"}})  # fmt: skip
        argv = ["--manifest", "csv", "--manifest-key", "manifests/a.csv", "--name", "run1"]
        assert backfill.main(argv, session=session, out=io.StringIO()) == 0


# ------------------------------------------------------------------------------------------- concurrency
DEFAULTS: dict[str, str] = {}


@pytest.mark.parametrize(
    ("limit", "unreserved", "parameters", "expected", "said"),
    [
        # A new account: 10, all of it needed by the live functions (SQS mapping 5, API 20): the minimum.
        (10, 10, DEFAULTS, 1, "account limit 10, unreserved 10, leaving 25 for the live functions"),
        # The default quota: 1,000 - (5 + 20) - 5% (50).
        (1000, 1000, DEFAULTS, 925, "leaving 25 for the live functions (SQS mapping 5, API 20) and a 5% margin (50)"),
        # 100 reserved by other functions: the unreserved 900 is the pool: 900 - 25 - 45.
        (1000, 900, DEFAULTS, 830, "account limit 1,000, unreserved 900"),
        # The stack's own SQS maximum, read from its parameters.
        (1000, 1000, {"S3MaxConcurrency": "100"}, 830, "SQS mapping 100, API 20"),
        # The API reserved apart (its reservation is already out of the unreserved pool): 950 - 5 - 48.
        (1000, 950, {"ApiReservedConcurrency": "50"}, 897, "SQS mapping 5, API reserved apart"),
        # The S3 function reserved: its 200 is the pool the backfill and the SQS mapping share: 200 - 5 - 10.
        (1000, 800, {"S3ReservedConcurrency": "200"}, 185, "the S3 function's reserved 200"),
        # The S3 function reserved at 0 (switched off): no room, never below 1.
        (1000, 1000, {"S3ReservedConcurrency": "0"}, 1, "no room left: 1, the minimum"),
        # Just room for one: 28 - 25 - 2; and one fewer: none.
        (28, 28, DEFAULTS, 1, "margin (2)"),
        (27, 27, DEFAULTS, 1, "no room left"),
        (30, 30, DEFAULTS, 3, "margin (2)"),
        # A raised quota: a Distributed Map runs at most 10,000.
        (50_000, 50_000, DEFAULTS, 10_000, "a Distributed Map runs at most 10,000"),
        (10_551, 10_551, DEFAULTS, 9_998, "margin (528)"),
    ],
)
def test_the_default_concurrency_leaves_the_live_functions_their_room(
    limit: int, unreserved: int, parameters: dict[str, str], expected: int, said: str
) -> None:
    choice = backfill.choose_concurrency(account(limit, unreserved), parameters)
    assert choice.value == expected and not choice.warning
    assert choice.line.startswith(f"concurrency {expected:,}: ") and said in choice.line
    assert "\n" not in choice.line


def test_the_bound_never_exceeds_what_is_left_nor_falls_below_one() -> None:
    for limit in (1, 10, 11, 100, 999, 1000, 3000, 20_000):
        for unreserved in sorted({limit, limit // 2, 100, 0}):
            for sqs in ("2", "5", "1000"):
                for s3_reserved in ("-1", "0", "7", "500"):
                    params = {"S3MaxConcurrency": sqs, "S3ReservedConcurrency": s3_reserved}
                    got = backfill.choose_concurrency(account(limit, unreserved), params).value
                    pool = int(s3_reserved) if int(s3_reserved) >= 0 else unreserved
                    live = int(sqs) + (0 if int(s3_reserved) >= 0 else 20)
                    assert 1 <= got <= 10_000
                    assert got == 1 or got <= pool - live - max(1, -(-pool * 5 // 100)), (limit, unreserved, params)


@pytest.mark.parametrize(
    ("limit", "requested", "value", "warned", "said"),
    [
        (1000, 500, 500, False, "concurrency 500 (as asked; at most 925: account limit 1,000"),
        (1000, 925, 925, False, "concurrency 925 (as asked; at most 925:"),
        (1000, 926, 925, True, "warning: --concurrency 926 lowered to 925: account limit 1,000"),
        (1000, 5000, 925, True, "warning: --concurrency 5,000 lowered to 925"),
        (10, 2, 1, True, "warning: --concurrency 2 lowered to 1: account limit 10"),
        (10, 1, 1, False, "concurrency 1 (as asked; at most 1:"),
    ],
)
def test_an_explicit_concurrency_is_capped_by_the_same_bound(
    limit: int, requested: int, value: int, warned: bool, said: str
) -> None:
    choice = backfill.choose_concurrency(account(limit), {}, requested)
    assert (choice.value, choice.warning) == (value, warned)
    assert choice.line.startswith(said)


def test_the_unreserved_count_defaults_to_the_limit_where_absent() -> None:
    settings = {"AccountLimit": {"ConcurrentExecutions": 1000}}
    assert backfill.choose_concurrency(settings, {}).value == 925


def test_an_explicit_concurrency_above_the_bound_starts_lowered_with_a_warning() -> None:
    with Session(parameters={"S3MaxConcurrency": "50", "ApiThrottleRate": "10"}) as session:
        expect_account(session, limit=1000, unreserved=1000)
        expect_start(session, default_input(concurrency=890))  # 1000 - (50 + 10) - 50
        err = io.StringIO()
        assert backfill.main(["--concurrency", "5000", "--name", "run1"], session=session, out=err) == 0
    assert "warning: --concurrency 5,000 lowered to 890: " in err.getvalue()
    assert "(SQS mapping 50, API 10)" in err.getvalue()


def test_without_the_accounts_settings_no_default_is_guessed() -> None:
    with Session() as session:
        session.stubs["lambda"].add_client_error("get_account_settings", "AccessDeniedException", http_status_code=403)
        err = io.StringIO()
        assert backfill.main(["--name", "run1"], session=session, out=err) == 2
    said = err.getvalue()
    assert "cannot read the account's Lambda concurrency (GetAccountSettings: AccessDeniedException)" in said
    assert "pass --concurrency N" in said and "S3MaxConcurrency 5 + ApiThrottleRate 20" in said


def test_without_the_accounts_settings_an_explicit_concurrency_runs_unchecked_with_a_warning() -> None:
    with Session() as session:
        session.stubs["lambda"].add_client_error("get_account_settings", "AccessDeniedException", http_status_code=403)
        expect_start(session, default_input(concurrency=40))
        err = io.StringIO()
        assert backfill.main(["--concurrency", "40", "--name", "run1"], session=session, out=err) == 0
    assert "warning: --concurrency 40 not checked (GetAccountSettings: AccessDeniedException)" in err.getvalue()


def test_the_fallback_parameters_are_the_templates_defaults() -> None:
    from samcli.yamlhelper import yaml_parse

    parameters = yaml_parse((ROOT / "template.yaml").read_text())["Parameters"]
    assert {k: str(parameters[k]["Default"]) for k in backfill.TEMPLATE_DEFAULTS} == backfill.TEMPLATE_DEFAULTS


# ------------------------------------------------------------------------------------------- waiting
def test_wait_shows_progress_then_the_summary(monkeypatch, capsys) -> None:
    monkeypatch.setattr(backfill.time, "sleep", lambda s: None)
    with Session() as session:
        expect_account(session)
        expect_start(session, execution := default_input(concurrency=925))
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
        expect_account(session)
        expect_start(session, default_input(concurrency=925))
        expect_poll(session, "SUCCEEDED", map_run(1000, 975, failed=25))
        err = io.StringIO()
        assert backfill.main(["--name", "run1", "--wait"], session=session, out=err) == 1
    assert "25 objects in failed batches: see FAILED_*.json under s3://clip-reports/runs/run1/" in err.getvalue()


def test_another_bucket_is_refused_before_anything_starts() -> None:
    with Session() as session:
        err = io.StringIO()
        assert backfill.main(["--bucket", "someone-elses"], session=session, out=err) == 2
    assert "backfills its own bucket clip-123-abc" in err.getvalue()


def test_the_progress_line() -> None:
    p = backfill.Progress(total=10_000_000, succeeded=2_500_000, failed=10, running=500, pending=7_499_490)
    line = p.line(seconds=900)
    assert "25.0%" in line and "2,500,010/10,000,000 done (10 failed, 500 running)" in line
    assert "2,777.8 objects/s" in line and "ETA 45 min" in line
