"""Real parts over HTTP on 127.0.0.1: moto server (S3 → SQS notifications, DynamoDB), the S3 function
under the RIE fed by the SQS mapping emulator; vectors compared with ``clip-lambda embed``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra.local.faults import FaultProxy
from infra.local.moto_stack import MotoStack
from infra.local.poller import SqsPoller
from infra.local.rie import LocalFunction
from tests.imaging import encode, photo_bytes, resized_photo
from tests.integration.conftest import cli_embeddings, cosine, dlq_bodies, items_under

pytestmark = pytest.mark.integration


def test_uploads_end_as_items_equal_to_the_cli(
    stack: MotoStack, s3_fn: LocalFunction, poller: SqsPoller, model_dir: Path, tmp_path: Path
) -> None:
    bucket = stack.names.bucket
    images = {
        "pipeline/china.jpg": photo_bytes()["china.jpg"],
        "pipeline/dir with space/flower ü+1.jpg": photo_bytes()["flower.jpg"],
        "pipeline/a/b/c/small china.png": encode(resized_photo((300, 200))),
    }
    s3 = stack.client("s3")
    for key, data in images.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
    s3.put_object(Bucket=bucket, Key="pipeline/notes.txt", Body=b"not an image at all", ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="pipeline/ephemeral.jpg", Body=photo_bytes()["china.jpg"])
    s3.delete_object(Bucket=bucket, Key="pipeline/ephemeral.jpg")  # deleted before the function reads it
    stack.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody="{not an S3 event")

    stats = poller.drain(timeout=120)

    assert max(stats.batch_sizes) <= 10 and stats.function_errors == 0
    items = items_under(stack, f"s3://{bucket}/pipeline/")
    image_pks = {f"s3://{bucket}/{k}" for k in images}
    assert set(items) == image_pks | {f"s3://{bucket}/pipeline/notes.txt"}  # nothing else, nothing lost
    files = []
    for i, (key, data) in enumerate(images.items()):
        path = tmp_path / f"{i}-{Path(key).name}"
        path.write_bytes(data)
        files.append((key, path))
    reference = cli_embeddings(model_dir, [p for _, p in files])
    for key, path in files:
        item = items[f"s3://{bucket}/{key}"]
        vec = stack.stored_vector(item)  # from the index: the local stack's items are lean (ItemVector=auto)
        assert vec is not None and "embedding" not in item
        assert vec.shape == (int(item["dim"]["N"]),) == (512,)
        assert abs(np.linalg.norm(vec) - 1) < 1e-5
        assert cosine(vec, reference[str(path)]) >= 0.99999, key
        assert int(item["size"]["N"]) == len(images[key]) and item["etag"]["S"]
        assert "error_code" not in item
    failure = items[f"s3://{bucket}/pipeline/notes.txt"]
    assert failure["error_code"]["S"] == "not_an_image" and "embedding" not in failure
    assert dlq_bodies(stack) == ["{not an S3 event"]  # retried up to maxReceiveCount, then kept in the DLQ
    assert poller.queue_depth() == 0


def test_dynamodb_outage_is_retried_and_every_item_lands_once(
    stack: MotoStack, s3_fn: LocalFunction, poller: SqsPoller, ddb_proxy: FaultProxy
) -> None:
    bucket = stack.names.bucket
    s3 = stack.client("s3")
    keys = {f"outage/{mode}/photo {i}.jpg": mode for mode in ("throttle", "down") for i in range(2)}
    for mode in ("throttle", "down"):
        ddb_proxy.mode = mode  # type: ignore[assignment]
        for key, m in keys.items():
            if m == mode:
                s3.put_object(Bucket=bucket, Key=key, Body=photo_bytes()["flower.jpg"])
        got = poller.poll_once()  # DynamoDB is failing: the records fail and return to the queue
        assert got.received >= 1 and got.deleted == 0 and got.failed == got.received
        assert ddb_proxy.counts[mode] > 0
        assert items_under(stack, f"s3://{bucket}/outage/") == {}
    ddb_proxy.mode = "pass"
    poller.drain(timeout=120)
    items = items_under(stack, f"s3://{bucket}/outage/")
    assert set(items) == {f"s3://{bucket}/{k}" for k in keys}  # each exactly once (pk is unique)
    assert all("embedded_at" in it and "error_code" not in it for it in items.values())
    assert dlq_bodies(stack) == []


def test_uploads_land_in_the_vector_index_as_in_the_table_and_deletes_leave_it(
    stack: MotoStack, s3_fn: LocalFunction, poller: SqsPoller
) -> None:
    """The live path with the index on (the template's default): each object's vector in S3 Vectors is its
    item's, bit for bit, found by QueryVectors (the local emulation) under its prefix; a delete removes both."""
    from handler.vector_index import S3VectorsIndex

    bucket, names = stack.names.bucket, stack.names
    images = {
        "search/cats/china.jpg": photo_bytes()["china.jpg"],
        "search/flowers/flower.jpg": photo_bytes()["flower.jpg"],
        "search/small china.png": encode(resized_photo((300, 200))),
    }
    s3, s3v = stack.client("s3"), stack.client("s3vectors")
    for key, data in images.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    poller.drain(timeout=120)

    items = items_under(stack, f"s3://{bucket}/search/")
    assert set(items) == {f"s3://{bucket}/{key}" for key in images}
    where = {"vectorBucketName": names.vector_bucket, "indexName": names.vector_index}
    got = s3v.get_vectors(**where, keys=list(items), returnData=True, returnMetadata=True)["vectors"]
    vectors = {v["key"]: v for v in got}
    assert set(vectors) == set(items)
    model = items[f"s3://{bucket}/search/cats/china.jpg"]["model"]["S"]
    index = S3VectorsIndex(s3v, names.vector_bucket, names.vector_index, model=model)
    for pk, item in items.items():
        embedding = stack.stored_vector(item)
        np.testing.assert_array_equal(np.asarray(vectors[pk]["data"]["float32"], np.float32), embedding)
        md = vectors[pk]["metadata"]
        assert (md["bucket"], f"s3://{bucket}/{md['key']}", md["etag"], md["model"]) == (
            bucket,
            pk,
            item["etag"]["S"],
            model,
        )
        assert (md["width"], md["height"]) == (int(item["width"]["N"]), int(item["height"]["N"]))
        best = index.query(embedding, 1, prefix="search/")[0]  # its own vector is its nearest
        assert (f"s3://{bucket}/{best.key}", best.etag) == (pk, item["etag"]["S"])
        assert best.score == pytest.approx(1.0, abs=1e-5)
    assert [m.key for m in index.query(embedding, 3, prefix="search/cats/")] == ["search/cats/china.jpg"]

    s3.delete_object(Bucket=bucket, Key="search/cats/china.jpg")
    poller.drain(timeout=120)
    gone = f"s3://{bucket}/search/cats/china.jpg"
    assert set(items_under(stack, f"s3://{bucket}/search/")) == set(items) - {gone}
    left = s3v.get_vectors(**where, keys=list(items))["vectors"]
    assert {v["key"] for v in left} == set(items) - {gone}
    assert index.query(embedding, 3, prefix="search/cats/") == []
