"""``clip-lambda ui`` (infra/ui/cli.py): which target each option names, its errors, and its registration
in the ``clip-lambda`` dispatcher. The command itself serving a deployed-shape stack is tests/infra/ui/
test_gallery.py's fixture (``clip-lambda ui --stack clip-lambda`` as a subprocess)."""

from __future__ import annotations

import io

import pytest
from botocore.stub import Stubber

from infra import cli as dispatcher
from infra.ui import cli
from infra.ui.target import Target
from tests.infra.ui.conftest import StubbedSession, described, session

OUTPUTS = {"ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com", "BucketName": "clip-b", "TableName": "t"}


def resolve(*argv: str, given: object = None) -> Target:
    return cli.resolve(cli.parser().parse_args(list(argv)), given)


def test_the_default_is_the_local_stack_and_a_loopback_api_is_one_on_other_ports() -> None:
    target = resolve()
    assert target.local and target.api_url == "http://127.0.0.1:3000"
    assert target.endpoint_url == "http://127.0.0.1:5000"
    moved = resolve("--api", "http://127.0.0.1:3001", "--endpoint-url", "http://127.0.0.1:5001", "--bucket", "b")
    assert moved.local and (moved.api_url, moved.endpoint_url, moved.bucket) == (
        "http://127.0.0.1:3001", "http://127.0.0.1:5001", "b")  # fmt: skip


def test_a_stack_is_read_from_its_outputs_and_options_override_them() -> None:
    cfn = session().client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", described(OUTPUTS), {"StackName": "clip-lambda"})
        target = resolve("--stack", "clip-lambda", "--table", "other", "--unsigned",
                         given=StubbedSession({"cloudformation": cfn}))  # fmt: skip
    assert not target.local and target.api_url == OUTPUTS["ApiUrl"]
    assert (target.bucket, target.table, target.signed) == ("clip-b", "other", False)


def test_an_api_url_takes_the_users_session() -> None:
    target = resolve("--api", "https://abc.execute-api.us-west-2.amazonaws.com", "--bucket", "b", given=session())
    assert not target.local and target.region == "us-west-2"
    assert (target.bucket, target.table, target.signed) == ("b", None, True)


def test_a_stack_that_cannot_be_read_is_one_line_and_status_2() -> None:
    cfn = session().client("cloudformation")
    out = io.StringIO()
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", service_error_code="AccessDenied",
                              service_message="not allowed to DescribeStacks", http_status_code=403)  # fmt: skip
        status = cli.main(["--stack", "clip-lambda"], session=StubbedSession({"cloudformation": cfn}), out=out)
    assert status == 2
    assert out.getvalue() == "error: stack clip-lambda: AccessDenied: not allowed to DescribeStacks\n"


def test_the_dispatcher_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        dispatcher.main(["ui", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: clip-lambda ui") and "--stack" in help_text and "--upload" in help_text
    assert "ui" in dispatcher.parser().format_help()
