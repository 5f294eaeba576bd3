"""What the gallery talks to (infra/ui/target.py): a deployed stack's outputs through DescribeStacks (stubbed
CloudFormation), an API by its URL, the local stack; how uploads reach the bucket, and the CORS rule that
lets a browser PUT there, checked in Chromium against a moto server that evaluates bucket CORS itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.local.moto_stack import CREDENTIALS, MotoStack, StackNames
from infra.local.net import free_port
from infra.ui.gallery import Gallery
from infra.ui.target import (
    RECOMMENDED_CORS,
    Target,
    TargetError,
    api_target,
    cors_allows,
    local_target,
    stack_outputs,
    stack_target,
    upload_mode,
)
from tests.conftest import require
from tests.infra.ui.conftest import REGION, Browsed, StubbedSession, described, session

OUTPUTS = {
    "ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com",
    "BucketName": "clip-123456789012-uuid",
    "TableName": "clip-lambda-EmbeddingsTable-XYZ",
    "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
}


def test_a_stacks_outputs_name_its_api_bucket_and_table() -> None:
    cfn = session().client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", described(OUTPUTS), {"StackName": "clip-lambda"})
        target = stack_target("clip-lambda", StubbedSession({"cloudformation": cfn}))
        stub.assert_no_pending_responses()
    assert (target.api_url, target.bucket, target.table) == (OUTPUTS["ApiUrl"], OUTPUTS["BucketName"],
                                                             OUTPUTS["TableName"])  # fmt: skip
    assert target.region == REGION and target.signed and not target.local and target.endpoint_url is None
    assert target.label == f"stack clip-lambda ({REGION})"


def test_a_missing_stack_or_one_without_an_api_is_one_clear_error() -> None:
    cfn = session().client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", service_error_code="ValidationError",
                              service_message="Stack with id nope does not exist", http_status_code=400)  # fmt: skip
        with pytest.raises(TargetError, match=r"^stack nope: ValidationError: Stack with id nope does not exist$"):
            stack_outputs(cfn, "nope")
        stub.add_response("describe_stacks", described({"BucketName": "b"}), {"StackName": "other"})
        with pytest.raises(TargetError, match="stack other has no ApiUrl output"):
            stack_target("other", StubbedSession({"cloudformation": cfn}))
    with pytest.raises(TargetError, match="no AWS region"):
        stack_target("clip-lambda", StubbedSession({}, region=None))


def test_an_api_url_names_its_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # other tests' processes may have set one
        monkeypatch.delenv(name, raising=False)
    target = api_target("https://abc123.execute-api.ap-southeast-2.amazonaws.com", session("us-east-1"), bucket="b")
    assert (target.region, target.bucket, target.table) == ("ap-southeast-2", "b", None)
    assert api_target("https://api.example.com/prod", session("eu-central-1")).region == "eu-central-1"
    with pytest.raises(TargetError, match="not an http"):
        api_target("abc123.execute-api.eu-west-1.amazonaws.com", session())
    with pytest.raises(TargetError, match="no AWS region"):
        api_target("https://api.example.com", session(None))


def test_the_local_stack_is_its_own_names_and_credentials() -> None:
    target = local_target()
    assert (target.api_url, target.endpoint_url) == ("http://127.0.0.1:3000", "http://127.0.0.1:5000")
    assert (target.bucket, target.table) == (StackNames().bucket, StackNames().table)
    creds = target.credentials()
    assert (creds.access_key, creds.secret_key) == (CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                                    CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip


@pytest.mark.parametrize(
    ("origin", "method", "headers", "allowed"),
    [
        ("http://127.0.0.1:8000", "PUT", ["content-type"], True),
        ("http://localhost:51234", "PUT", ["Content-Type"], True),
        ("https://evil.example", "PUT", ["content-type"], False),
        ("http://127.0.0.1.evil.example:80", "PUT", ["content-type"], False),
        ("http://127.0.0.1:8000", "DELETE", [], False),
        ("http://127.0.0.1:8000", "PUT", ["content-type", "x-amz-acl"], False),
    ],
)
def test_the_recommended_cors_rule_admits_the_gallerys_put_and_nothing_else(
    origin: str, method: str, headers: list[str], allowed: bool
) -> None:
    assert cors_allows(RECOMMENDED_CORS["CORSRules"], origin, method, headers) is allowed


def test_uploads_go_direct_only_where_the_buckets_cors_admits_them() -> None:
    s3 = session().client("s3")
    deployed = Target(api_url="https://x", region=REGION, session=session(), bucket="b")
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_cors", RECOMMENDED_CORS, {"Bucket": "b"})
        assert upload_mode(deployed, "http://127.0.0.1:8000", s3)[0] == "direct"
        stub.add_client_error("get_bucket_cors", service_error_code="NoSuchCORSConfiguration", http_status_code=404)
        mode, why = upload_mode(deployed, "http://127.0.0.1:8000", s3)
        assert mode == "server" and "NoSuchCORSConfiguration" in why
        other = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
        stub.add_response("get_bucket_cors", other, {"Bucket": "b"})
        assert upload_mode(deployed, "http://127.0.0.1:8000", s3)[0] == "server"
    assert upload_mode(local_target(), "http://127.0.0.1:8000")[0] == "direct"  # moto answers CORS for all


# --- the rule in a browser -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strict_moto() -> Iterator[MotoStack]:
    """A moto server that evaluates bucket CORS as S3 does, instead of answering every origin."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOTO_DISABLE_GLOBAL_CORS", "true")
        stack = MotoStack(names=StackNames(vector_bucket="", notifications=False)).start()
    try:
        yield stack
    finally:
        stack.stop()


