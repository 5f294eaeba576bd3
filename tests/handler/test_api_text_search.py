"""The API's text and search routes: POST /embed/text (per-text results, errors in place) and POST /search
(a text, an image or an s3 reference → the index's nearest images), with the same JSON error contract."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from handler import api
from handler.errors import TransientError
from layer import ModelDirError
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


class FakeIndex:
    """Ranks what it holds by dot product (the vectors are unit length), like the real index's cosine."""

    def __init__(self, vectors: dict[str, np.ndarray] | None = None, fail: bool = False) -> None:
        self.vectors = vectors or {}
        self.fail = fail
        self.queries: list[tuple[np.ndarray, int, str | None]] = []

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None) -> list[Hit]:
        self.queries.append((vector, k, prefix))
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
