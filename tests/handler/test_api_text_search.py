"""The API's text and search routes: POST /embed/text (per-text results, errors in place) and POST /search
(a text, an image or an s3 reference → the index's nearest images), with the same JSON error contract."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from handler import api
from handler.errors import IndexMisconfigured, TransientError
from handler.schemas import MAX_TEXTS
from layer import ModelDirError
from layer.text import MAX_TEXT_CHARS
from tests.handler.helpers import BUCKET, FakeEngine, http_event


def post(path: str, payload: Any, context: Any, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    response = api.lambda_handler(http_event("POST", path, body, content_type), context)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def error_of(got: tuple[int, dict[str, Any]]) -> tuple[int, str]:
    status, body = got
    assert set(body) == {"error"} and body["error"]["message"], body
    return status, body["error"]["code"]


@dataclass(frozen=True)
class Hit:
    key: str
    bucket: str
    score: float
    width: int
    height: int
    etag: str
    tags: tuple[str, ...] = ()


class FakeIndex:
    """Ranks what it holds by dot product (the vectors are unit length), like the real index's cosine."""

    def __init__(self, vectors: dict[str, np.ndarray] | None = None, fail: bool | Exception = False) -> None:
        self.vectors = vectors or {}
        self.fail = fail
        self.queries: list[tuple[np.ndarray, int, str | None]] = []

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None, tags: Sequence[str] = ()) -> list[Hit]:
        self.queries.append((vector, k, prefix))
        if isinstance(self.fail, Exception):
            raise self.fail
        if self.fail:
            raise TransientError("QueryVectors: SlowDown")
        keys = [key for key in self.vectors if prefix is None or key.startswith(prefix)]
        ranked = sorted(keys, key=lambda key: -float(self.vectors[key] @ vector))[:k]
        return [Hit(key, BUCKET, float(self.vectors[key] @ vector), 64, 48, "e" * 32) for key in ranked]


def test_texts_embed_in_order_with_errors_in_place(rt, context) -> None:
    long = " ".join(["word"] * 100)
    status, body = post("/embed/text", {"texts": ["a red bicycle", "", long, "x" * 1001]}, context)
    assert status == 200 and (body["model"], body["dim"]) == ("fake/clip-test", 512)
    first, empty, truncated, too_long = body["results"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.asarray(first["embedding"], np.float32), FakeEngine.vector_for(b"a red bicycle"))
    assert (first["tokens"], first["truncated"], first["norm"]) == (5, False, 7.5) and "error" not in first
    assert (empty["status"], empty["error"]["code"]) == (400, "empty_text") and "embedding" not in empty
    assert truncated["truncated"] is True and truncated["tokens"] == 77
    assert (too_long["status"], too_long["error"]["code"]) == (413, "text_too_long")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"texts": []}, 400, "invalid_request"),
        ({"texts": ["a"] * 65}, 400, "invalid_request"),
        ({"texts": [3]}, 400, "invalid_request"),
        ({"texts": ["a"], "extra": 1}, 400, "invalid_request"),
        ("not json", 400, "invalid_request"),
    ],
)
def test_bad_text_requests_are_4xx(rt, context, payload: Any, status: int, code: str) -> None:
    assert error_of(post("/embed/text", payload, context)) == (status, code)


def test_text_routes_want_json(rt, context) -> None:
    assert error_of(post("/embed/text", "a red bicycle", context, "text/plain")) == (415, "unsupported_media_type")
    assert error_of(post("/search", "a red bicycle", context, "text/plain")) == (415, "unsupported_media_type")


def test_a_model_without_a_text_tower_is_501(rt, context, monkeypatch) -> None:
    def no_tower(text: str) -> Any:
        raise ModelDirError("no text tower loaded")

    monkeypatch.setattr(rt.engine, "embed_text", no_tower)
    assert error_of(post("/embed/text", {"texts": ["a"]}, context)) == (501, "text_unavailable")
    rt.index = FakeIndex()
    assert error_of(post("/search", {"text": "a"}, context)) == (501, "text_unavailable")


