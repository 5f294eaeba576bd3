"""Fixtures of the local backfill's tests (test_step_functions.py, test_backfill_stack.py): a moto server with
objects to list, the S3 function's stand-in, and the backfill's control plane over both (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.backfill_stack import LocalBackfill
from infra.local.moto_stack import MotoStack, StackNames
from tests.infra.local.functions import Function

N = 23  # objects under sfn/, which the backfill tests list


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoStack]:
    with MotoStack(names=StackNames(vector_bucket="", notifications=False)).start() as s:
        s3 = s.client("s3")
        for i in range(N):
            s3.put_object(Bucket=s.names.bucket, Key=f"sfn/{i:03d}.jpg", Body=b"x")
        yield s


@pytest.fixture(scope="module")
def shared_function() -> Function:
    return Function()


@pytest.fixture
def function(shared_function: Function) -> Function:
    """The module's function, as new: nothing seen, not failing, not held."""
    shared_function.reset()
    return shared_function


@pytest.fixture(scope="module")
def local(moto: MotoStack, shared_function: Function) -> Iterator[LocalBackfill]:
    with LocalBackfill(moto, [shared_function], concurrent_executions=100).start() as lb:
        yield lb
