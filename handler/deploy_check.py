"""The deploy check: a CloudFormation custom resource that runs the image's model on Lambda before the stack
goes live, and fails the deployment (CloudFormation rolls it back) when the deployment does not fit it.

It runs in the same image as the two functions, at deploy time, on a Lambda CPU: it loads the engine as
INIT does (both towers), so its self-check runs the canaries on Lambda's own CPU, and it compares the
template's parameters with the model directory:

- ``EmbeddingDimension`` (the vector index's dimension, and the functions' ``EMBEDDING_DIM``) must be the
  model's, else the first PutVectors would fail;
- the self-check must pass there;
- an untrained model (random-init, the offline fallback) or one with an ungated tower is refused unless
  ``AllowUntrainedModel`` is true.

The answer goes to CloudFormation's pre-signed ``ResponseURL`` (PUT, JSON), as every custom resource must;
a Delete always succeeds (nothing was created).
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.observability import logger
from handler.runtime import untrained
from handler.settings import Settings
from layer.errors import ModelDirError

FUNCTION_VERSION = "AWS_LAMBDA_FUNCTION_VERSION"  # set by Lambda: the version this invocation runs
MAX_REASON = 3500  # CloudFormation keeps a status reason of up to 4 KB (the whole response body: 4 KB)


@dataclass(frozen=True)
class Verdict:
    problems: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(settings: Settings, properties: dict[str, Any]) -> Verdict:
    """What is wrong with deploying this image with these parameters (empty: nothing)."""
    from layer import Embedder

    problems: list[str] = []
    try:
        engine = Embedder.from_dir(settings.model_dir, settings=settings.engine, text=True)
    except ModelDirError as exc:
        return Verdict([f"the image's model directory cannot be loaded: {exc}"])
    manifest = engine.manifest
    data = {"ModelId": engine.model_id, "Dimension": str(engine.dim), "KernelPath": engine.cpu.kernel_path}
    wanted = str(properties.get("EmbeddingDimension", "")).strip()
    if wanted and int(wanted) != manifest.dim:
        problems.append(
            f"EmbeddingDimension={wanted}, but the image's model ({manifest.model_id}) makes {manifest.dim}-d "
            f"vectors: deploy with --parameter-overrides EmbeddingDimension={manifest.dim}"
        )
    why = untrained(manifest)
    allowed = str(properties.get("AllowUntrainedModel", "false")).strip().lower() == "true"
    if why and not allowed:
        problems.append(
            f"refusing to deploy an untrained model: {why}. Build the real checkpoint (make model SOURCE=...) or "
            "deploy with --parameter-overrides AllowUntrainedModel=true"
        )
    data["Untrained"] = "true" if why else "false"
    check_result = engine.self_check
    if check_result is not None and not check_result.passed:
        problems.append(
            f"the model failed its self-check on this Lambda CPU ({engine.cpu.model}, {engine.cpu.kernel_path}): "
            f"{check_result.reason}"
        )
    return Verdict(problems, data)


def respond(event: CloudFormationCustomResourceEvent, status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON],
            "PhysicalResourceId": event.physical_resource_id or f"{event.stack_id}/model-check",
            "StackId": event.stack_id,
            "RequestId": event.request_id,
            "LogicalResourceId": event.logical_resource_id,
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's own pre-signed https URL
        event.response_url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310  # nosec B310
        answer.read()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    cfn = CloudFormationCustomResourceEvent(event)
    if cfn.request_type == "Delete":
        respond(cfn, "SUCCESS", "nothing to undo", {})
        return {"status": "SUCCESS"}
    named = str((cfn.resource_properties or {}).get("ImageVersion", "")).strip()
    running = os.environ.get(FUNCTION_VERSION, "")
    if cfn.request_type == "Update" and named and running and named != running:
        # A rollback's Update names the previous image; this is another one, which cannot judge it (and a
        # failed answer would leave the stack in UPDATE_ROLLBACK_FAILED). That image passed when it deployed.
        reason = f"image version {named} was checked when it was deployed; this is version {running}"
        respond(cfn, "SUCCESS", reason, {})
        return {"status": "SUCCESS", "reason": reason}
    try:
        verdict = check(Settings.from_env(), dict(cfn.resource_properties or {}))
    except Exception as exc:  # an unanswered custom resource hangs the stack for an hour: always answer
        logger.exception("deploy check crashed")
        verdict = Verdict([f"the deploy check failed to run: {type(exc).__name__}: {exc}"])
    status = "SUCCESS" if verdict.ok else "FAILED"
    reason = "the image's model fits this deployment" if verdict.ok else "; ".join(verdict.problems)
    (logger.info if verdict.ok else logger.error)("deploy check", extra={"status": status, "reason": reason})
    respond(cfn, status, reason, verdict.data)
    return {"status": status, "reason": reason}
