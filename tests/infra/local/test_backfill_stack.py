"""What ``clip-lambda backfill`` reads from a deployed stack, emulated locally (infra/local/backfill_stack.py):
DescribeStacks with the template's outputs and parameters, and Lambda's GetAccountSettings in front of moto."""

from __future__ import annotations

import boto3
import pytest

from infra.local.backfill_stack import LocalBackfill, publish_stack, template_outputs_and_parameters
from infra.local.moto_stack import CREDENTIALS, REGION, MotoStack


def test_the_stack_description_carries_the_templates_outputs_and_parameters(moto: MotoStack) -> None:
    cfn = moto.client("cloudformation")
    keys, defaults = template_outputs_and_parameters()
    described = publish_stack(cfn, "described", {"BucketName": "b", "BackfillReportsBucketName": "r"},
                              {"S3MaxConcurrency": "42"})  # fmt: skip
    assert {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]} == {
        "BucketName": "b", "BackfillReportsBucketName": "r"
    }  # fmt: skip
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert params == {**defaults, "S3MaxConcurrency": "42"} and params["S3ReservedConcurrency"] == "-1"
    assert {"BucketName", "BackfillStateMachineArn", "BackfillReportsBucketName"} <= set(keys)
    with pytest.raises(ValueError, match=r"not outputs of template\.yaml"):
        publish_stack(cfn, "invented", {"MadeUp": "x"})


def test_the_account_front_answers_get_account_settings_and_forwards_the_rest(local: LocalBackfill) -> None:
    assert local.account is not None
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    lam = session.client("lambda", endpoint_url=local.account.endpoint)
    limits = lam.get_account_settings()["AccountLimit"]
    assert (limits["ConcurrentExecutions"], limits["UnreservedConcurrentExecutions"]) == (100, 100)
    assert lam.list_functions()["Functions"] == []  # moto's answer, through the front
    env = local.cli_env({"PATH": "/usr/bin", "AWS_PROFILE": "someone", "AWS_ENDPOINT_URL_S3": "http://elsewhere"})
    assert "AWS_PROFILE" not in env and "AWS_ENDPOINT_URL_S3" not in env and env["PATH"] == "/usr/bin"
    assert env["AWS_ACCESS_KEY_ID"] == CREDENTIALS["AWS_ACCESS_KEY_ID"]
