"""Zero-shot tags through the functions: each embedded image's tags in its DynamoDB item and its index
metadata (filterable), POST /embed returning them when asked, POST /search filtering and browsing by them,
GET /model listing the vocabulary; a model without one answers 501, an unknown label 400."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from handler import api, ingest, item, runtime
from handler.ingest import Outcome
from layer.manifest import LABELS_FILE, LABELS_NAMES_FILE, TagSpec
from layer.tags import Tagger
from tests.handler import test_vector_index as shared
from tests.handler.helpers import FakeEngine, http_event
from tests.handler.test_vector_index import event, indexed, pk, upload

vectors, faults, irt = shared.vectors, shared.faults, shared.irt
LABELS = ["dog", "cat", "beach", "flower", "car", "temple", "mountain", "food"]


@pytest.fixture
def tagged(irt: runtime.Runtime, photo: bytes) -> Iterator[runtime.Runtime]:
    """The fake engine with a vocabulary whose "flower" label is the photo's own vector (so it tags first)."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((len(LABELS), 512)).astype(np.float32)
    v[LABELS.index("flower")] = FakeEngine.vector_for(photo)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    spec = TagSpec(file=LABELS_FILE, names_file=LABELS_NAMES_FILE, prompt="a photo of a {}.", count=8, top_k=3)
    irt.engine.tagger = Tagger(LABELS, v, spec)  # type: ignore[misc]
    yield irt
    irt.engine.tagger = None  # type: ignore[misc]


def call(method: str, path: str, body: Any = None, content_type: str = "application/json",
         query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    raw = json.dumps(body) if isinstance(body, dict) else body  # bytes: a binary body
    ev = http_event(method, path, raw, content_type)
    if query:
        ev["queryStringParameters"] = query
        ev["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    response = api.lambda_handler(ev, shared_context())
    return response["statusCode"], json.loads(response["body"])


def shared_context() -> Any:
    from tests.handler.helpers import Context

    return Context()


def test_an_embedded_image_carries_its_tags_in_the_item_and_the_index(tagged, vectors, photo) -> None:
    meta = upload(tagged, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", **meta), tagged).outcome is Outcome.EMBEDDED
    stored = tagged.sink.get(pk("k.jpg"))
    assert stored is not None
    labels, scores = stored.attributes[item.TAGS], stored.attributes[item.TAG_SCORES]
    assert labels[0] == "flower" and scores[0] == pytest.approx(1.0, abs=1e-4) and len(labels) == 3
    assert scores == sorted(scores, reverse=True)
    assert item.write_units(dict(stored.attributes)) == 3  # the unit tests' items keep the vector (full)
    md = indexed(vectors, "k.jpg")["metadata"]
    assert md["tags"] == labels


def test_embed_returns_tags_when_asked(tagged, photo) -> None:
    status, body = call("POST", "/embed", photo, "image/jpeg", {"tags": "true"})
    assert status == 200 and body["tags"][0]["label"] == "flower" and len(body["tags"]) == 3
    status, body = call("POST", "/embed", photo, "image/jpeg")
    assert status == 200 and "tags" not in body
    data = base64.b64encode(photo).decode()
    status, body = call("POST", "/embed", {"images": [{"data": data}], "tags": True})
    assert status == 200 and body["results"][0]["tags"][0]["label"] == "flower"
    status, body = call("POST", "/embed", photo, "image/jpeg", {"tags": "maybe"})
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def test_search_filters_and_browses_by_tag(tagged, vectors, photo, photo2) -> None:
    for key, data in (("a/flower.jpg", photo), ("a/other.jpg", photo2)):
        meta = upload(tagged, key, data)
        assert ingest.handle(event(key, **meta), tagged).outcome is Outcome.EMBEDDED
    status, body = call("POST", "/search", {"tags": ["flower"], "k": 5})  # browse: no query
    assert status == 200 and body["query"] == "tags" and [r["key"] for r in body["results"]] == ["a/flower.jpg"]
    assert body["results"][0]["tags"][0] == "flower" and body["results"][0]["score"] == pytest.approx(1, abs=1e-4)
    other = tagged.sink.get(pk("a/other.jpg")).attributes[item.TAGS][0]
    status, body = call("POST", "/search", {"text": "anything", "k": 5, "tags": [other]})
    assert status == 200 and "a/other.jpg" in [r["key"] for r in body["results"]]
    assert all(other in r["tags"] for r in body["results"])
    status, body = call("POST", "/search", {"tags": ["unicorn"]})
    assert (status, body["error"]["code"]) == (400, "unknown_tag") and "GET /model" in body["error"]["message"]


def test_get_model_lists_the_vocabulary(tagged) -> None:
    status, body = call("GET", "/model")
    assert status == 200 and body["tags"] == {"prompt": "a photo of a {}.", "top_k": 3, "labels": LABELS}


def test_a_model_without_a_vocabulary_answers_501_for_tags(irt, photo) -> None:
    assert irt.engine.tagger is None
    status, body = call("POST", "/embed", photo, "image/jpeg", {"tags": "true"})
    assert (status, body["error"]["code"]) == (501, "tags_unavailable")
    status, body = call("POST", "/search", {"tags": ["dog"]})
    assert (status, body["error"]["code"]) == (501, "tags_unavailable")
    assert call("GET", "/model")[1]["tags"] is None