def test_search_without_an_index_is_501(rt, context) -> None:
    rt.index = None
    assert error_of(post("/search", {"text": "a cat"}, context)) == (501, "search_unavailable")


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def test_search_by_text_ranks_the_index_by_similarity(rt, context) -> None:
    query = FakeEngine.vector_for(b"a cat on a sofa")
    near = (query + 0.1 * unit(1)) / np.linalg.norm(query + 0.1 * unit(1))
    rt.index = index = FakeIndex({"cats/tom.jpg": near, "dogs/rex.jpg": unit(2), "cats/far.jpg": -query})
    status, body = post("/search", {"text": "a cat on a sofa", "k": 2}, context)
    assert status == 200 and (body["query"], body["model"], body["truncated"]) == ("text", "fake/clip-test", False)
    assert [r["key"] for r in body["results"]] == ["cats/tom.jpg", "dogs/rex.jpg"]
    assert body["results"][0]["score"] == pytest.approx(float(near @ query))
    assert set(body["results"][0]) == {"key", "bucket", "score", "width", "height", "etag"}
    vector, k, prefix = index.queries[-1]
    np.testing.assert_array_equal(vector, query)
    assert (k, prefix) == (2, None)
    _, body = post("/search", {"text": "a cat on a sofa", "prefix": "dogs/"}, context)
    assert [r["key"] for r in body["results"]] == ["dogs/rex.jpg"] and index.queries[-1][1:] == (10, "dogs/")


def test_search_by_image_and_by_s3_reference(rt, context, photo) -> None:
    rt.index = index = FakeIndex({"a.jpg": FakeEngine.vector_for(photo), "b.jpg": unit(3)})
    status, body = post("/search", {"image": base64.b64encode(photo).decode(), "k": 1}, context)
    assert (status, body["query"], [r["key"] for r in body["results"]]) == (200, "image", ["a.jpg"])
    assert body["results"][0]["score"] == pytest.approx(1.0) and "truncated" not in body
    rt.s3.put_object(Bucket=BUCKET, Key="q.jpg", Body=photo)
    status, body = post("/search", {"s3": f"s3://{BUCKET}/q.jpg", "k": 1}, context)
    assert (status, body["query"], [r["key"] for r in body["results"]]) == (200, "s3", ["a.jpg"])
    np.testing.assert_array_equal(index.queries[-1][0], FakeEngine.vector_for(photo))


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 400, "invalid_request"),
        ({"text": "a", "s3": "s3://photos/a.jpg"}, 400, "invalid_request"),
        ({"text": "a", "k": 0}, 400, "invalid_request"),
        ({"text": "a", "k": 101}, 400, "invalid_request"),
        ({"text": "a", "limit": 3}, 400, "invalid_request"),
        ({"text": ""}, 400, "empty_text"),
        ({"text": "x" * 1001}, 400, "invalid_request"),
        ({"image": "!!not base64!!"}, 400, "invalid_base64"),
        ({"image": base64.b64encode(b"not an image").decode()}, 422, "not_an_image"),
        ({"s3": "s3://elsewhere/a.jpg"}, 403, "s3_bucket_not_allowed"),
        ({"s3": f"s3://{BUCKET}/missing.jpg"}, 404, "s3_not_found"),
    ],
)
def test_bad_searches_are_4xx(rt, context, payload: dict[str, Any], status: int, code: str) -> None:
    rt.index = FakeIndex()
    assert error_of(post("/search", payload, context)) == (status, code)


def test_an_index_that_fails_is_503(rt, context) -> None:
    rt.index = FakeIndex(fail=True)
    assert error_of(post("/search", {"text": "a cat"}, context)) == (503, "index_unavailable")


def test_an_index_that_refuses_for_good_is_502_with_the_fix_not_a_retry(rt, context) -> None:
    remedy = "the index holds 768-d vectors, the model makes 512-d: deploy with EmbeddingDimension=512"
    rt.index = FakeIndex(fail=IndexMisconfigured("QueryVectors", "ValidationException", remedy))
    status, body = post("/search", {"text": "a cat"}, context)
    assert error_of((status, body)) == (502, "index_misconfigured")
    message = body["error"]["message"]
    assert "QueryVectors" in message and "ValidationException" in message and remedy in message
    assert "retry" not in message


# ----------------------------------------------------------------------------------- the text route's body size
EMOJI = "\U0001f600"  # one character, escaped in JSON as a surrogate pair: \ud83d\ude00 (12 bytes)


