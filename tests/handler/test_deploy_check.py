"""The deploy check (a CloudFormation custom resource): it answers CloudFormation's pre-signed URL, always,
and fails the deployment when the parameters do not fit the image's model."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from handler import deploy_check
from layer.manifest import Manifest

pytestmark = pytest.mark.slow  # loads the real model


class _Capture(BaseHTTPRequestHandler):
    answers: list[dict[str, Any]]

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).answers.append({"body": json.loads(body), "content_type": self.headers.get("Content-Type")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None: ...


@pytest.fixture
def cloudformation() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for CloudFormation's pre-signed response URL on 127.0.0.1: the answers it received."""
    answers: list[dict[str, Any]] = []
    handler = type("Capture", (_Capture,), {"answers": answers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/response?X-Amz-Signature=x", answers
    finally:
        server.shutdown()


def event(url: str, request_type: str = "Create", **props: Any) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/clip/uuid",
        "RequestId": "req-1",
        "ResourceType": "Custom::ModelCheck",
        "LogicalResourceId": "ModelCheck",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", **props},
    }


def run(monkeypatch: pytest.MonkeyPatch, model: Path, ev: dict[str, Any], context: Any) -> dict[str, Any]:
    monkeypatch.setenv("MODEL_DIR", str(model))
    return deploy_check.lambda_handler(ev, context)


def test_a_fitting_deployment_succeeds(model_dir: Path, cloudformation: Any, monkeypatch: pytest.MonkeyPatch,
                                       context: Any) -> None:  # fmt: skip
    url, answers = cloudformation
    dim = Manifest.read(model_dir).dim
    allowed = event(url, EmbeddingDimension=str(dim), AllowUntrainedModel="true")  # the tests' model is random-init
    assert run(monkeypatch, model_dir, allowed, context)["status"] == "SUCCESS"
    [answer] = answers
    body = answer["body"]
    assert body["Status"] == "SUCCESS" and body["Data"]["Dimension"] == str(dim) and body["Data"]["Untrained"] == "true"
    assert (body["StackId"], body["RequestId"], body["LogicalResourceId"]) == (
        "arn:aws:cloudformation:us-east-1:123456789012:stack/clip/uuid", "req-1", "ModelCheck",
    )  # fmt: skip
    assert answer["content_type"] == ""  # what a pre-signed S3 PUT was signed for


def test_another_dimension_fails_the_deployment_and_says_the_fix(
    model_dir: Path, cloudformation: Any, monkeypatch: pytest.MonkeyPatch, context: Any
) -> None:
    url, answers = cloudformation
    dim = Manifest.read(model_dir).dim
    run(monkeypatch, model_dir, event(url, EmbeddingDimension=str(dim + 256)), context)
    body = answers[0]["body"]
    assert body["Status"] == "FAILED" and f"EmbeddingDimension={dim}" in body["Reason"]


def test_an_untrained_model_is_refused_unless_the_stack_allows_it(
    model_dir: Path, cloudformation: Any, monkeypatch: pytest.MonkeyPatch, context: Any
) -> None:
    url, answers = cloudformation
    assert Manifest.read(model_dir).random_init
    run(monkeypatch, model_dir, event(url, EmbeddingDimension=str(Manifest.read(model_dir).dim)), context)
    body = answers[0]["body"]
    assert body["Status"] == "FAILED" and "untrained" in body["Reason"] and "AllowUntrainedModel=true" in body["Reason"]


def test_a_corrupted_model_fails_its_self_check_at_deploy(
    model_dir: Path, cloudformation: Any, monkeypatch: pytest.MonkeyPatch, context: Any, tmp_path: Path
) -> None:
    url, answers = cloudformation
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken, ignore=shutil.ignore_patterns("*.fp32.onnx"))
    manifest = json.loads((broken / "manifest.json").read_text())
    canary = manifest["towers"]["image"]["canary"]
    canary["int8"] = {path: canary["fp32"] for path in canary["int8"]}  # not the shipped model's vectors
    (broken / "manifest.json").write_text(json.dumps(manifest))
    run(monkeypatch, broken, event(url, EmbeddingDimension=str(manifest["dim"]), AllowUntrainedModel="true"), context)
    body = answers[0]["body"]
    assert body["Status"] == "FAILED" and "self-check" in body["Reason"] and "image" in body["Reason"]


def test_it_always_answers_even_without_a_model(cloudformation: Any, monkeypatch: pytest.MonkeyPatch,
                                                 context: Any, tmp_path: Path) -> None:  # fmt: skip
    url, answers = cloudformation
    run(monkeypatch, tmp_path / "nothing", event(url, EmbeddingDimension="512"), context)
    assert answers[0]["body"]["Status"] == "FAILED" and "cannot be loaded" in answers[0]["body"]["Reason"]
    run(monkeypatch, tmp_path / "nothing", event(url, "Delete"), context)  # a delete never loads anything
    assert answers[1]["body"]["Status"] == "SUCCESS"


def test_a_rollback_to_another_image_is_not_judged_by_this_one(
    cloudformation: Any, monkeypatch: pytest.MonkeyPatch, context: Any, tmp_path: Path
) -> None:
    """CloudFormation rolls a failed update back with an Update naming the previous image's version."""
    url, answers = cloudformation
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    old = {**event(url, "Update", EmbeddingDimension="768", ImageVersion="6")}
    assert run(monkeypatch, tmp_path / "no-model-needed", old, context)["status"] == "SUCCESS"
    assert "version 6 was checked when it was deployed" in answers[0]["body"]["Reason"]
    same = {**event(url, "Update", EmbeddingDimension="768", ImageVersion="7")}
    run(monkeypatch, tmp_path / "no-model-needed", same, context)  # its own version: checked (and fails here)
    assert answers[1]["body"]["Status"] == "FAILED"
