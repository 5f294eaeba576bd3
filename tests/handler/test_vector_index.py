"""The S3 Vectors index behind the table: what a vector holds, how a query reads it, and how ingest keeps it in
line with DynamoDB when a write fails between the two (injected), is retried, or races another event.

moto (in process) holds the vectors; QueryVectors, which moto lacks, is answered by the local emulation's
ranking (``infra.local.vector_query.rank``) over what moto holds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from handler import api, indexing, ingest, runtime, s3, vector_index
from handler.errors import IndexMisconfigured, TransientError
from handler.events import Action, ObjectEvent
from handler.ingest import Outcome, Result
from handler.item import ObjectMeta
from handler.settings import Settings
from handler.vector_index import Entry, Match, S3VectorsIndex
from infra.local.vector_query import QueryError, rank
from layer import Embedding
from tests.handler.helpers import BUCKET, MODEL_ID, FakeEngine, http_event, s3_notification, sqs_event

VECTOR_BUCKET, INDEX = "clip-vectors-test", "images"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Http:
    status_code: int


class Faults:
    """Fails the next calls of an S3 Vectors operation with an error (a 503 unless told: a before-call hook,
    moto never sees them), and answers QueryVectors with the local emulation's exact ranking over what moto
    holds in the index asked for (a missing index or a query of another dimension answered as S3 Vectors
    would: NotFoundException, ValidationException)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pending: dict[str, list[tuple[str, int]]] = {}
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.s3vectors", self._hook)

    def fail(
        self, operation: str, times: int = 1, code: str = "ServiceUnavailableException", status: int = 503
    ) -> None:
        self.pending.setdefault(operation, []).extend([(code, status)] * times)

    def _hook(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Http, dict[str, Any]] | None:
        self.calls[model.name] += 1
        if self.pending.get(model.name):
            code, status = self.pending[model.name].pop(0)
            error = {"Code": code, "Message": f"injected {model.name} failure"}
            return Http(status), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
        if model.name == "QueryVectors":
            request = json.loads(params["body"])
            where = {"vectorBucketName": request["vectorBucketName"], "indexName": request["indexName"]}
            try:
                index = self.client.get_index(**where)["index"]
            except ClientError as exc:
                return Http(exc.response["ResponseMetadata"]["HTTPStatusCode"]), exc.response
            listed = self.client.list_vectors(**where, returnData=True, returnMetadata=True)["vectors"]
            try:
                return Http(200), rank(request, listed, metric="cosine", dimension=int(index["dimension"]),
                                       non_filterable=vector_index.NON_FILTERABLE)  # fmt: skip
            except QueryError as exc:
                error = {"Code": "ValidationException", "Message": str(exc)}
                return Http(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None


@pytest.fixture
def vectors(aws: dict[str, Any]) -> Any:
    """moto's S3 Vectors with the template's bucket and index."""
    import boto3

    client = boto3.client("s3vectors", region_name="us-east-1")
    client.create_vector_bucket(vectorBucketName=VECTOR_BUCKET, encryptionConfiguration={"sseType": "AES256"})
    config = {"nonFilterableMetadataKeys": list(vector_index.NON_FILTERABLE)}
    client.create_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX, dataType="float32", dimension=512,
                        distanceMetric="cosine", metadataConfiguration=config)  # fmt: skip
    return client


@pytest.fixture
def faults(vectors: Any) -> Faults:
    return Faults(vectors)


@pytest.fixture
def irt(rt: runtime.Runtime, vectors: Any, faults: Faults) -> Iterator[runtime.Runtime]:
    """The handlers' runtime with the vector index configured."""
    rt.index = S3VectorsIndex(vectors, VECTOR_BUCKET, INDEX, model=MODEL_ID)
    yield rt
    rt.index = None


def event(key: str, *, seq: str = "0A", action: Action = Action.CREATED, **kw: Any) -> ObjectEvent:
    name = "ObjectCreated:Put" if action is Action.CREATED else "ObjectRemoved:Delete"
    return ObjectEvent(action=action, bucket=BUCKET, key=key, event_time=T0, event_name=name, sequencer=seq, **kw)


def upload(rt: runtime.Runtime, key: str, data: bytes) -> dict[str, Any]:
    resp = rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return {"etag": resp["ETag"].strip('"'), "size": len(data)}


