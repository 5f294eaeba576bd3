"""LOCAL EMULATION of an S3 Inventory delivery: the report S3 writes for a bucket's inventory configuration,
written into the (moto) destination bucket the way S3 writes it. Neither S3 nor moto runs inventories
locally; this is what the backfill's ``FromInventory`` reader and ``clip-lambda backfill --manifest inventory``
read, for the tests and the local stack.

    report = write_inventory_report(s3, "clip-lambda-images", "clip-backfill-reports")
    report.manifest_key  # inventory/clip-lambda-images/images/2026-12-06T00-00Z/manifest.json

The layout (https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html), under
the configuration's destination prefix, source bucket and configuration id:

- ``<prefix>/<bucket>/<id>/data/<uuid>.csv.gz``: the objects, one CSV row each, split over several files,
  gzip-compressed, no header row, every field quoted; the key URL-encoded (a space is ``+``, ``+`` is
  ``%2B``, ``%`` is ``%25``, non-ASCII its UTF-8 bytes, ``/`` kept) and the other columns as S3 writes them
  (``Size`` in bytes, ``LastModifiedDate`` ISO 8601 with milliseconds and ``Z``, ``ETag`` without quotes);
- ``<prefix>/<bucket>/<id>/<YYYY-MM-DDTHH-MMZ>/manifest.json``: ``sourceBucket``, ``destinationBucket``
  (the bucket's ARN), ``version`` 2016-11-30, ``creationTimestamp`` (epoch milliseconds, a string),
  ``fileFormat`` CSV, ``fileSchema`` (``Bucket, Key`` and the optional fields in S3's column order) and
  ``files`` (each data file's ``key``, ``size`` and ``MD5checksum``); next to it ``manifest.checksum``, the
  MD5 of manifest.json;
- ``<prefix>/<bucket>/<id>/hive/dt=YYYY-MM-DD-HH-MM/symlink.txt``: the data files' ``s3://`` URLs.

The defaults (configuration id, destination prefix, optional fields) are the template's
``ImagesBucket`` ``InventoryConfigurations``. The rows come from the source bucket's listing at the time of
the call (a real inventory is a snapshot up to 48 hours old); ``objects`` gives them instead.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

ROOT = Path(__file__).resolve().parents[2]
VERSION = "2016-11-30"
# S3 Inventory's column order for the optional fields (the manifest's fileSchema lists them in this order).
FIELD_ORDER = (
    "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag", "IsMultipartUploaded",
    "StorageClass", "ReplicationStatus", "EncryptionStatus", "ObjectLockRetainUntilDate", "ObjectLockMode",
    "ObjectLockLegalHoldStatus", "IntelligentTieringAccessTier", "BucketKeyStatus", "ChecksumAlgorithm",
    "ObjectAccessControlList", "ObjectOwner",
)  # fmt: skip


@dataclass(frozen=True)
class InventoryConfiguration:
    """What an inventory configuration decides about its report's location and columns."""

    id: str
    prefix: str
    fields: tuple[str, ...]

    @classmethod
    def from_template(cls, template: Path = ROOT / "template.yaml") -> InventoryConfiguration:
        """The ``ImagesBucket``'s inventory configuration (the branch its ``ImagesInventory`` condition adds)."""
        from samcli.yamlhelper import yaml_parse

        configs = yaml_parse(template.read_text())["Resources"]["ImagesBucket"]["Properties"]["InventoryConfigurations"]
        if isinstance(configs, dict) and "Fn::If" in configs:
            configs = configs["Fn::If"][1]
        (config,) = configs
        if config["Destination"]["Format"] != "CSV":
            raise ValueError(f"the template's inventory is {config['Destination']['Format']}: this writes CSV only")
        return cls(str(config["Id"]), str(config["Destination"].get("Prefix", "")), tuple(config["OptionalFields"]))

    @property
    def schema(self) -> list[str]:
        unknown = set(self.fields) - set(FIELD_ORDER)
        if unknown:
            raise ValueError(f"unknown inventory fields {sorted(unknown)}")
        return ["Bucket", "Key", *sorted(self.fields, key=FIELD_ORDER.index)]

    def base(self, source_bucket: str) -> str:
        return f"{self.prefix}/{source_bucket}/{self.id}/" if self.prefix else f"{source_bucket}/{self.id}/"


