"""The Lambda image (infra/image/Dockerfile): contents, and both functions under the Runtime Interface Emulator.

The round trip is the production topology on loopback: moto (S3, SQS, DynamoDB) on 127.0.0.1, S3 → SQS
notifications, a poller that turns received messages into Lambda's SQS event (as the event source mapping
does) and honours ``batchItemFailures``, the S3 function in the image under the RIE with host networking,
and the DynamoDB items checked against the host's engine on the same model.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from infra.local.container_rie import OFFLINE_ENV, ContainerFunction
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.poller import SqsPoller
from layer import Embedder
from layer.manifest import Manifest

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
REGION = "us-east-1"
# The runtime (OS, Python, onnxruntime, numpy, Pillow, Powertools, boto3, tokenizers, the code) without the model
# files: those grow with the checkpoint and with the nodes a recovery keeps in fp32 (the text tower's token
# embedding kept fp32 is 76 MB more than int8), so the budget is the rest of the image.
MAX_RUNTIME_MB = 330


def docker_out(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def in_image(image: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# ---------------------------------------------------------------------------------------------- contents


def test_image_size_within_budget(lambda_image: str) -> None:
    size_mb = int(docker_out("image", "inspect", "--format", "{{.Size}}", lambda_image)) / 1e6
    model_mb = int(in_image(lambda_image, "du -sb /opt/model").stdout.split()[0]) / 1e6
    print(f"image {lambda_image}: {size_mb:.0f} MB, of which the model files {model_mb:.0f} MB")
    assert 0 < model_mb < size_mb and size_mb - model_mb <= MAX_RUNTIME_MB


def test_image_runs_as_non_root_with_awslambdaric_entrypoint(lambda_image: str) -> None:
    config = json.loads(docker_out("image", "inspect", "--format", "{{json .Config}}", lambda_image))
    assert config["User"] not in ("", "0", "root", "0:0")
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "awslambdaric"]
    assert config["Cmd"] == ["handler.s3.lambda_handler"]
    assert in_image(lambda_image, "id -u").stdout.strip() != "0"


def test_image_holds_only_runtime_pieces(lambda_image: str) -> None:
    proc = in_image(
        lambda_image,
        "ls /opt/model; "
        "for m in torch transformers onnx pip setuptools; do "
        '  python -c "import $m" 2>/dev/null && echo HAS-$m; done; '
        "for c in gcc cc g++ make; do command -v $c >/dev/null && echo HAS-$c; done; "
        "for d in layer/convert bench infra tests; do test -e /var/task/$d && echo HAS-$d; done; "
        "python -c 'import onnxruntime, numpy, PIL, aws_lambda_powertools, boto3, awslambdaric'"
        " && echo RUNTIME-OK",
    )
    out = proc.stdout.split()
    assert sorted(o for o in out if not o.startswith(("HAS-", "RUNTIME"))) == [
        "labels.json",
        "labels.npy",
        "manifest.json",
        "model.onnx",
        "preprocessor_config.json",
        "text_model.onnx",
        "tokenizer.json",
    ], "the run-time files of both towers and the tags, no fp32 export"
    assert [o for o in out if o.startswith("HAS-")] == []
    assert "RUNTIME-OK" in out, proc.stderr


def test_image_model_matches_the_built_model(lambda_image: str, model_dir: Path) -> None:
    digest = in_image(lambda_image, "sha256sum /opt/model/model.onnx").stdout.split()[0]
    assert digest == hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ photos
def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    from sklearn.datasets import load_sample_image

    china = Image.fromarray(load_sample_image("china.jpg"))
    flower = Image.fromarray(load_sample_image("flower.jpg"))
    return {
        "photos/china palace.jpg": jpeg(china),  # a space: arrives as "+" in the notification
        "photos/flower.jpg": jpeg(flower),
        "photos/2024/china-12mp.jpg": jpeg(china.resize((4000, 3000), Image.Resampling.BICUBIC)),
        "docs/readme.txt": b"not an image\n",
    }


# ------------------------------------------------------------------------------------------- round trip
def test_s3_sqs_function_dynamodb_round_trip(lambda_image: str, photos: dict[str, bytes], model_dir: Path) -> None:
    with MotoStack(names=StackNames(dimension=Manifest.read(model_dir).dim)) as stack:
        s3, ddb = stack.client("s3"), stack.client("dynamodb")
        bucket, table = stack.names.bucket, stack.names.table
        for key, data in photos.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)

        env = stack.function_env(POWERTOOLS_TRACE_DISABLED="true")  # AWS_ENDPOINT_URL: moto on loopback
        with ContainerFunction(lambda_image, "handler.s3.lambda_handler", env=env) as fn:
            poller = SqsPoller(stack.client("sqs"), stack.queue_url, stack.queue_arn, fn.invoke)
            # The s3:TestEvent that configuring the notification queued comes first: ignored, not failed.
            stats = poller.drain(timeout=180)
            assert stats.function_errors == 0 and stats.failed == 0, (stats, fn.logs()[-4000:])
            items = {i["pk"]["S"]: i for i in ddb.scan(TableName=table, ConsistentRead=True)["Items"]}
            assert set(items) == {f"s3://{bucket}/{key}" for key in photos}, fn.logs()[-4000:]

            # Photos: unit vectors equal (cosine) to the host engine's on the same bytes and model.
            host = Embedder.from_dir(model_dir)
            for key, data in photos.items():
                item = items[f"s3://{bucket}/{key}"]
                if key.endswith(".txt"):
                    assert "embedding" not in item and "error_code" in item  # a failure record, not a retry
                    continue
                # the lean item (ItemVector=auto with an index): the vector lives in the index, read back here
                vec = np.asarray(stack.stored_vector(item), dtype=np.float32)
                assert vec.shape == (512,) and int(item["dim"]["N"]) == 512
                assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
                ref = host.embed_one(data)
                assert float(vec @ ref.vector) > 0.9999, key
                assert (int(item["width"]["N"]), int(item["height"]["N"])) == (ref.width, ref.height)
            big = items[f"s3://{bucket}/photos/2024/china-12mp.jpg"]
            assert (int(big["width"]["N"]), int(big["height"]["N"])) == (4000, 3000)

            # A delete flows through the same path and removes the item.
            s3.delete_object(Bucket=bucket, Key="photos/flower.jpg")
            poller.drain(timeout=60)
            keys = {i["pk"]["S"] for i in ddb.scan(TableName=table, ConsistentRead=True)["Items"]}
            assert f"s3://{bucket}/photos/flower.jpg" not in keys
            assert f"s3://{bucket}/photos/china palace.jpg" in keys
            assert stack.client("sqs").receive_message(QueueUrl=stack.dlq_url).get("Messages", []) == []

            reports = fn.reports()
            assert reports and reports[0].init_ms is not None
            print(
                f"S3 function under RIE: INIT {reports[0].init_ms:.0f} ms, invokes "
                + ", ".join(f"{r.duration_ms:.0f}" for r in reports)
                + " ms"
            )
            assert reports[0].init_ms < 10_000, "Lambda's INIT limit is 10 s"


# --------------------------------------------------------------------------------------------------- API
def api_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def test_api_function_under_rie(lambda_image: str) -> None:
    env = dict(OFFLINE_ENV)
    with ContainerFunction(lambda_image, "handler.api.lambda_handler", env=env) as fn:
        resp = fn.invoke(api_event("api-embed.json")).payload
        assert resp["statusCode"] == 200, (resp, fn.logs()[-3000:])
        body = json.loads(resp["body"])
        vec = np.asarray(body["embedding"], dtype=np.float64)
        assert vec.shape == (512,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4

        resp = fn.invoke(api_event("api-malformed.json")).payload
        assert resp["statusCode"] == 400
        assert json.loads(resp["body"])["error"]["code"] == "invalid_base64"

        resp = fn.invoke(api_event("api-not-an-image.json")).payload
        assert resp["statusCode"] == 422
        assert json.loads(resp["body"])["error"]["code"]

        event = api_event("api-embed.json")
        event.update(routeKey="GET /health", rawPath="/health", body=None, isBase64Encoded=False)
        event["requestContext"].update(routeKey="GET /health")
        event["requestContext"]["http"].update(method="GET", path="/health")
        resp = fn.invoke(event).payload
        assert resp["statusCode"] == 200, resp

        reports = fn.reports()
        print(f"API function under RIE: INIT {reports[0].init_ms:.0f} ms, first invoke {reports[0].invoke_ms:.0f} ms")


def test_text_endpoint_under_rie_matches_the_engine(lambda_image: str, model_dir: Path) -> None:
    """POST /embed/text in the image, under the RIE: the text tower shipped and loaded by the API function,
    vectors equal to `clip-lambda embed --text` on the host's model directory."""
    texts = ["a photo of a cat", "A RED BICYCLE, leaning on a wall!", " ".join(["word"] * 100)]
    event = api_event("api-embed.json")
    event.update(routeKey="POST /embed/text", rawPath="/embed/text", body=json.dumps({"texts": texts}))
    event["isBase64Encoded"] = False
    event["headers"] = {"content-type": "application/json"}
    event["requestContext"].update(routeKey="POST /embed/text")
    event["requestContext"]["http"].update(method="POST", path="/embed/text")
    with ContainerFunction(lambda_image, "handler.api.lambda_handler", env=dict(OFFLINE_ENV)) as fn:
        resp = fn.invoke(event).payload
        assert resp["statusCode"] == 200, (resp, fn.logs()[-3000:])
    body = json.loads(resp["body"])
    out = subprocess.run(
        [sys.executable, "-m", "layer", "embed", "--model", str(model_dir), *(a for t in texts for a in ("--text", t))],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    host = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    for got, ref in zip(body["results"], host, strict=True):
        a, b = np.asarray(got["embedding"], np.float64), np.asarray(ref["embedding"], np.float64)
        assert a.shape == (512,) and float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99999
        assert (got["tokens"], got["truncated"]) == (ref["tokens"], ref["truncated"])
    assert body["results"][2]["truncated"] is True and body["results"][2]["tokens"] == 77


def test_functions_run_on_a_read_only_root_as_non_root(lambda_image: str) -> None:
    """Lambda's file system: everything read-only but /tmp (512 MB). The image must INIT and embed there,
    as its non-root user, writing nothing outside /tmp."""
    probe = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp:rw,size=512m", "--network", "none",
         "--entrypoint", "/bin/sh", lambda_image, "-c",
         "id -u; touch /var/task/x 2>/dev/null && echo WROTE-TASK; touch /opt/model/x 2>/dev/null && echo WROTE-MODEL;"
         " touch /tmp/x && echo TMP-OK"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    uid, *rest = probe.stdout.split()
    assert uid != "0" and rest == ["TMP-OK"], probe.stdout + probe.stderr
    env = dict(OFFLINE_ENV)
    read_only = ("--read-only", "--tmpfs", "/tmp:rw,size=512m")
    with ContainerFunction(lambda_image, "handler.api.lambda_handler", env=env, docker_args=read_only) as fn:
        resp = fn.invoke(api_event("api-embed.json")).payload
        assert resp["statusCode"] == 200, (resp, fn.logs()[-3000:])
        assert len(json.loads(resp["body"])["embedding"]) == 512
