"""The local QueryVectors emulation (infra/local/vector_query.py) against a numpy brute-force ranking: the pure
ranking and filters, then the HTTP front over a moto server (everything else forwarded to moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from infra.local.moto_stack import MotoStack, StackNames
from infra.local.vector_query import QueryError, matches, rank

DIRS = ["cats/", "cats/indoor/", "dogs/", "birds/", "birds/sea/"]


def corpus(n: int, dim: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``n`` random unit vectors (float32) with keys under random directories, as ListVectors returns them."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    listed = []
    for i, vec in enumerate(vecs):
        directory = DIRS[int(rng.integers(len(DIRS)))]
        dirs = [d for d in DIRS if directory.startswith(d)]
        listed.append({"key": f"s3://b/{directory}{i:04d}.jpg", "data": {"float32": vec.tolist()},
                       "metadata": {"dirs": dirs, "width": int(rng.integers(1, 5000)), "model": "m"}})  # fmt: skip
    return vecs, listed


Listed = list[dict[str, Any]]


def brute_force(vecs: np.ndarray, listed: Listed, query: np.ndarray, k: int, directory: str | None) -> list[str]:
    """The reference: cosine distance in float64 over every vector under ``directory``, nearest first."""
    q = query.astype(np.float64) / np.linalg.norm(query)
    dist = 1.0 - vecs.astype(np.float64) @ q / np.linalg.norm(vecs.astype(np.float64), axis=1)
    keep = [i for i, v in enumerate(listed) if directory is None or directory in v["metadata"]["dirs"]]
    order = sorted(keep, key=lambda i: (dist[i], listed[i]["key"]))
    return [listed[i]["key"] for i in order[:k]]


@pytest.mark.parametrize(("k", "directory"), [(1, None), (10, None), (100, None), (7, "cats/"), (25, "birds/sea/")])
def test_rank_is_the_exact_cosine_ranking(k: int, directory: str | None) -> None:
    vecs, listed = corpus(400, 64, seed=k)
    query = np.random.default_rng(1000 + k).standard_normal(64).astype(np.float32)
    request: dict[str, Any] = {"topK": k, "queryVector": {"float32": query.tolist()}, "returnDistance": True,
                               "returnMetadata": True}  # fmt: skip
    if directory:
        request["filter"] = {"dirs": {"$eq": directory}}
    out = rank(request, listed, metric="cosine", dimension=64)
    assert out["distanceMetric"] == "cosine"
    assert [v["key"] for v in out["vectors"]] == brute_force(vecs, listed, query, k, directory)
    by_key = {v["key"]: np.asarray(v["data"]["float32"]) for v in listed}
    for hit in out["vectors"]:
        cos = float(by_key[hit["key"]] @ query) / float(np.linalg.norm(by_key[hit["key"]]) * np.linalg.norm(query))
        assert hit["distance"] == pytest.approx(1 - cos, abs=1e-6)
        assert directory is None or directory in hit["metadata"]["dirs"]


def test_rank_returns_what_was_asked_and_refuses_what_s3_vectors_refuses() -> None:
    _, listed = corpus(20, 8, seed=0)
    base = {"topK": 3, "queryVector": {"float32": [1.0] * 8}}
    bare = rank(base, listed, metric="cosine", dimension=8)["vectors"]
    assert len(bare) == 3 and all(set(v) == {"key"} for v in bare)  # no distance, no metadata unless asked
    euclid = rank({**base, "returnDistance": True}, listed, metric="euclidean", dimension=8)["vectors"]
    q = np.ones(8)
    ref = sorted(np.linalg.norm(np.asarray(v["data"]["float32"]) - q) for v in listed)[:3]
    assert [v["distance"] for v in euclid] == pytest.approx(ref)
    for bad, message in [
        ({**base, "topK": 0}, "topK"),
        ({**base, "topK": 101}, "topK"),
        ({**base, "queryVector": {"float32": [1.0] * 7}}, "dimensions"),
        ({**base, "filter": {"dirs": {"$like": "c"}}}, "unsupported operator"),
        ({**base, "filter": {"$not": {"dirs": "c"}}}, "unsupported operator"),
        ({**base, "filter": {"width": {"$gt": "big"}}}, "number"),
        ({**base, "filter": {}}, "non-empty"),
        ({**base, "filter": {"model": "m", "dirs": {"$bogus": 1}}}, "unsupported operator"),  # checked past a miss
    ]:
        with pytest.raises(QueryError, match=message):
            rank(bad, listed, metric="cosine", dimension=8)
    with pytest.raises(QueryError, match="non-filterable"):
        on_width = {**base, "filter": {"$or": [{"width": 3}]}}
        rank(on_width, listed, metric="cosine", dimension=8, non_filterable=["width"])
    assert rank({**base, "filter": {"model": "m"}}, [], metric="cosine", dimension=8)["vectors"] == []


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"dirs": "a/"}, True),  # a list value: equal to any element
        ({"dirs": {"$eq": "b/"}}, False),
        ({"dirs": {"$ne": "b/"}}, True),
        ({"dirs": {"$in": ["x/", "a/b/"]}}, True),
        ({"dirs": {"$nin": ["a/"]}}, False),
        ({"width": {"$gte": 640, "$lt": 641}}, True),
        ({"width": {"$gt": 640}}, False),
        ({"height": {"$exists": False}}, True),
        ({"width": {"$exists": True}, "model": "m"}, True),
        ({"width": 640, "model": "n"}, False),  # several fields: all must hold
        ({"$or": [{"model": "n"}, {"dirs": "a/b/"}]}, True),
        ({"$and": [{"model": "m"}, {"dirs": {"$eq": "c/"}}]}, False),
        ({"flag": True}, True),
        ({"flag": {"$gt": 0}}, False),  # booleans are not numbers
        ({"missing": {"$ne": "x"}}, True),
    ],
)
def test_filter_operators(flt: dict[str, Any], expected: bool) -> None:
    assert matches(flt, {"dirs": ["a/", "a/b/"], "width": 640, "model": "m", "flag": True}) is expected


# ------------------------------------------------------------------------------------------------ HTTP front
DIM = 768  # the index takes the dimension it is given (a ViT-L/14's here)


@pytest.fixture(scope="module")
def stack() -> Iterator[MotoStack]:
    with MotoStack(names=StackNames(notifications=False, dimension=DIM)).start() as s:
        yield s


def test_the_front_answers_query_vectors_over_what_moto_holds(stack: MotoStack) -> None:

    client, names = stack.client("s3vectors"), stack.names
    where = {"vectorBucketName": names.vector_bucket, "indexName": names.vector_index}
    vecs, listed = corpus(300, DIM, seed=7)
    for start in range(0, len(listed), 100):  # forwarded to moto, as is every call but QueryVectors
        client.put_vectors(**where, vectors=[{k: v[k] for k in ("key", "data", "metadata")}
                                             for v in listed[start : start + 100]])  # fmt: skip
    query = np.random.default_rng(8).standard_normal(DIM).astype(np.float32)
    for k, directory in [(5, None), (30, "cats/"), (100, None), (3, "birds/sea/")]:
        kwargs: dict[str, Any] = {"topK": k, "queryVector": {"float32": query.tolist()}, "returnDistance": True}
        if directory:
            kwargs["filter"] = {"dirs": {"$eq": directory}}
        out = client.query_vectors(**where, **kwargs)
        assert out["distanceMetric"] == "cosine"
        assert [v["key"] for v in out["vectors"]] == brute_force(vecs, listed, query, k, directory)
    with pytest.raises(client.exceptions.ValidationException, match="non-filterable"):
        client.query_vectors(**where, topK=1, queryVector={"float32": query.tolist()}, filter={"width": {"$gt": 1}})
    with pytest.raises(client.exceptions.ValidationException, match="topK"):
        client.query_vectors(**where, topK=101, queryVector={"float32": query.tolist()})
    with pytest.raises(client.exceptions.NotFoundException):
        client.query_vectors(vectorBucketName=names.vector_bucket, indexName="nope", topK=1,
                             queryVector={"float32": query.tolist()})  # fmt: skip
    client.delete_vectors(**where, keys=[v["key"] for v in listed])
    assert client.query_vectors(**where, topK=5, queryVector={"float32": query.tolist()})["vectors"] == []


def test_functions_are_pointed_at_the_front_with_the_templates_index(stack: MotoStack) -> None:
    from handler import vector_index

    env = stack.function_env()
    assert (env["VECTOR_BUCKET"], env["VECTOR_INDEX"]) == (stack.names.vector_bucket, stack.names.vector_index)
    assert env["AWS_ENDPOINT_URL_S3VECTORS"] == stack.vectors_endpoint != stack.endpoint
    index = stack.client("s3vectors").get_index(vectorBucketName=env["VECTOR_BUCKET"], indexName=env["VECTOR_INDEX"])
    got = index["index"]
    assert (got["dimension"], got["distanceMetric"], got["dataType"]) == (DIM, vector_index.DISTANCE, "float32")
    assert env["EMBEDDING_DIM"] == str(DIM)  # what INIT checks the model against
    assert "VECTOR_BUCKET" not in MotoStack(names=StackNames(vector_bucket="")).function_env()
