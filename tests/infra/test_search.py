"""``clip-lambda search``: the query embedded with the model directory's engine, sent to the stack's index,
answered only from vectors of that same model (an index may still hold another model's)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from infra import search


class FakeEngine:
    model_id = "openai/clip-vit-base-patch32"

    def __init__(self) -> None:
        self.vector = np.full(4, 0.5, dtype=np.float32)

    def embed_text(self, text: str) -> Any:
        return type("T", (), {"vector": self.vector})()


class FakeVectors:
    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []

    def query_vectors(self, **kwargs: Any) -> dict[str, Any]:
        self.queries.append(kwargs)
        md = {"bucket": "photos", "key": "cats/tom.jpg", "width": 640, "height": 480, "model": FakeEngine.model_id}
        return {"vectors": [{"key": "s3://photos/cats/tom.jpg", "distance": 0.25, "metadata": md}]}


class FakeSession:
    def __init__(self, vectors: FakeVectors) -> None:
        self.vectors = vectors

    def client(self, name: str, **kwargs: Any) -> Any:
        if name == "s3vectors":
            return self.vectors
        assert name == "cloudformation"
        arn = "arn:aws-cn:s3vectors:cn-north-1:123456789012:bucket/clip-vectors-x/index/images"
        outputs = [{"OutputKey": "VectorIndexArn", "OutputValue": arn}]
        return type("CFN", (), {"describe_stacks": lambda self, StackName: {"Stacks": [{"Outputs": outputs}]}})()


def test_the_search_asks_only_for_its_own_models_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("layer.embedder.Embedder.from_dir", staticmethod(lambda *a, **k: FakeEngine()))
    vectors, out = FakeVectors(), io.StringIO()
    argv = ["--model", "build/model", "--stack", "clip", "--query", "a cat", "--k", "3"]
    assert search.main(argv, session=FakeSession(vectors), out=out) == 0
    [query] = vectors.queries
    assert (query["vectorBucketName"], query["indexName"], query["topK"]) == ("clip-vectors-x", "images", 3)
    assert query["filter"] == {"model": {"$eq": FakeEngine.model_id}}
    [row] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row == {"rank": 1, "key": "cats/tom.jpg", "bucket": "photos", "score": 0.75, "width": 640, "height": 480}


def test_a_stack_without_an_index_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("layer.embedder.Embedder.from_dir", staticmethod(lambda *a, **k: FakeEngine()))

    class NoIndex(FakeSession):
        def client(self, name: str, **kwargs: Any) -> Any:
            stacks = {"Stacks": [{"Outputs": []}]}
            return type("CFN", (), {"describe_stacks": lambda self, StackName: stacks})()

    with pytest.raises(SystemExit, match="no vector index"):
        search.main(["--model", "m", "--stack", "clip", "--query", "x"], session=NoIndex(FakeVectors()))
