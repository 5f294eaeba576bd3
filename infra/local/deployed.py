"""The local stack in the shape of a deployed one, for commands written against a real stack.

A user of a deployed stack names it (``--stack clip-lambda``) and reads its outputs with DescribeStacks; calls
the API with SigV4 (``ApiAuth=AWS_IAM``, the default); uploads to its bucket; reads its table; starts its
backfill on Step Functions. ``DeployedStack`` gives each of those a local counterpart with the same names
and answers, so that the README's commands run unchanged (``tests/integration/test_readme.py``):

- moto server (S3 → SQS notifications, DynamoDB, S3 Vectors behind the local QueryVectors front);
- the S3 function under the RIE behind the SQS event source mapping emulation, and the API function under
  the RIE behind the HTTP API front **with IAM auth** (unsigned requests get API Gateway's 403);
- LOCAL EMULATION of CloudFormation's DescribeStacks (the real template's output keys, local values),
  Lambda's GetAccountSettings and the backfill's Step Functions calls (``infra.local.backfill_stack``).

``env()`` is the environment a CLI runs with against it: moto's credentials and region, and every service's
endpoint variable (botocore's ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``); no AWS setting of the
user's leaks in.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.api_gateway import TEMPLATE_ROUTES, ApiGateway
from infra.local.backfill_stack import ACCOUNT, LocalBackfill
from infra.local.moto_stack import CREDENTIALS, REGION, MotoStack, StackNames
from infra.local.poller import SqsPoller
from infra.local.rie import LocalFunction
from layer.manifest import Manifest


@dataclass
class DeployedStack:
    model_dir: Path
    stack_name: str = "clip-lambda"
    visibility_timeout: int = 3  # seconds before a failed message is retried (short: tests wait for it)
    extra_env: dict[str, str] = field(default_factory=dict)
    moto: MotoStack | None = None
    api: ApiGateway | None = None
    backfill: LocalBackfill | None = None
    poller: SqsPoller | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    def start(self) -> DeployedStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        dim = Manifest.read(self.model_dir).dim
        names = StackNames(visibility_timeout=self.visibility_timeout, dimension=dim)
        moto = self._stack.enter_context(MotoStack(names=names).start())
        self.moto = moto
        env = moto.function_env(MODEL_DIR=str(self.model_dir), **self.extra_env)
        s3_fn = self._stack.enter_context(LocalFunction("handler.s3.lambda_handler", env=env, name="s3").start())
        api_fn = self._stack.enter_context(LocalFunction("handler.api.lambda_handler", env=env, name="api").start())
        keys = {CREDENTIALS["AWS_ACCESS_KEY_ID"]: CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        self.api = self._stack.enter_context(
            ApiGateway(api_fn.invoke, routes=TEMPLATE_ROUTES, iam=keys, region=REGION).start()
        )
        sqs = moto.client("sqs")
        self.poller = SqsPoller(sqs, moto.queue_url, moto.queue_arn, s3_fn.invoke, wait_seconds=1)
        self._stack.callback(self.poller.stop)
        self.poller.start()
        outputs = {
            "ApiUrl": self.api.url,
            "VectorIndexArn": f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{names.vector_bucket}/index/"
            f"{names.vector_index}",
        }
        self.backfill = _Backfill(moto, [s3_fn.invoke], stack_name=self.stack_name, extra_outputs=outputs)
        self._stack.enter_context(self.backfill.start())

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        if self.backfill is None or self.moto is None:
            raise RuntimeError("DeployedStack is not started")
        return {
            **self.backfill.cli_env(base),
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_S3VECTORS": self.moto.vectors_endpoint,
        }

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> DeployedStack:
        return self if self.moto is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class _Backfill(LocalBackfill):
    """The backfill's control plane, publishing the API and index outputs as well."""

    extra_outputs: dict[str, str] = field(default_factory=dict)

    def outputs(self) -> dict[str, str]:
        return {**super().outputs(), **self.extra_outputs}


def describe(stack: DeployedStack) -> dict[str, Any]:
    """The stack's DescribeStacks entry, as the CLI sees it."""
    if stack.backfill is None:
        raise RuntimeError("DeployedStack is not started")
    return stack.backfill.description
