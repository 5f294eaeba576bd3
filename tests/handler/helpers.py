"""Handler unit-test helpers: a fake engine (real decoder and error classes, hashed vectors), the committed
sample events, a Lambda context."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handler.item import ObjectMeta
from layer import Embedding, Limits
from layer.decode import decode
from layer.embedding import Timings
from layer.manifest import IMAGE, Manifest, TowerSpec
from layer.selfcheck import SelfCheck
from layer.tags import Tagger
from layer.text import check_text

EVENTS = Path(__file__).with_name("events")
BUCKET = "photos"
TABLE = "embeddings"
MODEL_ID = "fake/clip-test"


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / name).read_text()))


class FakeEngine:
    """Decodes with the real ``layer`` decoder (so every ImageError is genuine) and returns a unit vector
    derived from the bytes' hash: no ONNX model needed."""

    model_id = MODEL_ID
    dim = 512
    manifest = Manifest(
        model_id=MODEL_ID,
        dim=512,
        towers={IMAGE: TowerSpec(IMAGE, "model.onnx", "model.fp32.onnx", "pixel_values", "image_embeds", 512)},
    )
    self_check: SelfCheck | None = None  # not run (no model): a sound engine
    tagger: Tagger | None = None  # no label vocabulary (tests give one where they need tags)

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.calls = 0

    @staticmethod
    def vector_for(data: bytes) -> np.ndarray:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(data).digest()[:8], "little"))
        v = rng.standard_normal(512).astype(np.float32)
        return (v / np.linalg.norm(v)).astype(np.float32)

    @staticmethod
    def cpu_report() -> dict[str, Any]:
        return {"kernel_path": "x86-avx2", "gate_covered": False, "session_config": {}}

    def embed_text(self, text: str) -> Embedding:
        """The real text checks; a vector from the text's hash, ``truncated`` past 77 words."""
        words = check_text(text).split()
        return Embedding(
            vector=self.vector_for(text.encode()), norm=7.5, model=self.model_id,
            tokens=min(len(words), 75) + 2, truncated=len(words) > 75,
        )  # fmt: skip

    def embed_one(self, data: bytes) -> Embedding:
        self.calls += 1
        decoded = decode(data, self.limits)
        vector = self.vector_for(data)
        return Embedding(
            vector=vector,
            norm=10.5,
            width=decoded.width,
            height=decoded.height,
            model=self.model_id,
            format=decoded.format,
            timings=Timings(decode_ms=1.0, preprocess_ms=2.0, inference_ms=3.0),
            tags=self.tagger.tag(vector) if self.tagger is not None else (),
        )


@dataclass
class Context:
    function_name: str = "clip-lambda-test"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:clip-lambda-test"
    aws_request_id: str = "req-0001"


def s3_notification(
    bucket: str,
    key: str,
    *,
    action: str = "ObjectCreated:Put",
    etag: str | None = None,
    size: int | None = None,
    sequencer: str | None = None,
    event_time: str = "2024-05-01T12:00:00.000Z",
) -> dict[str, Any]:
    """An S3 notification made from the SAM sample, with the key URL-encoded as S3 does (space → ``+``)."""
    from urllib.parse import quote_plus

    ev = load_event("s3-put.json" if action.startswith("ObjectCreated") else "s3-delete.json")
    rec = ev["Records"][0]
    rec["eventName"] = action
    rec["eventTime"] = event_time
    rec["s3"]["bucket"]["name"] = bucket
    rec["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if etag is not None:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size
    if sequencer is not None:
        obj["sequencer"] = sequencer
    rec["s3"]["object"] = obj
    return ev


def sqs_event(*bodies: Any) -> dict[str, Any]:
    """The SAM SQS sample with one record per body (dicts are JSON-encoded)."""
    template = load_event("sqs-receive-message.json")["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        rec = copy.deepcopy(template)
        rec["messageId"] = f"msg-{i}"
        rec["receiptHandle"] = f"handle-{i}"
        rec["body"] = body if isinstance(body, str) else json.dumps(body)
        records.append(rec)
    return {"Records": records}


def http_event(
    method: str,
    path: str,
    body: bytes | str | None = None,
    content_type: str | None = None,
    *,
    base64_encoded: bool | None = None,
) -> dict[str, Any]:
    """The SAM HTTP API (payload v2) sample, pointed at a route; binary bodies are base64 as API Gateway
    sends them."""
    import base64

    ev = load_event("apigateway-http-api-proxy.json")
    ev["rawPath"] = path
    ev["routeKey"] = "$default"
    ev["rawQueryString"] = ""
    ev.pop("queryStringParameters", None)
    ev.pop("pathParameters", None)
    ev["requestContext"]["http"].update(method=method, path=path)
    ev["headers"] = {"content-type": content_type} if content_type else {}
    if body is None:
        ev.pop("body", None)
        ev["isBase64Encoded"] = False
    elif isinstance(body, bytes) or base64_encoded:
        raw = body if isinstance(body, bytes) else body.encode()
        ev["body"] = base64.b64encode(raw).decode()
        ev["isBase64Encoded"] = True
    else:
        ev["body"] = body
        ev["isBase64Encoded"] = False
    return ev


# An embedding and an object's metadata with every field set: the item tests' inputs.
def item_embedding(vector: np.ndarray | None = None) -> Embedding:
    v = np.arange(512, dtype=np.float32) / 512 if vector is None else vector
    return Embedding(
        vector=v,
        norm=10.25,
        width=640,
        height=427,
        model="m/1",
        format="JPEG",
        timings=Timings(decode_ms=1, preprocess_ms=2, inference_ms=3),
    )


ITEM_META = ObjectMeta(bucket="b", key="dir/a b.jpg", order_key="1AB", etag="e1", version_id="v1", sequencer="AB",
                       size=123, content_type="image/jpeg")  # fmt: skip


def backfill_batch(*items: dict[str, Any], model_id: str | None = None, encoded: bool = False) -> dict[str, Any]:
    """The S3 function's input from the backfill's Distributed Map: a batch of listed objects."""
    return {"Items": list(items), "BatchInput": {"bucket": BUCKET, "model_id": model_id, "keys_url_encoded": encoded}}