def pk(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def stored_vector(rt: runtime.Runtime, key: str) -> np.ndarray | None:
    got = rt.sink.get(pk(key))
    return None if got is None else got.vector


def indexed(vectors: Any, key: str) -> dict[str, Any] | None:
    got = vectors.get_vectors(vectorBucketName=VECTOR_BUCKET, indexName=INDEX, keys=[pk(key)], returnData=True,
                              returnMetadata=True)["vectors"]  # fmt: skip
    return got[0] if got else None


def indexed_vector(vectors: Any, key: str) -> np.ndarray | None:
    got = indexed(vectors, key)
    return None if got is None else np.asarray(got["data"]["float32"], dtype=np.float32)


def assert_follows(rt: runtime.Runtime, vectors: Any, key: str) -> None:
    """The index holds exactly the item's vector (bit for bit), or nothing where the item holds none."""
    item_vec, index_vec = stored_vector(rt, key), indexed_vector(vectors, key)
    if item_vec is None:
        assert index_vec is None, f"{key}: a vector without an embedding item"
    else:
        assert index_vec is not None, f"{key}: the item's vector is missing from the index"
        np.testing.assert_array_equal(index_vec, item_vec)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


# ------------------------------------------------------------------------------------------ what a vector holds
def test_directories_are_the_key_prefixes_within_the_budget() -> None:
    assert vector_index.directories("a/b/c.jpg") == ["a/", "a/b/"]
    assert vector_index.directories("c.jpg") == [] and vector_index.directories("a//b") == ["a/", "a//"]
    deep = "/".join(["d" * 99] * 20) + "/x.jpg"  # 20 directories of 100 bytes each: 21,000 bytes of prefixes
    dirs = vector_index.directories(deep)
    used, following = sum(len(d) for d in dirs), deep[: 100 * (len(dirs) + 1)]  # the first directory left out
    assert used <= vector_index.DIRS_BUDGET < used + len(following) and following.endswith("/")
    assert dirs == [deep[: 100 * i] for i in range(1, len(dirs) + 1)]


def test_a_prefix_is_filtered_by_its_deepest_stored_directory() -> None:
    assert vector_index.prefix_filter(None) == ("", True) and vector_index.prefix_filter("") == ("", True)
    assert vector_index.prefix_filter("a/b/") == ("a/b/", True)
    assert vector_index.prefix_filter("a/b/ca") == ("a/b/", False)
    assert vector_index.prefix_filter("ca") == ("", False)
    deep = "/".join(["d" * 99] * 20) + "/"
    directory, exact = vector_index.prefix_filter(deep)
    assert not exact and deep.startswith(directory) and directory == vector_index.directories(deep)[-1]


def test_the_vector_key_is_the_pk_and_a_digest_past_the_key_limit() -> None:
    assert vector_index.vector_key("s3://b/k.jpg") == "s3://b/k.jpg"
    long = "s3://bucket/" + "é" * 510  # 1,032 bytes of UTF-8
    key = vector_index.vector_key(long)
    assert key.startswith("sha256:") and len(key) == 71 and key == vector_index.vector_key(long)


def test_a_vector_holds_the_items_data_and_metadata(irt, vectors, photo) -> None:
    meta = upload(irt, "cats/indoor/tom.jpg", photo)
    assert ingest.handle(event("cats/indoor/tom.jpg", **meta), irt).outcome is Outcome.EMBEDDED
    got = indexed(vectors, "cats/indoor/tom.jpg")
    assert got is not None and got["key"] == pk("cats/indoor/tom.jpg")
    assert got["metadata"] == {
        "bucket": BUCKET,
        "key": "cats/indoor/tom.jpg",
        "dirs": ["cats/", "cats/indoor/"],
        "model": MODEL_ID,
        "etag": meta["etag"],
        "width": 640,
        "height": 427,
    }
    np.testing.assert_array_equal(np.asarray(got["data"]["float32"], np.float32), FakeEngine.vector_for(photo))
    assert_follows(irt, vectors, "cats/indoor/tom.jpg")
    assert irt.index.held(pk("cats/indoor/tom.jpg")) == Entry(meta["etag"], MODEL_ID)
    assert irt.index.held(pk("nothing.jpg")) is None


def test_a_key_at_the_root_has_no_directories_and_a_long_key_a_digest(irt, vectors, photo) -> None:
    long_key = "a/" + "x" * 1010 + ".jpg"  # pk over 1,024 characters
    for key in ("root.jpg", long_key):
        assert ingest.handle(event(key, **upload(irt, key, photo)), irt).outcome is Outcome.EMBEDDED
    assert "dirs" not in indexed(vectors, "root.jpg")["metadata"]
    digest = vector_index.vector_key(pk(long_key))
    (got,) = vectors.get_vectors(vectorBucketName=VECTOR_BUCKET, indexName=INDEX, keys=[digest],
                                 returnMetadata=True)["vectors"]  # fmt: skip
    assert got["metadata"]["key"] == long_key
    assert {m.key for m in irt.index.query(FakeEngine.vector_for(photo), 5)} == {"root.jpg", long_key}
    assert ingest.handle(event(long_key, seq="0B", action=Action.REMOVED), irt).outcome is Outcome.DELETED
    assert vectors.get_vectors(vectorBucketName=VECTOR_BUCKET, indexName=INDEX, keys=[digest])["vectors"] == []


# ------------------------------------------------------------------------------------------------ query
def put_vector(index: S3VectorsIndex, key: str, vector: np.ndarray, model: str = MODEL_ID) -> None:
    index.put(ObjectMeta(bucket=BUCKET, key=key, order_key="0", etag=f"e-{key}"),
              Embedding(vector=vector, norm=1.0, width=4, height=3, model=model))  # fmt: skip


def test_query_ranks_by_cosine_similarity_with_a_prefix(irt, faults) -> None:
    keys = ["cats/a.jpg", "cats/b.jpg", "cats/kittens/c.jpg", "dogs/d.jpg", "cat.jpg", "cats.jpg"]
    vecs = {key: unit(i) for i, key in enumerate(keys)}
    for key, vec in vecs.items():
        put_vector(irt.index, key, vec)
    put_vector(irt.index, "cats/old-model.jpg", unit(0), model="another/model")  # never answered
    query = unit(0) + 0.5 * unit(2)

    def expected(prefix: str, k: int) -> list[tuple[str, float]]:
        norm = float(np.linalg.norm(query))
        sims = {key: float(v @ query) / norm for key, v in vecs.items() if key.startswith(prefix)}
        return sorted(sims.items(), key=lambda kv: -kv[1])[:k]

    for prefix, k in [("", 3), ("cats/", 10), ("cats/kittens/", 2), ("cat", 10), ("cats/k", 1), ("nope/", 3)]:
        got = irt.index.query(query, k, prefix or None)
        assert [m.key for m in got] == [key for key, _ in expected(prefix, k)], prefix
        assert [m.score for m in got] == pytest.approx([s for _, s in expected(prefix, k)], abs=1e-5)
        assert all(isinstance(m, Match) and (m.bucket, m.width, m.height) == (BUCKET, 4, 3) for m in got)
    assert irt.index.query(unit(3), 1)[0] == Match("dogs/d.jpg", BUCKET, pytest.approx(1.0), 4, 3, "e-dogs/d.jpg")


def test_query_filters_a_directory_in_the_index_and_a_partial_name_after(irt, vectors, faults, monkeypatch) -> None:
    sent: list[dict[str, Any]] = []
    query_vectors = vectors.query_vectors
    monkeypatch.setattr(vectors, "query_vectors", lambda **kw: sent.append(kw) or query_vectors(**kw))
    put_vector(irt.index, "cats/a.jpg", unit(1))
    irt.index.query(unit(1), 5, "cats/")
    irt.index.query(unit(1), 5, "cats/a")
    irt.index.query(unit(1), 5)
    model = {"model": {"$eq": MODEL_ID}}
    assert [(kw["topK"], kw.get("filter")) for kw in sent] == [
        (5, {"$and": [model, {"dirs": {"$eq": "cats/"}}]}),
        (vector_index.MAX_TOP_K, {"$and": [model, {"dirs": {"$eq": "cats/"}}]}),
        (5, model),
    ]
    assert all(kw["returnMetadata"] and kw["returnDistance"] for kw in sent)


def test_query_refuses_k_out_of_range_and_a_failing_index_is_transient(irt, faults) -> None:
    for k in (0, 101):
        with pytest.raises(ValueError, match="k must be"):
            irt.index.query(unit(1), k)
    faults.fail("QueryVectors")
    with pytest.raises(TransientError, match="QueryVectors"):
        irt.index.query(unit(1), 3)


# --------------------------------------------------------------------------- ingest: the index follows the table
def test_embed_delete_and_failure_records_keep_the_index_in_line(irt, vectors, photo, photo2) -> None:
    meta = upload(irt, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", seq="0B", **meta), irt).outcome is Outcome.EMBEDDED
    assert_follows(irt, vectors, "k.jpg")
    assert ingest.handle(event("k.jpg", seq="0B", **meta), irt).outcome is Outcome.DUPLICATE
    newer = upload(irt, "k.jpg", photo2)  # overwritten: the vector is replaced
    assert ingest.handle(event("k.jpg", seq="0C", **newer), irt).outcome is Outcome.EMBEDDED
    np.testing.assert_array_equal(indexed_vector(vectors, "k.jpg"), FakeEngine.vector_for(photo2))
    bad = upload(irt, "k.jpg", b"not an image")  # overwritten by a non-image: the failure record has no vector
    got = ingest.handle(event("k.jpg", seq="0D", **bad), irt)
    assert (got.outcome, got.code) == (Outcome.FAILED, "not_an_image")
    assert indexed(vectors, "k.jpg") is None
    again = upload(irt, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", seq="0E", **again), irt).outcome is Outcome.EMBEDDED
    irt.s3.delete_object(Bucket=BUCKET, Key="k.jpg")
    assert ingest.handle(event("k.jpg", seq="0F", action=Action.REMOVED), irt).outcome is Outcome.DELETED
    assert irt.sink.get(pk("k.jpg")) is None and indexed(vectors, "k.jpg") is None
    assert ingest.handle(event("k.jpg", seq="0E", **again), irt).outcome is Outcome.GONE  # late: nothing back
    assert indexed(vectors, "k.jpg") is None


def test_an_object_deleted_while_it_was_embedded_leaves_no_vector(irt, vectors, photo, monkeypatch) -> None:
    meta = upload(irt, "brief.jpg", photo)
    embed_one = irt.engine.embed_one

    def delete_then_embed(data: bytes) -> Any:
        irt.s3.delete_object(Bucket=BUCKET, Key="brief.jpg")  # its delete event ran before our write
        return embed_one(data)

    monkeypatch.setattr(irt.engine, "embed_one", delete_then_embed)
    assert ingest.handle(event("brief.jpg", **meta), irt) == Result(Outcome.GONE, pk("brief.jpg"))
    assert irt.sink.get(pk("brief.jpg")) is None and indexed(vectors, "brief.jpg") is None


def test_a_put_that_fails_after_the_item_is_retried_into_the_index(irt, vectors, faults, photo) -> None:
    """PutItem succeeded, PutVectors failed: the record is retried, finds a duplicate, and puts the vector
    from the item, without embedding again."""
    meta = upload(irt, "k.jpg", photo)
    faults.fail("PutVectors")
    with pytest.raises(TransientError, match="PutVectors"):
        ingest.handle(event("k.jpg", **meta), irt)
    assert stored_vector(irt, "k.jpg") is not None and indexed(vectors, "k.jpg") is None  # between the two
    calls = irt.engine.calls
    assert ingest.handle(event("k.jpg", **meta), irt).outcome is Outcome.DUPLICATE
    assert irt.engine.calls == calls  # not embedded again
    assert_follows(irt, vectors, "k.jpg")
    puts = faults.calls["PutVectors"]
    assert ingest.handle(event("k.jpg", **meta), irt).outcome is Outcome.DUPLICATE
    assert faults.calls["PutVectors"] == puts  # a duplicate the index holds is only read, never rewritten


def test_a_delete_that_fails_after_the_item_is_retried(irt, vectors, faults, photo) -> None:
    meta = upload(irt, "k.jpg", photo)
    ingest.handle(event("k.jpg", **meta), irt)
    faults.fail("DeleteVectors")
    with pytest.raises(TransientError, match="DeleteVectors"):
        ingest.handle(event("k.jpg", seq="0B", action=Action.REMOVED), irt)
    assert irt.sink.get(pk("k.jpg")) is None and indexed(vectors, "k.jpg") is not None  # between the two
    assert ingest.handle(event("k.jpg", seq="0B", action=Action.REMOVED), irt).outcome is Outcome.DELETED
    assert indexed(vectors, "k.jpg") is None


def test_a_failure_record_whose_vector_delete_failed_is_repaired_on_retry(irt, vectors, faults, photo) -> None:
    ingest.handle(event("k.jpg", **upload(irt, "k.jpg", photo)), irt)
    bad = upload(irt, "k.jpg", b"not an image")
    faults.fail("DeleteVectors")
    with pytest.raises(TransientError):
        ingest.handle(event("k.jpg", seq="0B", **bad), irt)
    assert indexed(vectors, "k.jpg") is not None  # the old bytes' vector, under a failure record
    assert ingest.handle(event("k.jpg", seq="0B", **bad), irt).outcome is Outcome.DUPLICATE
    assert_follows(irt, vectors, "k.jpg")
    assert indexed(vectors, "k.jpg") is None


def test_a_late_repair_never_resurrects_a_deleted_objects_vector(irt, vectors, faults, photo) -> None:
    """The retry read the item (a duplicate the index lacks) ahead; the object's delete ran before the
    retry wrote anything: the repair puts the vector back, reads the item again, and takes it out."""
    meta = upload(irt, "k.jpg", photo)
    faults.fail("PutVectors")
    with pytest.raises(TransientError):
        ingest.handle(event("k.jpg", **meta), irt)
    retry = event("k.jpg", **meta)
    fetched = ingest.fetch(retry, irt)  # read ahead (handler.prefetch) while ...
    assert isinstance(fetched, ingest.Unindexed)
    irt.s3.delete_object(Bucket=BUCKET, Key="k.jpg")  # ... the object is deleted and its event handled
    assert ingest.handle(event("k.jpg", seq="0B", action=Action.REMOVED), irt).outcome is Outcome.DELETED
    batch = ingest.Ingest(irt)
    assert batch.finish(retry, "retry", fetched).outcome is Outcome.DUPLICATE
    assert not batch.flush().failed
    assert faults.calls["PutVectors"] == 2  # the failed one, the repair's (its read back then took it out)
    assert irt.sink.get(pk("k.jpg")) is None and indexed(vectors, "k.jpg") is None


def test_a_concurrent_newer_event_wins_the_index_too(irt, vectors, photo, photo2, monkeypatch) -> None:
    """Our vector lands after a newer event's item and vector (two invocations racing on one key): the read
    back sees the newer item and puts its vector again. No stale vector is left."""
    old, new = upload(irt, "k.jpg", photo), None
    put_many = irt.index.put_many
    raced = []

    def newer_event_first(batch: list[tuple[ObjectMeta, Embedding]]) -> None:
        nonlocal new
        if not raced:
            raced.append(batch[0][0].etag)
            new = upload(irt, "k.jpg", photo2)
            assert ingest.handle(event("k.jpg", seq="0B", **new), irt).outcome is Outcome.EMBEDDED
        put_many(batch)

    monkeypatch.setattr(irt.index, "put_many", newer_event_first)
    got = ingest.handle(event("k.jpg", seq="0A", **old), irt)
    assert got.outcome is Outcome.EMBEDDED and raced == [old["etag"]]  # our write was first, our vector last
    np.testing.assert_array_equal(stored_vector(irt, "k.jpg"), FakeEngine.vector_for(photo2))
    assert_follows(irt, vectors, "k.jpg")


def test_an_item_that_keeps_changing_is_retried(irt, vectors, photo, monkeypatch) -> None:
    meta = upload(irt, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", **meta), irt).outcome is Outcome.EMBEDDED
    flips = iter(range(100))
    get_many = irt.sink.get_many

    def changing(keys: list[str]) -> Any:  # every read back finds the item changed again (there, gone, ...)
        stored = get_many(keys)
        return stored if next(flips) % 2 == 0 else dict.fromkeys(keys)

    monkeypatch.setattr(irt.sink, "get_many", changing)
    writes = indexing.IndexWrites(irt.sink, irt.index)
    writes.add(indexing.Delete(pk("k.jpg")), "msg")
    failed = writes.flush()
    assert list(failed) == ["msg"] and "kept changing" in str(failed["msg"])
    assert next(flips) == indexing.MAX_ROUNDS  # one read back a round
    monkeypatch.undo()
    assert ingest.handle(event("k.jpg", **meta), irt).outcome is Outcome.DUPLICATE  # the retry settles it
    assert_follows(irt, vectors, "k.jpg")


def test_the_sqs_record_fails_alone_and_its_retry_fills_the_index(
    irt, vectors, faults, photo, photo2, context, monkeypatch
) -> None:
    """A PutVectors per record (batches of one): the failed request fails its record alone."""
    monkeypatch.setattr(indexing, "MAX_WRITE_BATCH", 1)
    a, b = upload(irt, "a.jpg", photo), upload(irt, "b.jpg", photo2)
    bodies = [s3_notification(BUCKET, key, etag=m["etag"], size=m["size"], sequencer="0A")
              for key, m in (("a.jpg", a), ("b.jpg", b))]  # fmt: skip
    faults.fail("PutVectors")  # the first record's index write
    first = s3.lambda_handler(sqs_event(*bodies), context)
    assert first == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert indexed(vectors, "a.jpg") is None and indexed(vectors, "b.jpg") is not None
    assert s3.lambda_handler(sqs_event(bodies[0]), context) == {"batchItemFailures": []}
    for key in ("a.jpg", "b.jpg"):
        assert_follows(irt, vectors, key)


def test_a_backfill_indexes_items_written_before_the_index(rt, vectors, faults, photo, photo2, context) -> None:
    """Items from before the index (or a table restored): the backfill finds duplicates and puts their
    vectors from the items, embedding nothing."""
    metas = {key: upload(rt, key, data) for key, data in (("old/a.jpg", photo), ("old/b.jpg", photo2))}
    for key, meta in metas.items():
        assert ingest.handle(event(key, **meta), rt).outcome is Outcome.EMBEDDED  # no index yet
    rt.index = S3VectorsIndex(vectors, VECTOR_BUCKET, INDEX, model=MODEL_ID)
    calls = rt.engine.calls
    items = [{"Etag": f'"{m["etag"]}"', "Key": key, "LastModified": 1767225600, "Size": m["size"]}
             for key, m in metas.items()]  # fmt: skip
    batch = {"Items": items, "BatchInput": {"bucket": BUCKET, "model_id": None, "keys_url_encoded": False}}
    out = s3.lambda_handler(batch, context)
    assert out["counts"] == {"duplicate": 2} and rt.engine.calls == calls
    for key in metas:
        assert_follows(rt, vectors, key)
    rt.index = None


# ------------------------------------------------------------------------------------------------ wiring
def test_the_index_is_configured_by_two_variables(monkeypatch) -> None:
    s = Settings.from_env({"VECTOR_BUCKET": " vb ", "VECTOR_INDEX": "images"})
    assert (s.vector_bucket, s.vector_index) == ("vb", "images")
    assert (Settings.from_env({}).vector_bucket, Settings.from_env({}).vector_index) == ("", "")

    class Session:
        def create_client(self, service: str, config: Any) -> tuple[str, Any]:
            return service, config

    index = vector_index.connect(s, Session(), runtime.BOTO_CONFIG, model="m")
    assert index is not None and (index.client[0], index.bucket, index.index, index.model) == (
        "s3vectors",
        "vb",
        "images",
        "m",
    )
    config = index.client[1]  # the functions' timeouts, with adaptive retries of throttling
    assert config.retries == {"mode": "adaptive", "max_attempts": 8} and config.read_timeout == 15
    assert vector_index.connect(Settings(vector_bucket="vb"), Session(), None, model="m") is None
    assert vector_index.connect(Settings(vector_index="images"), Session(), None, model="m") is None


def test_without_an_index_ingest_makes_no_index_call(rt, faults, photo) -> None:
    assert rt.index is None
    meta = upload(rt, "k.jpg", photo)
    assert ingest.handle(event("k.jpg", **meta), rt).outcome is Outcome.EMBEDDED
    assert ingest.handle(event("k.jpg", **meta), rt).outcome is Outcome.DUPLICATE
    assert ingest.handle(event("k.jpg", seq="0B", action=Action.REMOVED), rt).outcome is Outcome.DELETED
    assert sum(faults.calls.values()) == 0


# ------------------------------------------------------------------------------- permanent vs transient errors
def wrong_dimension_index(vectors: Any, name: str = "images-768") -> str:
    """An index of another dimension than the model's (768 vs the fake engine's 512), in the same bucket."""
    config = {"nonFilterableMetadataKeys": list(vector_index.NON_FILTERABLE)}
    vectors.create_index(vectorBucketName=VECTOR_BUCKET, indexName=name, dataType="float32", dimension=768,
                         distanceMetric="cosine", metadataConfiguration=config)  # fmt: skip
    return name


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("TooManyRequestsException", 429),
        ("ThrottlingException", 400),  # throttling, whatever the status
        ("SomethingNew", 429),  # any 429
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("InternalServerError", 500),
        ("SomethingElse", 502),  # any 5xx
        ("RequestTimeoutException", 408),
    ],
)
def test_throttling_and_5xx_are_transient(irt, faults, code: str, status: int) -> None:
    for operation in ("PutVectors", "QueryVectors", "GetVectors", "DeleteVectors"):
        faults.fail(operation, code=code, status=status)
    calls = [
        lambda: put_vector(irt.index, "k.jpg", unit(1)),
        lambda: irt.index.query(unit(1), 3),
        lambda: irt.index.held(pk("k.jpg")),
        lambda: irt.index.delete(pk("k.jpg")),
    ]
    for call in calls:
        with pytest.raises(TransientError) as info:
            call()
        assert not isinstance(info.value, IndexMisconfigured), info.value


@pytest.mark.parametrize(
    ("code", "status", "remedy"),
    [
        ("ValidationException", 400, "refused the request"),
        ("NotFoundException", 404, "does not exist: deploy the stack's index"),
        ("AccessDeniedException", 403, "may not call s3vectors:QueryVectors"),
        ("ConflictException", 409, "fix the deployment"),
        ("KmsDisabledException", 400, "KMS key"),
        ("ServiceQuotaExceededException", 402, "quota"),
    ],
)
def test_other_refusals_are_permanent_and_say_what_to_fix(irt, faults, code: str, status: int, remedy: str) -> None:
    faults.fail("QueryVectors", code=code, status=status)
    with pytest.raises(IndexMisconfigured) as info:
        irt.index.query(unit(1), 3)
    exc = info.value
    assert (exc.operation, exc.aws_code, exc.code) == ("QueryVectors", code, "index_misconfigured")
    assert remedy in exc.remedy and repr(INDEX) in exc.remedy, exc.remedy  # names the index it means
    assert code in str(exc) and "QueryVectors" in str(exc) and "retry" not in exc.remedy


def test_connection_errors_and_timeouts_are_transient_and_an_unsendable_request_permanent(irt, monkeypatch) -> None:
    errors: list[Exception] = [
        EndpointConnectionError(endpoint_url="https://s3vectors.us-east-1.api.aws"),
        ReadTimeoutError(endpoint_url="https://s3vectors.us-east-1.api.aws"),
    ]
    for error in errors:
        monkeypatch.setattr(irt.index.client, "query_vectors", lambda error=error, **kw: (_ for _ in ()).throw(error))
        with pytest.raises(TransientError) as info:
            irt.index.query(unit(1), 3)
        assert not isinstance(info.value, IndexMisconfigured)
    invalid = ParamValidationError(report="Invalid type for parameter topK")
    monkeypatch.setattr(irt.index.client, "query_vectors", lambda **kw: (_ for _ in ()).throw(invalid))
    with pytest.raises(IndexMisconfigured, match="ParamValidationError"):
        irt.index.query(unit(1), 3)


def test_an_index_of_another_dimension_is_named_with_both_dimensions(irt, vectors, faults) -> None:
    irt.index = S3VectorsIndex(vectors, VECTOR_BUCKET, wrong_dimension_index(vectors), model=MODEL_ID)
    for call in (lambda: put_vector(irt.index, "k.jpg", unit(1)), lambda: irt.index.query(unit(1), 3)):
        with pytest.raises(IndexMisconfigured) as info:
            call()
        assert info.value.aws_code == "ValidationException"
        assert "the index holds 768-d vectors, the model makes 512-d" in info.value.remedy
        assert "EmbeddingDimension=512" in info.value.remedy


def test_a_deleted_index_or_vector_bucket_is_permanent(irt, vectors, faults) -> None:
    vectors.delete_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX)
    for call in (lambda: put_vector(irt.index, "k.jpg", unit(1)), lambda: irt.index.held(pk("k.jpg"))):
        with pytest.raises(IndexMisconfigured, match="does not exist") as info:
            call()
        assert info.value.aws_code == "NotFoundException" and "VectorIndex=none" in info.value.remedy
    irt.index = S3VectorsIndex(vectors, "no-such-vector-bucket", INDEX, model=MODEL_ID)
    with pytest.raises(IndexMisconfigured, match="no-such-vector-bucket"):
        irt.index.query(unit(1), 3)


@pytest.fixture
def unflushed() -> Iterator[Any]:
    """The metrics added outside a handler (which flushes them), from this test alone."""
    from handler.observability import metrics

    metrics.clear_metrics()
    yield lambda: dict(metrics.metric_set)
    metrics.clear_metrics()


def emf_metrics(out: str) -> dict[str, list[float]]:
    emf = [json.loads(x) for x in out.splitlines() if x.startswith('{"_aws"')]
    return {m["Name"]: x[m["Name"]] for x in emf for d in x["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def test_the_s3_function_keeps_a_record_the_index_refuses_for_good(irt, vectors, photo, context, capsys, logs) -> None:
    """A deleted index: the record fails (SQS retries it, then the DLQ keeps it), logged as permanent with
    the fix and counted as IndexMisconfigured, not as a transient failure; after the fix, the redrive indexes
    it from the item, embedding nothing."""
    meta = upload(irt, "k.jpg", photo)
    body = s3_notification(BUCKET, "k.jpg", etag=meta["etag"], size=meta["size"], sequencer="0A")
    vectors.delete_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX)
    capsys.readouterr()
    assert s3.lambda_handler(sqs_event(body), context) == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    counted = emf_metrics(capsys.readouterr().out)
    assert counted.get("IndexMisconfigured") == [1.0] and "TransientFailures" not in counted
    [line] = [x for x in logs() if x.get("aws_code")]
    assert line["level"] == "ERROR" and line["message"].startswith("permanent vector index error")
    assert line["operation"] == "PutVectors" and line["aws_code"] == "NotFoundException"
    assert "deploy the stack's index" in line["remedy"] and line["message_id"] == "msg-0"
    assert stored_vector(irt, "k.jpg") is not None  # the table holds the embedding: nothing lost
    wrong_dimension_index(vectors, INDEX)  # "fixed" with an index of another dimension: still permanent
    assert s3.lambda_handler(sqs_event(body), context)["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert "holds 768-d vectors" in [x for x in logs() if x.get("aws_code")][-1]["remedy"]
    vectors.delete_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX)
    config = {"nonFilterableMetadataKeys": list(vector_index.NON_FILTERABLE)}
    vectors.create_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX, dataType="float32", dimension=512,
                         distanceMetric="cosine", metadataConfiguration=config)  # fmt: skip
    calls = irt.engine.calls
    assert s3.lambda_handler(sqs_event(body), context) == {"batchItemFailures": []}  # the redrive
    assert irt.engine.calls == calls
    assert_follows(irt, vectors, "k.jpg")


def test_a_direct_event_the_index_refuses_for_good_is_retried_and_counted(irt, vectors, photo, context, capsys) -> None:
    meta = upload(irt, "k.jpg", photo)
    vectors.delete_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX)
    capsys.readouterr()
    ev = s3_notification(BUCKET, "k.jpg", etag=meta["etag"], size=meta["size"], sequencer="0A")
    with pytest.raises(TransientError, match=r"1 record\(s\) to retry: s3://photos/k\.jpg: index_misconfigured"):
        s3.lambda_handler(ev, context)
    counted = emf_metrics(capsys.readouterr().out)
    assert counted.get("IndexMisconfigured") == [1.0] and "TransientFailures" not in counted