def text_event(body: str, *, base64_encoded: bool) -> dict[str, Any]:
    return http_event("POST", "/embed/text", body, "application/json", base64_encoded=base64_encoded)


def largest_valid_body() -> str:
    """64 texts of 1,000 emoji, every character escaped, the field name too, padded with whitespace to the
    route's bound: the largest body a valid request can have."""
    name = "".join(f"\\u{ord(c):04x}" for c in "texts")
    texts = ",".join([json.dumps(EMOJI * MAX_TEXT_CHARS)] * MAX_TEXTS)
    body = "{" + '"' + name + '"' + ":[" + texts + "]}"
    return body[:1] + " " * (api.TEXT_BODY_MAX_BYTES - len(body)) + body[1:]


def test_the_largest_valid_text_request_is_answered(rt, context) -> None:
    """64 x 1,000 emoji, JSON-escaped, base64-encoded as API Gateway delivers a binary body: 200, 64 vectors."""
    body = json.dumps({"texts": [EMOJI * MAX_TEXT_CHARS] * MAX_TEXTS})  # ensure_ascii: \ud83d\ude00 each
    assert len(body) == MAX_TEXTS * (MAX_TEXT_CHARS * 12 + 2) + (MAX_TEXTS - 1) * 2 + len('{"texts": []}')
    for encoded in (True, False):
        status, got = post_event(text_event(body, base64_encoded=encoded), context)
        assert status == 200, got
        assert len(got["results"]) == MAX_TEXTS and all(len(r["embedding"]) == 512 for r in got["results"])
    expected = FakeEngine.vector_for((EMOJI * MAX_TEXT_CHARS).encode())
    np.testing.assert_array_equal(np.asarray(got["results"][63]["embedding"], np.float32), expected)


def test_the_text_body_bound_is_the_largest_valid_body(rt, context, monkeypatch) -> None:
    """At the bound (escaped field name, whitespace to the last byte): answered; one byte more: 413
    text_request_too_large, for a text body and a base64 one; a base64 body longer than the bound can encode
    is refused by its length, never decoded."""
    body = largest_valid_body()
    assert len(body) == api.TEXT_BODY_MAX_BYTES
    for encoded in (False, True):
        status, got = post_event(text_event(body, base64_encoded=encoded), context)
        assert status == 200 and len(got["results"]) == MAX_TEXTS, got
        over = body[:1] + " " + body[1:]
        status, got = post_event(text_event(over, base64_encoded=encoded), context)
        assert error_of((status, got)) == (413, "text_request_too_large"), encoded
    event = text_event("x", base64_encoded=True)
    event["body"] = "A" * (4 * (api.TEXT_BODY_MAX_BYTES // 3 + 1) + 5)
    monkeypatch.setattr(api.base64, "b64decode", lambda *a, **k: pytest.fail("decoded an oversized body"))
    assert error_of(post_event(event, context)) == (413, "text_request_too_large")


def test_the_text_body_bound_fits_lambdas_payload_limit() -> None:
    """The largest valid request, base64 as API Gateway would pass it, fits Lambda's 6 MB invocation payload
    (and API Gateway's 10 MB), with room for the rest of the event."""
    assert 4 * (api.TEXT_BODY_MAX_BYTES // 3 + 1) + 4 < 6 * 1024 * 1024 - 64 * 1024


def post_event(event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(event, context)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


# ------------------------------------------------------------------------------------- strict request fields
@pytest.mark.parametrize("k", [True, "5", 5.0, None, [5], 1e1])
def test_k_must_be_a_json_integer(rt, context, k: Any) -> None:
    rt.index = FakeIndex({"a.jpg": FakeEngine.vector_for(b"a")})
    assert error_of(post("/search", {"text": "a cat", "k": k}, context)) == (400, "invalid_request")


def test_search_fields_are_strict(rt, context) -> None:
    rt.index = FakeIndex()
    for payload in ({"text": 5}, {"text": True}, {"text": "a", "prefix": 3}, {"s3": 1}, {"image": ["x"]}):
        assert error_of(post("/search", payload, context)) == (400, "invalid_request"), payload
    assert post("/search", {"text": "a cat", "k": 5}, context)[0] == 200
