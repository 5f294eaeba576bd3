"""The item contract (handler.item), without a table (its DynamoDB encoding: tests/handler/sinks/test_dynamodb.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from handler import item
from handler.item import ObjectMeta, StoredItem
from handler.sinks.dynamodb import from_dynamodb, to_dynamodb
from layer import Embedding
from tests.handler.helpers import ITEM_META as META
from tests.handler.helpers import item_embedding as _emb


def test_sequencer_order_right_pads_and_beats_event_time() -> None:
    t = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    # S3: "right pad the shorter value with zeros, then compare lexicographically"
    assert item.order_key("0055AED6DCD90281E6", t) > item.order_key("0055AED6DCD90281E5", t)
    assert item.order_key("0055AED6DCD90281E50", t) == item.order_key("0055AED6DCD90281E5", t)
    assert item.order_key("0055AED6DCD90281E51", t) > item.order_key("0055AED6DCD90281E5", t)
    assert item.order_key("0055aed6dcd90281e5", t) == item.order_key("0055AED6DCD90281E5", t)  # case-blind
    later = datetime(2024, 5, 1, 12, 0, 0, 1000, tzinfo=UTC)
    assert item.order_key(None, later) > item.order_key(None, t)
    assert item.order_key("00", t) > item.order_key(None, later)  # S3's own order wins over a clock
    assert item.order_key(None, t) == "020240501T120000.000000"
    assert len(item.order_key("AB", t)) == 1 + item.SEQUENCER_WIDTH


def test_sequencer_keys_compare_with_keys_in_s3s_own_form() -> None:
    """S3 writes sequencers in upper-case hex: a key made from a lower-case one still sorts by value against
    the keys already stored (a lower-case normal form would put ``a`` after ``B``)."""
    t = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    stored_b = "1" + "0B".ljust(item.SEQUENCER_WIDTH, "0")  # an item written for S3's sequencer 0B
    assert item.order_key("0a", t) < stored_b < item.order_key("0c", t)


def test_time_keys_are_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    t = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    utc_key = item.order_key(None, t)
    monkeypatch.setenv("TZ", "JST-9")  # POSIX form: no tz database needed
    time.tzset()
    try:
        assert item.order_key(None, t) == utc_key == "020240501T120000.000000"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_pk_is_the_uri_with_the_key_verbatim() -> None:
    assert item.pk("b", "dir/a b+c.jpg") == "s3://b/dir/a b+c.jpg" == ObjectMeta("b", "dir/a b+c.jpg", "0").pk


def test_vector_codec_is_little_endian_float32() -> None:
    v = np.array([1.0, -0.5, 0.25], dtype=np.float64)
    blob = item.encode_vector(v)
    assert blob == np.array(v, "<f4").tobytes() and len(blob) == 12
    back = item.decode_vector(blob)
    assert back.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(back, v.astype(np.float32))


def test_embedding_item_has_every_contract_attribute() -> None:
    got = item.embedding_item(META, _emb())
    assert set(got) == {"pk", "order_key", "etag", "version_id", "sequencer", "size", "content_type", "embedding",
                        "dim", "norm", "model", "width", "height", "embedded_at"}  # fmt: skip
    assert (got["pk"], got["order_key"], got["etag"], got["version_id"], got["sequencer"]) == (
        "s3://b/dir/a b.jpg", "1AB", "e1", "v1", "AB")  # fmt: skip
    assert (got["size"], got["content_type"], got["dim"], got["norm"], got["model"]) == (
        123, "image/jpeg", 512, 10.25, "m/1")  # fmt: skip
    assert (got["width"], got["height"]) == (640, 427)
    assert isinstance(got["embedded_at"], str) and got["embedded_at"].endswith("Z")
    datetime.fromisoformat(got["embedded_at"].replace("Z", "+00:00"))


def test_unknown_object_fields_are_left_out_not_stored_empty() -> None:
    got = item.embedding_item(ObjectMeta("b", "k", "0x", etag="", size=0), _emb())
    assert {"etag", "version_id", "sequencer", "content_type"}.isdisjoint(got)
    assert got["size"] == 0  # a zero-byte object still has a size


def test_failure_item_has_no_embedding_and_a_bounded_message() -> None:
    got = item.failure_item(META, "corrupt_image", "x" * 5000, "m/1")
    assert (got["error_code"], got["model"], len(got["error_message"])) == ("corrupt_image", "m/1", 1000)
    assert "embedding" not in got and str(got["failed_at"]).endswith("Z") and got["etag"] == "e1"


def test_stored_item_ordering_and_duplicates() -> None:
    done = StoredItem(from_dynamodb(to_dynamodb(item.embedding_item(META, _emb()))))
    assert done.has_embedding and done.order_key == "1AB"
    assert done.is_newer_than("1AA") and not done.is_newer_than("1AB") and not done.is_newer_than("1AC")
    assert done.is_duplicate("e1", "m/1")
    assert not done.is_duplicate("e2", "m/1")  # other bytes
    assert not done.is_duplicate("e1", "m/2")  # other model: embed again
    assert not done.is_duplicate(None, "m/1") and not done.is_duplicate("", "m/1")
    failed = StoredItem(item.failure_item(META, "corrupt_image", "bad", "m/1"))
    assert not failed.has_embedding and failed.vector is None
    assert failed.is_duplicate("e1", "m/2")  # the same bytes failed: they fail under any model
    assert not failed.is_duplicate("e2", "m/1")
    assert not StoredItem({"etag": "e1"}).is_duplicate("e1", "m/1")  # neither embedding nor failure
    assert StoredItem({}).order_key == "" and not StoredItem({}).is_newer_than("0")


# ------------------------------------------------------------------------------------------ vector formats
def test_each_item_vector_format_sets_the_items_size_and_write_units() -> None:
    """The figures the template's ItemVector description states (512-d: 3, 2 and 1 write units)."""
    from handler.item import FLOAT16, FULL, NONE, embedding_item, write_units

    meta = ObjectMeta(bucket="clip-lambda-images", key="uploads/2026/12/IMG_0001.jpg", order_key="1" + "0" * 64,
                      etag="0" * 32, version_id=None, sequencer="0" * 18, size=3_456_789,
                      content_type="image/jpeg")  # fmt: skip
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    emb = Embedding(vector=vector / np.linalg.norm(vector), norm=10.5, width=4000, height=3000, model="m" * 40)
    units = {fmt: write_units(embedding_item(meta, emb, fmt)) for fmt in (FULL, FLOAT16, NONE)}
    assert units == {FULL: 3, FLOAT16: 2, NONE: 1}


def test_a_float16_item_vector_decodes_within_1e_4_of_the_float32() -> None:
    from handler.item import EMBEDDED_AT, FLOAT16, embedding_item

    rng = np.random.default_rng(1)
    for dim in (512, 768):
        v = rng.standard_normal(dim).astype(np.float32)
        v /= np.linalg.norm(v)
        meta = ObjectMeta(bucket="b", key="k.jpg", order_key="1" + "0" * 64, etag="e")
        attrs = embedding_item(meta, Embedding(vector=v, norm=1.0, width=1, height=1, model="m"), FLOAT16)
        got = StoredItem(attrs).vector
        assert got is not None and got.dtype == np.float32 and EMBEDDED_AT in attrs
        assert float(got @ v) / float(np.linalg.norm(got)) > 1 - 1e-4