@dataclass(frozen=True)
class InventoryReport:
    manifest_key: str
    data_keys: tuple[str, ...]
    rows: int
    taken: datetime


def inventory_key(key: str) -> str:
    """An object key as an S3 Inventory CSV holds it: URL-encoded, a space as ``+``, ``/`` kept."""
    return quote_plus(key, safe="/")


def _row(bucket: str, obj: dict[str, Any], columns: Sequence[str]) -> list[str]:
    values = {
        "Bucket": bucket,
        "Key": inventory_key(obj["Key"]),
        "Size": str(obj["Size"]),
        "LastModifiedDate": obj["LastModified"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{obj['LastModified'].microsecond // 1000:03d}Z",
        "ETag": str(obj.get("ETag", "")).strip('"'),
        "StorageClass": str(obj.get("StorageClass", "STANDARD")),
        "VersionId": str(obj.get("VersionId", "")),
        "IsLatest": "true",
        "IsDeleteMarker": "false",
    }
    missing = [c for c in columns if c not in values]
    if missing:
        raise ValueError(f"the local inventory does not write {missing}")
    return [values[c] for c in columns]


def listed_objects(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """The bucket's objects now (ListObjectsV2: Key, Size, LastModified, ETag, StorageClass)."""
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += page.get("Contents", [])
    return out


def write_inventory_report(
    s3: Any,
    source_bucket: str,
    destination_bucket: str,
    *,
    taken: datetime | None = None,
    files: int = 2,
    config: InventoryConfiguration | None = None,
    objects: Iterable[dict[str, Any]] | None = None,
) -> InventoryReport:
    """Writes one inventory report of ``source_bucket`` into ``destination_bucket`` (module docstring):
    the objects (default: the bucket's listing now) split over ``files`` data files (fewer if there are
    fewer rows, at least one)."""
    config = config or InventoryConfiguration.from_template()
    taken = (taken or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    columns = config.schema
    source = listed_objects(s3, source_bucket) if objects is None else list(objects)
    rows = [_row(source_bucket, obj, columns) for obj in source]
    base = config.base(source_bucket)
    n = max(1, min(files, len(rows)))
    per_file = -(-len(rows) // n)
    entries: list[dict[str, Any]] = []
    for i in range(n):
        text = io.StringIO()
        csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows[i * per_file : (i + 1) * per_file])
        data = gzip.compress(text.getvalue().encode("utf-8"), mtime=0)
        key = f"{base}data/{uuid.uuid4()}.csv.gz"
        s3.put_object(Bucket=destination_bucket, Key=key, Body=data)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        entries.append({"key": key, "size": len(data), "MD5checksum": md5})
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{destination_bucket}",
        "version": VERSION,
        "creationTimestamp": str(int(taken.timestamp() * 1000)),
        "fileFormat": "CSV",
        "fileSchema": ", ".join(columns),
        "files": entries,
    }
    body = json.dumps(manifest, indent=2).encode()
    manifest_key = f"{base}{taken:%Y-%m-%dT%H-%MZ}/manifest.json"
    s3.put_object(Bucket=destination_bucket, Key=manifest_key, Body=body)
    checksum = hashlib.md5(body, usedforsecurity=False).hexdigest()
    s3.put_object(Bucket=destination_bucket, Key=manifest_key.replace("manifest.json", "manifest.checksum"),
                  Body=checksum.encode())  # fmt: skip
    symlinks = "".join(f"s3://{destination_bucket}/{e['key']}\n" for e in entries)
    s3.put_object(Bucket=destination_bucket, Key=f"{base}hive/dt={taken:%Y-%m-%d-%H-%M}/symlink.txt",
                  Body=symlinks.encode())  # fmt: skip
    return InventoryReport(manifest_key, tuple(e["key"] for e in entries), len(rows), taken)
