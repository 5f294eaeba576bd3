"""The API function under the RIE: real model, real S3 (moto server), API Gateway v2 events over HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.local.moto_stack import MotoStack
from infra.local.rie import LocalFunction
from tests.handler.helpers import http_event
from tests.imaging import encode, photo_bytes, png_bomb, resized_photo
from tests.integration.conftest import API_MAX_IMAGE_BYTES, cli_embeddings, cosine

pytestmark = pytest.mark.integration


def call(fn: LocalFunction, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = fn.invoke(event)
    assert not result.error, result.payload
    assert result.payload["headers"]["Content-Type"] == "application/json"
    return result.payload["statusCode"], json.loads(result.payload["body"])


def test_raw_image_matches_the_cli(api_fn: LocalFunction, model_dir: Path, tmp_path: Path) -> None:
    data = photo_bytes()["china.jpg"]
    status, body = call(api_fn, http_event("POST", "/embed", data, "image/jpeg"))
    assert status == 200 and body["dim"] == 512 and (body["width"], body["height"]) == (640, 427)
    path = tmp_path / "china.jpg"
    path.write_bytes(data)
    assert cosine(body["embedding"], cli_embeddings(model_dir, [path])[str(path)]) >= 0.99999
    assert abs(np.linalg.norm(body["embedding"]) - 1) < 1e-5 and body["norm"] > 0


def test_batch_with_s3_store_and_errors_in_place(api_fn: LocalFunction, stack: MotoStack) -> None:
    bucket = stack.names.bucket
    stack.client("s3").put_object(Bucket=bucket, Key="api/stored photo.jpg", Body=photo_bytes()["flower.jpg"])
    images = [
        {"s3": f"s3://{bucket}/api/stored photo.jpg"},
        {"data": base64.b64encode(b"hello").decode()},
        {"s3": f"s3://{bucket}/api/missing.jpg"},
        {"s3": "s3://no-such-bucket/x.jpg"},
    ]
    status, body = call(
        api_fn, http_event("POST", "/embed", json.dumps({"images": images, "store": True}), "application/json")
    )
    assert status == 200
    r = body["results"]
    assert r[0]["stored"] is True and len(r[0]["embedding"]) == 512
    assert [(x["status"], x["error"]["code"]) for x in r[1:]] == [
        (422, "not_an_image"),
        (404, "s3_not_found"),
        (403, "s3_bucket_not_allowed"),  # only the stack's bucket (ALLOWED_S3_BUCKETS)
    ]
    item = stack.client("dynamodb").get_item(
        TableName=stack.names.table, Key={"pk": {"S": f"s3://{bucket}/api/stored photo.jpg"}}, ConsistentRead=True
    )["Item"]
    stored = stack.stored_vector(item)
    assert cosine(stored, r[0]["embedding"]) >= 0.999999


@pytest.mark.parametrize(
    ("name", "content_type", "status", "code"),
    [
        ("empty", "image/jpeg", 400, "empty_image"),
        ("truncated", "image/jpeg", 422, "corrupt_image"),
        ("text", "image/png", 422, "not_an_image"),
        ("huge", "image/jpeg", 413, "image_too_large"),
        ("bomb", "image/png", 413, "too_many_pixels"),
        ("photo", "text/plain", 415, "unsupported_media_type"),
        ("bad_json", "application/json", 400, "invalid_request"),
    ],
)
def test_bad_bodies_get_documented_4xx(
    api_fn: LocalFunction, name: str, content_type: str, status: int, code: str
) -> None:
    photo = photo_bytes()["china.jpg"]
    body: bytes | str = {
        "empty": b"",
        "truncated": photo[: len(photo) // 2],
        "text": b"just some text",
        "huge": encode(resized_photo((1800, 1400)), "PNG") + b"\0" * API_MAX_IMAGE_BYTES,
        "bomb": png_bomb(),
        "photo": photo,
        "bad_json": '{"images": [',
    }[name]
    got_status, got = call(api_fn, http_event("POST", "/embed", body, content_type))
    assert (got_status, got["error"]["code"]) == (status, code)
    assert set(got) == {"error"} and "Traceback" not in json.dumps(got)


def test_model_and_health(api_fn: LocalFunction, model_dir: Path) -> None:
    status, body = call(api_fn, http_event("GET", "/model"))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert status == 200 and body["manifest"] == manifest and body["dim"] == 512
    assert body["limits"]["max_image_bytes"] == API_MAX_IMAGE_BYTES
    assert call(api_fn, http_event("GET", "/health"))[1]["status"] == "ok"
    assert "INIT REPORT" in api_fn.logs()


def test_limits_hold_under_a_burst(api_fn: LocalFunction, stack: MotoStack) -> None:
    """A public API (ApiAuth=NONE) gets bursts of abuse: oversized bodies and batches, foreign buckets and
    store requests are refused with their codes, every request is answered, and the next honest request
    still works. Through the local API Gateway front (its 10 MB / 6 MB limits) with 8 concurrent clients."""
    import threading
    import urllib.error
    import urllib.request

    from infra.local.api_gateway import ApiGateway

    photo = encode(resized_photo((320, 240)), "JPEG")
    huge = b"\xff\xd8" + bytes(7_000_000)  # over Lambda's 6 MB invoke payload once base64-encoded
    batch = {"images": [{"data": base64.b64encode(photo).decode()}] * 17}  # over MAX_BATCH_IMAGES (16)
    foreign = {"images": [{"s3": "s3://someone-elses-bucket/secret.jpg"}]}
    abuse = [
        (huge, "image/jpeg", 413),
        (json.dumps(batch).encode(), "application/json", 413),
        (json.dumps(foreign).encode(), "application/json", 200),  # per-image 403 inside a 200
        (photo, "image/jpeg", 200),
    ] * 6
    results: list[tuple[int, int, dict[str, Any]]] = []

    def post(body: bytes, content_type: str, expected: int) -> None:
        request = urllib.request.Request(f"{gateway.url}/embed", data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                results.append((expected, resp.status, json.loads(resp.read())))
        except urllib.error.HTTPError as exc:
            results.append((expected, exc.code, json.loads(exc.read() or b"{}")))

    with ApiGateway(api_fn.invoke).start() as gateway:
        threads = [threading.Thread(target=post, args=a) for a in abuse]
        chunks = [threads[i : i + 8] for i in range(0, len(threads), 8)]
        for chunk in chunks:
            for t in chunk:
                t.start()
            for t in chunk:
                t.join(timeout=300)
        assert len(results) == len(abuse)
        for expected, status, body in results:
            assert status == expected, body
            if status == 200 and "results" in body:
                assert body["results"][0]["error"]["code"] == "s3_bucket_not_allowed"
        status, body = call(api_fn, http_event("POST", "/embed", photo, "image/jpeg"))
        assert status == 200 and len(body["embedding"]) == 512
