"""The local stack in a deployed one's shape (infra/local/deployed.py), without starting it: what it publishes
as the stack's outputs must be the template's outputs (its whole run: tests/integration/test_readme.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.backfill_stack import template_outputs_and_parameters
from infra.local.deployed import DeployedStack, _Backfill, describe
from infra.local.moto_stack import MotoStack, StackNames


def test_the_outputs_it_publishes_are_the_templates() -> None:
    """DescribeStacks answers only outputs template.yaml has (publish_stack refuses others): the API's URL and
    the index's ARN it adds are among them."""
    moto = MotoStack(names=StackNames(), queue_url="q", dlq_url="d")
    extra = {"ApiUrl": "http://127.0.0.1:3000", "VectorIndexArn": "arn:aws:s3vectors:us-east-1:1:bucket/b/index/i"}
    outputs = _Backfill(moto, [], stack_name="clip-lambda", extra_outputs=extra).outputs()
    assert outputs["ApiUrl"] == "http://127.0.0.1:3000" and outputs["QueueUrl"] == "q"
    assert outputs["BackfillStateMachineArn"].endswith(":stateMachine:clip-lambda-backfill")
    keys, _ = template_outputs_and_parameters()
    assert set(outputs) <= set(keys)


def test_a_stack_that_is_not_started_has_no_environment_nor_description(tmp_path: Path) -> None:
    stack = DeployedStack(model_dir=tmp_path)
    with pytest.raises(RuntimeError, match="not started"):
        stack.env()
    with pytest.raises(RuntimeError, match="not started"):
        describe(stack)
    stack.stop()  # nothing started: nothing to stop
