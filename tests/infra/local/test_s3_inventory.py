"""S3 Inventory, locally, over a moto server: the report infra/local/s3_inventory.py writes (S3's layout and
format: manifest.json with sizes and MD5s, gzip CSV data files without a header, URL-encoded keys) and what the
emulated Distributed Map's ``FromInventory`` reader (infra/local/distributed_map.py) yields from it (the
template's ``Source`` Choice that picks that reader: test_distributed_map.py)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import pytest

from infra.local.distributed_map import (
    ItemReaderFailed,
    LocalDistributedMap,
    MapDefinition,
    inventory_items,
)
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.rie import InvokeResult
from infra.local.s3_inventory import InventoryConfiguration, inventory_key, write_inventory_report

REPORTS = "clip-backfill-reports"
TAKEN = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
KEYS = [
    "plain.jpg",
    "with space.jpg",
    "plus+sign.jpg",
    "per%cent.jpg",
    "literal%20not-a-space.jpg",
    "ünï/cødé ✓.jpg",
    "deep/er/path/x.jpg",
    "a+b c%2B/d.jpg",
]


@pytest.fixture(scope="module")
def stack() -> Iterator[MotoStack]:
    with MotoStack(names=StackNames(vector_bucket="", notifications=False)).start() as s:
        s3 = s.client("s3")
        s3.create_bucket(Bucket=REPORTS)
        for i, key in enumerate(KEYS):
            s3.put_object(Bucket=s.names.bucket, Key=key, Body=b"x" * (i + 1))
        yield s


def read(s3: Any, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=REPORTS, Key=key)["Body"].read()
    return body


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("plain.jpg", "plain.jpg"),
        ("with space.jpg", "with+space.jpg"),
        ("plus+sign.jpg", "plus%2Bsign.jpg"),
        ("per%cent.jpg", "per%25cent.jpg"),
        ("literal%20not-a-space.jpg", "literal%2520not-a-space.jpg"),
        ("ünï/cødé ✓.jpg", "%C3%BCn%C3%AF/c%C3%B8d%C3%A9+%E2%9C%93.jpg"),
        ("deep/er/path/x.jpg", "deep/er/path/x.jpg"),
    ],
)
def test_keys_are_url_encoded_as_s3_inventory_writes_them_and_the_handlers_decoding_inverts_it(
    key: str, encoded: str
) -> None:
    assert inventory_key(key) == encoded
    assert unquote_plus(encoded) == key  # handler/events.py decodes keys_url_encoded batches with unquote_plus


def test_the_configuration_is_the_templates() -> None:
    config = InventoryConfiguration.from_template()
    assert (config.id, config.prefix, config.fields) == ("images", "inventory", ("Size", "LastModifiedDate", "ETag"))
    assert config.schema == ["Bucket", "Key", "Size", "LastModifiedDate", "ETag"]
    assert InventoryConfiguration("c", "p", ("ETag", "StorageClass", "Size")).schema == [
        "Bucket", "Key", "Size", "ETag", "StorageClass"
    ]  # fmt: skip


def test_the_report_is_laid_out_and_written_as_s3_writes_it(stack: MotoStack) -> None:
    s3, bucket = stack.client("s3"), stack.names.bucket
    report = write_inventory_report(s3, bucket, REPORTS, taken=TAKEN, files=3)
    base = f"inventory/{bucket}/images/"
    assert report.manifest_key == base + "2026-11-28T00-00Z/manifest.json" and report.rows == len(KEYS)
    raw = read(s3, report.manifest_key)
    manifest = json.loads(raw)
    assert manifest == {
        "sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{REPORTS}", "version": "2016-11-30",
        "creationTimestamp": str(int(TAKEN.timestamp() * 1000)), "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag", "files": manifest["files"],
    }  # fmt: skip
    assert read(s3, base + "2026-11-28T00-00Z/manifest.checksum").decode() == hashlib.md5(raw).hexdigest()
    assert len(manifest["files"]) == 3
    rows: list[list[str]] = []
    for entry in manifest["files"]:
        assert re.fullmatch(re.escape(base) + r"data/[0-9a-f-]{36}\.csv\.gz", entry["key"])
        data = read(s3, entry["key"])
        assert (entry["size"], entry["MD5checksum"]) == (len(data), hashlib.md5(data).hexdigest())
        text = gzip.decompress(data).decode()
        assert all(line.startswith(f'"{bucket}","') for line in text.splitlines())  # no header, all quoted
        rows += list(csv.reader(io.StringIO(text)))
    symlinks = read(s3, base + "hive/dt=2026-11-28-00-00/symlink.txt").decode().split()
    assert symlinks == [f"s3://{REPORTS}/{e['key']}" for e in manifest["files"]]
    # One row per object: the key encoded, the size and time and ETag as the object has them.
    assert sorted(unquote_plus(r[1]) for r in rows) == sorted(KEYS)
    for bucket_name, key, size, modified, etag in rows:
        head = s3.head_object(Bucket=bucket, Key=unquote_plus(key))
        assert (bucket_name, key) == (bucket, inventory_key(unquote_plus(key)))
        assert (size, etag) == (str(head["ContentLength"]), head["ETag"].strip('"'))
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", modified)
        assert datetime.fromisoformat(modified.replace("Z", "+00:00")) == head["LastModified"]


def test_the_reader_yields_one_item_per_row_named_after_the_schema(stack: MotoStack) -> None:
    s3, bucket = stack.client("s3"), stack.names.bucket
    report = write_inventory_report(s3, bucket, REPORTS, taken=datetime(2026, 11, 29, tzinfo=UTC), files=2)
    items = inventory_items(s3, REPORTS, report.manifest_key)
    assert len(items) == len(KEYS)
    assert all(set(it) == {"Bucket", "Key", "Size", "LastModifiedDate", "ETag"} for it in items)
    assert all(isinstance(v, str) for it in items for v in it.values())  # as the CSV has them: "Size": "3"
    assert Counter(it["Key"] for it in items) == Counter(inventory_key(k) for k in KEYS)  # still encoded
    assert {it["Bucket"] for it in items} == {bucket}


def put_report(s3: Any, name: str, rows_text: str, **changes: Any) -> str:
    """A hand-made report (one data file) under inventory/; ``changes`` edit its manifest."""
    data = gzip.compress(rows_text.encode())
    data_key = f"inventory/src/images/data/{name}.csv.gz"
    s3.put_object(Bucket=REPORTS, Key=data_key, Body=data)
    manifest = {"sourceBucket": "src", "destinationBucket": f"arn:aws:s3:::{REPORTS}", "version": "2016-11-30",
                "creationTimestamp": "0", "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size",
                "files": [{"key": data_key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}],
                **changes}  # fmt: skip
    key = f"inventory/src/images/{name}/manifest.json"
    s3.put_object(Bucket=REPORTS, Key=key, Body=json.dumps(manifest).encode())
    return key


def test_short_rows_get_empty_fields_and_long_rows_lose_the_extra_ones(stack: MotoStack) -> None:
    s3 = stack.client("s3")
    key = put_report(s3, "ragged", '"src","a.jpg"\n"src","b.jpg","3","extra"\n')
    assert inventory_items(s3, REPORTS, key) == [
        {"Bucket": "src", "Key": "a.jpg", "Size": ""},
        {"Bucket": "src", "Key": "b.jpg", "Size": "3"},
    ]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("orc", "Step Functions reads CSV only"),
        ("tampered", "differs from its manifest"),
        ("not-json", "is not an S3 Inventory manifest"),
        ("missing", "NoSuchKey"),
    ],
)
def test_a_report_the_reader_cannot_read_fails_the_map_state(stack: MotoStack, case: str, message: str) -> None:
    s3 = stack.client("s3")
    key = put_report(s3, case, '"src","a.jpg","1"\n', **({"fileFormat": "ORC"} if case == "orc" else {}))
    if case == "tampered":
        manifest = json.loads(read(s3, key))
        s3.put_object(Bucket=REPORTS, Key=manifest["files"][0]["key"], Body=gzip.compress(b'"src","b.jpg","1"\n'))
    elif case == "not-json":
        s3.put_object(Bucket=REPORTS, Key=key, Body=b"<html/>")
    elif case == "missing":
        key = "inventory/src/images/never/manifest.json"
    definition = MapDefinition.from_template("FromInventory")
    execution = {"manifest": {"input_type": "MANIFEST", "key": key}}
    with pytest.raises(ItemReaderFailed, match=message) as failed:
        definition.read_items(s3, execution, {"ReportsBucket": REPORTS, "ImagesBucket": "src"})
    assert failed.value.error == "States.ItemReaderFailed"


def test_an_inventory_run_batches_the_encoded_items_with_the_templates_batch_input(stack: MotoStack) -> None:
    s3, bucket = stack.client("s3"), stack.names.bucket
    report = write_inventory_report(s3, bucket, REPORTS, taken=datetime(2026, 11, 30, tzinfo=UTC), files=2)
    seen: list[dict[str, Any]] = []

    def function(event: dict[str, Any]) -> InvokeResult:
        seen.append(event)
        return InvokeResult({"results": []}, False, 1.0)

    runner = LocalDistributedMap(s3, bucket, REPORTS, [function])
    execution = {"prefix": "", "batch_size": 3, "concurrency": 1, "model_id": "m", "keys_url_encoded": True,
                 "manifest": {"input_type": "MANIFEST", "key": report.manifest_key}}  # fmt: skip
    result = runner.run(execution, name="inv")
    assert result.status == "SUCCEEDED" and result.counts.total == result.counts.succeeded == len(KEYS)
    assert [len(e["Items"]) for e in seen] == [3, 3, 2]
    assert all(e["BatchInput"] == {"bucket": bucket, "model_id": "m", "keys_url_encoded": True} for e in seen)
    assert sorted(unquote_plus(it["Key"]) for e in seen for it in e["Items"]) == sorted(KEYS)