def gallery_on(moto: MotoStack, upload: Any) -> Gallery:
    """A gallery of moto's bucket as a deployed stack's (its CORS decides), with no API behind it."""
    key, secret = CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    creds = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
    target = Target(api_url=f"http://127.0.0.1:{free_port()}", region="us-east-1", session=creds,
                    bucket=moto.names.bucket, table=moto.names.table, endpoint_url=moto.endpoint)  # fmt: skip
    return Gallery(target, upload=upload).start()


def upload_through_the_page(browsed: Browsed, gallery: Gallery) -> Any:
    expect = require("playwright.sync_api").expect
    page = browsed.page
    page.goto(gallery.url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.get_by_label("Upload to").set_input_files(files=[{"name": "cors.jpg", "mimeType": "image/jpeg",
                                                           "buffer": b"\xff\xd8\xff\xe0 bytes"}])  # fmt: skip
    return page.locator("#uploads li").first


def keys(moto: MotoStack) -> list[str]:
    listed = moto.client("s3").list_objects_v2(Bucket=moto.names.bucket, Prefix="uploads/")
    return [o["Key"] for o in listed.get("Contents", [])]


@pytest.mark.integration
def test_with_the_recommended_rule_chromium_puts_straight_to_the_bucket(
    strict_moto: MotoStack, browsed: Browsed
) -> None:
    expect = require("playwright.sync_api").expect
    strict_moto.client("s3").put_bucket_cors(Bucket=strict_moto.names.bucket, CORSConfiguration=RECOMMENDED_CORS)
    with gallery_on(strict_moto, "auto") as gallery:
        assert gallery.upload_mode == "direct"  # found from GetBucketCors
        row = upload_through_the_page(browsed, gallery)
        expect(row.locator(".state")).to_have_text("embedding…")  # the PUT succeeded; no function here
        key = row.get_attribute("data-key")
        assert key in keys(strict_moto)
    assert browsed.console.errors == []


@pytest.mark.integration
def test_without_it_chromium_blocks_the_put_and_the_page_says_what_to_do(
    strict_moto: MotoStack, browsed: Browsed
) -> None:
    expect = require("playwright.sync_api").expect
    strict_moto.client("s3").delete_bucket_cors(Bucket=strict_moto.names.bucket)
    before = keys(strict_moto)
    with gallery_on(strict_moto, "direct") as gallery:
        row = upload_through_the_page(browsed, gallery)
        expect(row.locator(".state")).to_have_text("failed: upload_blocked")
        expect(browsed.page.get_by_role("alert")).to_contain_text("--upload server")
    assert keys(strict_moto) == before
    assert any("CORS" in e for e in browsed.console.errors), browsed.console.errors  # the browser's own refusal
