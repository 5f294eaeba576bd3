"""The inventory backfill end to end, locally: objects in the images bucket (keys with spaces, unicode, ``+``,
``%``, a literal ``%20`` and ``/``), two S3 Inventory reports of them in S3's real format in the reports
bucket (an older one and the newest), ``clip-lambda backfill --manifest inventory --wait`` as a subprocess
(no manifest key: it takes the newest report) against the local control plane (moto's CloudFormation for
the stack's outputs and parameters, the Lambda account-settings front, the Step Functions emulation running
the template's ``FromInventory`` map), two S3 functions under the RIE → every image's item, under its
decoded key, embedded once."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import numpy as np
import pytest
from PIL import Image

from infra.local.backfill_stack import LocalBackfill
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.rie import LocalFunction
from infra.local.s3_inventory import inventory_key, write_inventory_report
from layer.manifest import Manifest
from tests.integration.conftest import items_under

pytestmark = pytest.mark.integration

PATTERNS = [
    "inv/plain-{i}.jpg",
    "inv/with space {i}.jpg",
    "inv/ünïcødé-日本-{i}.jpg",
    "inv/plus+sign+{i}.jpg",
    "inv/per%cent-{i}%.jpg",
    "inv/literal%20-{i}.jpg",  # "%20" is three characters of the key, not a space
    "inv/deep/er/path/{i}.jpg",
    "inv/mixed a+b%2B/ü {i}.jpg",
]
KEYS = [p.format(i=i) for i in range(6) for p in PATTERNS]  # 48 images
LATE = set(KEYS[-8:])  # uploaded after the older report: only the newest lists them


def tiny_jpeg(i: int) -> bytes:
    rng = np.random.default_rng(1000 + i)
    buf = io.BytesIO()
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(model_dir: Path) -> Iterator[MotoStack]:
    # No S3 → SQS notifications: the backfill is the only way an item can appear here.
    names = StackNames(notifications=False, dimension=Manifest.read(model_dir).dim)
    with MotoStack(names=names).start() as s:
        yield s


@pytest.fixture(scope="module")
def functions(stack: MotoStack, model_dir: Path) -> Iterator[list[LocalFunction]]:
    env = stack.function_env(
        MODEL_DIR=str(model_dir), POWERTOOLS_METRICS_NAMESPACE="ClipLambdaIT", CLIP_LAMBDA_THREADS="1"
    )
    with ExitStack() as running:
        yield [
            running.enter_context(LocalFunction("handler.s3.lambda_handler", env=env, name=f"clip-inventory-{n}"))
            for n in "ab"
        ]


def test_an_inventory_backfill_through_the_cli_embeds_every_image_under_its_decoded_key(
    stack: MotoStack, functions: list[LocalFunction]
) -> None:
    s3, bucket = stack.client("s3"), stack.names.bucket
    with LocalBackfill(stack, [f.invoke for f in functions], unreserved_concurrent_executions=980).start() as local:
        for i, key in enumerate(KEYS):
            if key not in LATE:
                s3.put_object(Bucket=bucket, Key=key, Body=tiny_jpeg(i), ContentType="image/jpeg")
        now = datetime.now(UTC)
        older = write_inventory_report(s3, bucket, local.reports_bucket, taken=now - timedelta(days=1), files=2)
        for i, key in enumerate(KEYS):
            if key in LATE:
                s3.put_object(Bucket=bucket, Key=key, Body=tiny_jpeg(i), ContentType="image/jpeg")
        newest = write_inventory_report(s3, bucket, local.reports_bucket, taken=now, files=3)
        assert (older.rows, newest.rows, len(newest.data_keys)) == (len(KEYS) - len(LATE), len(KEYS), 3)

        done = subprocess.run(
            [sys.executable, "-m", "infra.cli", "backfill", "--manifest", "inventory", "--batch-size", "5",
             "--name", "inventory-e2e", "--wait"],
            env=local.cli_env(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + "\n".join(f.logs()[-3000:] for f in functions)
        assert local.sfn is not None
        execution = local.sfn.executions[local.sfn.execution_arn("inventory-e2e")]

    # The CLI named the newest report, and the concurrency it derived: 980 - (5 + 20) - 49.
    assert f"inventory manifest: s3://{local.reports_bucket}/{newest.manifest_key} (the newest of 2" in done.stderr
    assert "concurrency 906: account limit 1,000, unreserved 980, leaving 25 for the live functions" in done.stderr
    sent = json.loads(execution.input)
    assert sent["manifest"] == {"input_type": "MANIFEST", "key": newest.manifest_key}
    assert (sent["keys_url_encoded"], sent["concurrency"]) == (True, 906)
    assert execution.map_run is not None and execution.map_run.state == "FromInventory"
    summary = json.loads(done.stdout.splitlines()[-1])
    assert (summary["status"], summary["total"], summary["succeeded"], summary["failed"]) == (
        "SUCCEEDED", len(KEYS), len(KEYS), 0
    )  # fmt: skip

    # The batches carried the keys as the inventory wrote them (URL-encoded; the function decodes them), and
    # each object's outcome is in the ResultWriter report under its decoded key.
    report = json.loads(s3.get_object(Bucket=local.reports_bucket,
                                      Key=summary_report_key(s3, local.reports_bucket))["Body"].read())  # fmt: skip
    sent_keys = sorted(it["Key"] for batch in report for it in batch["Input"]["Items"])
    assert sent_keys == sorted(inventory_key(k) for k in KEYS)
    assert "inv/with+space+0.jpg" in sent_keys and "inv/literal%2520-0.jpg" in sent_keys
    outcomes = {r["uri"]: r["outcome"] for batch in report for r in batch["Output"]["results"]}
    assert outcomes == {f"s3://{bucket}/{k}": "embedded" for k in KEYS}

    # The table: one embedded item per image, under exactly its key (no "+" for a space, "%20" kept).
    items = items_under(stack, f"s3://{bucket}/inv/")
    assert set(items) == {f"s3://{bucket}/{k}" for k in KEYS}
    dim = stack.names.dimension
    for k in KEYS:
        item = items[f"s3://{bucket}/{k}"]
        vec = stack.stored_vector(item)
        assert "error_code" not in item and vec is not None and vec.shape == (dim,)
    assert {unquote_plus(inventory_key(k)) for k in KEYS} == set(KEYS)


def summary_report_key(s3: Any, reports_bucket: str) -> str:
    """The run's SUCCEEDED_0.json (its ResultWriter prefix has the map run's id in it)."""
    listed = s3.list_objects_v2(Bucket=reports_bucket, Prefix="runs/inventory-e2e/")
    (key,) = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("/SUCCEEDED_0.json")]
    return str(key)