def search(payload: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(http_event("POST", "/search", json.dumps(payload), "application/json"), context)
    return response["statusCode"], json.loads(response["body"])


def test_search_answers_a_misconfigured_index_with_502_and_the_fix(irt, vectors, faults, context, capsys) -> None:
    irt.index = S3VectorsIndex(vectors, VECTOR_BUCKET, wrong_dimension_index(vectors), model=MODEL_ID)
    status, body = search({"text": "a cat"}, context)
    assert (status, body["error"]["code"]) == (502, "index_misconfigured")
    message = body["error"]["message"]
    assert "QueryVectors" in message and "ValidationException" in message and "retry" not in message
    assert "the index holds 768-d vectors, the model makes 512-d" in message
    assert emf_metrics(capsys.readouterr().out).get("IndexMisconfigured") == [1.0]
    irt.index = S3VectorsIndex(vectors, VECTOR_BUCKET, INDEX, model=MODEL_ID)
    vectors.delete_index(vectorBucketName=VECTOR_BUCKET, indexName=INDEX)
    status, body = search({"text": "a cat"}, context)
    assert (status, body["error"]["code"]) == (502, "index_misconfigured")
    assert "NotFoundException" in body["error"]["message"] and "VectorIndex=none" in body["error"]["message"]
    faults.fail("QueryVectors", code="AccessDeniedException", status=403)
    status, body = search({"text": "a cat"}, context)
    assert (status, body["error"]["code"]) == (502, "index_misconfigured")
    assert "may not call s3vectors:QueryVectors" in body["error"]["message"]
    faults.fail("QueryVectors", code="ThrottlingException", status=400)
    status, body = search({"text": "a cat"}, context)
    assert (status, body["error"]["code"]) == (503, "index_unavailable") and "retry" in body["error"]["message"]


# ---------------------------------------------------------------------------------- what a query trusts
def raw_vector(vectors: Any, key: str, vector: np.ndarray, metadata: dict[str, Any]) -> None:
    """A vector written around ``put`` (another writer, or damaged metadata)."""
    vectors.put_vectors(vectorBucketName=VECTOR_BUCKET, indexName=INDEX,
                        vectors=[{"key": key, "data": {"float32": vector.tolist()}, "metadata": metadata}])  # fmt: skip


BAD_METADATA = {
    "null-width": {"bucket": BUCKET, "key": "n.jpg", "model": MODEL_ID, "width": None, "height": 3},
    "text-width": {"bucket": BUCKET, "key": "w.jpg", "model": MODEL_ID, "width": "wide", "height": 3},
    "fraction-height": {"bucket": BUCKET, "key": "f.jpg", "model": MODEL_ID, "width": 4, "height": 2.5},
    "negative-height": {"bucket": BUCKET, "key": "m.jpg", "model": MODEL_ID, "width": 4, "height": -1},
    "bool-width": {"bucket": BUCKET, "key": "b.jpg", "model": MODEL_ID, "width": True, "height": 3},
    "model-only": {"model": MODEL_ID},
    "empty-key": {"bucket": BUCKET, "key": "", "model": MODEL_ID},
    "numeric-key": {"bucket": BUCKET, "key": 7, "model": MODEL_ID},
    "bad-bucket": {"bucket": "Not a bucket!", "key": "x.jpg", "model": MODEL_ID},
    "no-bucket": {"key": "x.jpg", "model": MODEL_ID},
    "numeric-etag": {"bucket": BUCKET, "key": "e.jpg", "model": MODEL_ID, "etag": 5},
}


def test_a_query_skips_records_without_a_usable_key_or_size(irt, vectors, faults, unflushed, logs) -> None:
    query = unit(1)
    for i, (name, md) in enumerate(BAD_METADATA.items()):
        raw_vector(vectors, f"bad-{name}", query + 0.01 * unit(100 + i), md)  # nearer than the good ones
    put_vector(irt.index, "good.jpg", unit(1) + 0.5 * unit(2))
    raw_vector(
        vectors, "sizeless", unit(1) + 0.6 * unit(3), {"bucket": BUCKET, "key": "sizeless.jpg", "model": MODEL_ID}
    )
    raw_vector(vectors, "float-size", unit(1) + 0.7 * unit(4),
               {"bucket": BUCKET, "key": "float.jpg", "model": MODEL_ID, "width": 640.0, "height": 480.0})  # fmt: skip
    got = irt.index.query(query, 20)
    assert [m.key for m in got] == ["good.jpg", "sizeless.jpg", "float.jpg"]
    assert (got[0].width, got[0].height, got[0].etag) == (4, 3, "e-good.jpg")
    assert (got[1].width, got[1].height, got[1].etag) == (None, None, None)  # absent stays absent
    assert (got[2].width, got[2].height) == (640, 480) and isinstance(got[2].width, int)
    assert unflushed()["IndexBadRecords"]["Value"] == [1.0] * len(BAD_METADATA)
    skipped = [x for x in logs() if x.get("message", "").startswith("index record skipped")]
    assert {x["vector_key"] for x in skipped} == {f"bad-{name}" for name in BAD_METADATA}
    assert all(x["level"] == "WARNING" and x["reason"] for x in skipped)


def test_a_query_skips_records_without_a_numeric_distance(irt, unflushed) -> None:
    md = {"bucket": BUCKET, "key": "k.jpg", "model": MODEL_ID, "width": 4, "height": 3}

    class Client:
        def query_vectors(self, **kw: Any) -> dict[str, Any]:
            return {"vectors": [{"key": "none", "metadata": md}, {"key": "text", "distance": "0.1", "metadata": md},
                                {"key": "nan", "distance": float("nan"), "metadata": md},
                                {"key": "bool", "distance": False, "metadata": md},
                                {"key": "meta", "distance": 0.2, "metadata": "not an object"},
                                {"key": "ok", "distance": 0.25, "metadata": md}]}  # fmt: skip

    index = S3VectorsIndex(Client(), VECTOR_BUCKET, INDEX, model=MODEL_ID)
    assert index.query(unit(1), 10) == [Match("k.jpg", BUCKET, 0.75, 4, 3, None)]
    assert unflushed()["IndexBadRecords"]["Value"] == [1.0] * 5


def test_search_never_answers_a_bad_record_nor_a_500(irt, vectors, faults, context) -> None:
    raw_vector(vectors, "bad-null", unit(1), {"bucket": BUCKET, "model": MODEL_ID, "key": "n.jpg", "width": None})
    raw_vector(vectors, "bad-wide", unit(1), {"bucket": BUCKET, "model": MODEL_ID, "key": "w.jpg", "width": "wide"})
    raw_vector(vectors, "bad-model-only", unit(1), {"model": MODEL_ID})
    raw_vector(vectors, "sizeless", unit(2), {"bucket": BUCKET, "key": "sizeless.jpg", "model": MODEL_ID})
    status, body = search({"text": "a cat", "k": 10}, context)
    assert status == 200, body
    assert [r["key"] for r in body["results"]] == ["sizeless.jpg"]
    assert set(body["results"][0]) == {"key", "bucket", "score"}  # no width, height or etag stored: absent


@pytest.mark.parametrize(
    ("message", "dimension"),
    [
        ("Invalid record for key 's3://b/k.jpg': vector must have length 768, but has length 512", 768),
        ("Query vector dimension 512 does not match index dimension: 1024", 1024),
        ("1 validation error detected: Member must have length between 3 and 63", None),  # not a dimension
        ("Invalid record for key 's3://b/k.jpg': vector must have length 512, but has length 512", None),
    ],
)
def test_a_validation_error_names_the_dimensions_only_when_they_differ(message: str, dimension: int | None) -> None:
    class Client:
        def query_vectors(self, **kw: Any) -> Any:
            error = {"Code": "ValidationException", "Message": message}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "QueryVectors")

    with pytest.raises(IndexMisconfigured) as info:
        S3VectorsIndex(Client(), VECTOR_BUCKET, INDEX, model=MODEL_ID).query(unit(1), 3)
    if dimension is None:
        assert "-d vectors" not in info.value.remedy and message in info.value.remedy
    else:
        assert f"the index holds {dimension}-d vectors, the model makes 512-d" in info.value.remedy
