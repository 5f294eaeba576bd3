"""The backfill, locally: 1,000 listed objects (images, non-images, objects deleted while the run goes,
objects a live event embedded first) → the template's Distributed Map, emulated over moto
(infra/local/distributed_map.py) → two S3 functions under the RIE → the items. DynamoDB throttles a
stretch of requests meanwhile, so that batches fail transiently and the map's Retry runs them again."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from infra.local.distributed_map import LocalDistributedMap, MapDefinition, MapRunCounts
from infra.local.faults import FaultProxy, Mode
from infra.local.moto_stack import MotoStack, StackNames
from infra.local.rie import LocalFunction
from layer.manifest import Manifest
from tests.integration.conftest import cli_embeddings, cosine, items_under

PREFIX = "backfill/"
REPORTS = "clip-backfill-reports"
N_IMAGES, N_NOT_IMAGES = 950, 50
PRE_EMBEDDED = range(0, 20)  # image indices a live S3 event embedded before the backfill
DELETED = range(100, 130)  # image indices deleted once their batch has started


def tiny_jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(model_dir: Path) -> Iterator[MotoStack]:
    with MotoStack(names=StackNames(visibility_timeout=30, dimension=Manifest.read(model_dir).dim)).start() as s:
        s.client("s3").create_bucket(Bucket=REPORTS)
        yield s


class ThrottleStretch:
    """DynamoDB throttles every request from the 400th to the 470th: longer than botocore's 4 attempts, so
    the records in flight then fail as TransientError and their batches are retried by the map."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> Mode:
        self.n += 1
        return "throttle" if 400 <= self.n < 470 else "pass"


@pytest.fixture(scope="module")
def ddb_proxy(stack: MotoStack) -> Iterator[FaultProxy]:
    with FaultProxy(target=stack.endpoint, chooser=ThrottleStretch()).start() as proxy:
        yield proxy


@pytest.fixture(scope="module")
def functions(stack: MotoStack, ddb_proxy: FaultProxy, model_dir: Path) -> Iterator[list[LocalFunction]]:
    env = stack.function_env(
        MODEL_DIR=str(model_dir),
        AWS_ENDPOINT_URL_DYNAMODB=ddb_proxy.endpoint,
        POWERTOOLS_METRICS_NAMESPACE="ClipLambdaIT",
        CLIP_LAMBDA_THREADS="1",  # two functions share the two cores
    )
    with ExitStack() as running:
        yield [
            running.enter_context(LocalFunction("handler.s3.lambda_handler", env=env, name=f"clip-backfill-{n}"))
            for n in "ab"
        ]


def key(i: int, image: bool = True) -> str:
    return f"{PREFIX}{'img' if image else 'doc'}-{i:04d}.{'jpg' if image else 'bin'}"


def metric_total(logs: str, name: str) -> int:
    """A count metric summed over the functions' EMF lines."""
    total = 0
    for line in logs.splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            value = json.loads(line)[name]
            total += int(sum(value) if isinstance(value, list) else value)
    return total


def written(functions: list[LocalFunction]) -> int:
    """ObjectsEmbedded: items written with an embedding (a write that failed is not counted)."""
    return sum(metric_total(f.logs(), "ObjectsEmbedded") for f in functions)


def engine_runs(functions: list[LocalFunction]) -> int:
    """ImagesEmbedded: times the engine embedded an image (again after a write that failed transiently)."""
    return sum(metric_total(f.logs(), "ImagesEmbedded") for f in functions)


def test_backfill_embeds_every_listed_image_once(
    stack: MotoStack, functions: list[LocalFunction], ddb_proxy: FaultProxy, model_dir: Path, tmp_path: Path
) -> None:
    s3 = stack.client("s3")
    bucket = stack.names.bucket
    for i in range(N_IMAGES):
        s3.put_object(Bucket=bucket, Key=key(i), Body=tiny_jpeg(i), ContentType="image/jpeg")
    for i in range(N_NOT_IMAGES):
        s3.put_object(Bucket=bucket, Key=key(i, image=False), Body=b"%PDF-1.4 not an image " + bytes([i]))
    live = {"Records": []}  # the live path first, for a few objects: their backfill outcome is "duplicate"
    for i in PRE_EMBEDDED:
        head = s3.head_object(Bucket=bucket, Key=key(i))
        live["Records"].append(
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-29T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {
                        "key": key(i),
                        "eTag": head["ETag"].strip('"'),
                        "size": head["ContentLength"],
                        "sequencer": f"{i + 1:016X}",
                    },
                },
            }
        )
    assert functions[0].invoke(live).payload == {"outcomes": ["embedded"] * len(PRE_EMBEDDED)}
    written_before, runs_before = written(functions), engine_runs(functions)
    assert written_before == runs_before == len(PRE_EMBEDDED)

    deleted = {key(i) for i in DELETED}

    def delete_meanwhile(batch: list[dict[str, Any]]) -> None:
        for it in batch:
            if it["Key"] in deleted:
                s3.delete_object(Bucket=bucket, Key=it["Key"])

    seen: list[MapRunCounts] = []
    runner = LocalDistributedMap(s3, bucket, REPORTS, [f.invoke for f in functions])
    execution = {"prefix": PREFIX, "batch_size": 25, "concurrency": 2, "model_id": None, "keys_url_encoded": False}
    result = runner.run(execution, name="it", before_batch=delete_meanwhile, progress=seen.append)

    # The run: every listed object reached the function, the throttled batches were retried, none failed.
    counts = result.counts
    assert result.status == "SUCCEEDED"
    assert (counts.total, counts.succeeded, counts.failed, counts.pending, counts.running) == (1000, 1000, 0, 0, 0)
    assert counts.batches == 40 and counts.retries >= 1 and ddb_proxy.counts["throttle"] == 70
    assert seen and seen[-1].succeeded == 1000
    # The index: one PutVectors per invocation at most (its batch's vectors together, ≤ 500 a request), plus
    # the live invoke's; never one per object.
    assert 1 <= stack.vector_calls["PutVectors"] <= 1 + counts.batches + counts.retries

    # Per object, the outcome of the batch's last (successful) attempt, from the ResultWriter report.
    report = json.loads(s3.get_object(Bucket=REPORTS, Key=result.report_prefix + "SUCCEEDED_0.json")["Body"].read())
    outcomes = {r["uri"]: (r["outcome"], r["code"]) for batch in report for r in batch["Output"]["results"]}
    assert len(outcomes) == 1000
    uri = f"s3://{bucket}/"
    for i in range(N_IMAGES):
        got = outcomes[uri + key(i)]
        if i in DELETED:
            assert got == ("gone", None)
        elif i in PRE_EMBEDDED:
            assert got == ("duplicate", None)
        else:  # "duplicate" where a retried batch had already embedded it on an earlier attempt
            assert got[0] in ("embedded", "duplicate") and got[1] is None
    assert all(outcomes[uri + key(i, image=False)] == ("failed", "not_an_image") for i in range(N_NOT_IMAGES))

    # The table: one item per object still there, embedded or recorded as failed; nothing for the deleted.
    items = items_under(stack, uri + PREFIX)
    assert set(items) == {uri + key(i) for i in range(N_IMAGES) if i not in DELETED} | {
        uri + key(i, image=False) for i in range(N_NOT_IMAGES)
    }
    for i in range(N_IMAGES):
        if i not in DELETED:
            assert "embedded_at" in items[uri + key(i)] and "error_code" not in items[uri + key(i)]
    assert Counter(it["error_code"]["S"] for it in items.values() if "error_code" in it) == {"not_an_image": 50}
    # Written once each: no image is reported written twice. A write that applied in an attempt that then
    # failed (the index write or the item's re-read throttled) is reported "duplicate" by the retry, so the
    # count may fall short by what the retried batches held. The engine ran again only where a write had
    # failed transiently (the embedding is not kept across a retry).
    expected = N_IMAGES - len(PRE_EMBEDDED) - len(DELETED)
    print(f"backfill: {counts}, written {written(functions) - written_before}, engine runs "
          f"{engine_runs(functions) - runs_before}, {result.seconds:.0f} s")  # fmt: skip
    assert expected - counts.retries * 25 <= written(functions) - written_before <= expected
    extra_runs = engine_runs(functions) - runs_before - expected
    assert 0 <= extra_runs <= counts.retries * 25
    # The vectors are the engine's: a few against `clip-lambda embed` on the same bytes.
    sample = [3, 500, 949]
    files = []
    for i in sample:
        (tmp_path / f"{i}.jpg").write_bytes(tiny_jpeg(i))
        files.append(tmp_path / f"{i}.jpg")
    ref = cli_embeddings(model_dir, files)
    for i, f in zip(sample, files, strict=True):
        vec = stack.stored_vector(items[uri + key(i)])
        assert cosine(vec, ref[str(f)]) > 0.99999

    # Resumable: a re-run finds every object done (duplicate, or its failure recorded) and embeds nothing.
    before = engine_runs(functions), written(functions)
    again = runner.run({**execution, "batch_size": 100}, name="rerun")
    assert again.status == "SUCCEEDED" and again.counts.succeeded == N_IMAGES - len(DELETED) + N_NOT_IMAGES
    report = json.loads(s3.get_object(Bucket=REPORTS, Key=again.report_prefix + "SUCCEEDED_0.json")["Body"].read())
    assert Counter(r["outcome"] for batch in report for r in batch["Output"]["results"]) == {
        "duplicate": N_IMAGES - len(DELETED) + N_NOT_IMAGES
    }
    assert (engine_runs(functions), written(functions)) == before


def test_a_run_for_another_model_fails_its_batches_and_writes_nothing(
    stack: MotoStack, functions: list[LocalFunction]
) -> None:
    s3 = stack.client("s3")
    for i in range(10):
        s3.put_object(Bucket=stack.names.bucket, Key=f"other-model/{i}.jpg", Body=tiny_jpeg(i))
    runner = LocalDistributedMap(s3, stack.names.bucket, REPORTS, [f.invoke for f in functions])
    execution = {"prefix": "other-model/", "batch_size": 5, "concurrency": 1, "model_id": "openai/other",
                 "keys_url_encoded": False}  # fmt: skip
    result = runner.run(execution, name="wrong-model")
    assert result.counts.failed == result.counts.total == 10 and result.counts.retries == 0  # not retried
    assert result.status == "SUCCEEDED"  # ToleratedFailurePercentage 100: failed batches are reported, not fatal
    assert {f["Error"] for f in result.failed} == {"ModelMismatch"}
    assert not items_under(stack, f"s3://{stack.names.bucket}/other-model/")
    assert all(re.search(r"expects 'openai/other'", f["Cause"]) for f in result.failed)


def test_the_emulation_reads_the_templates_map() -> None:
    """Batch input, retry rules and item readers come from template.yaml, not from a copy."""
    listing = MapDefinition.from_template("FromListing")
    csv = MapDefinition.from_template("FromCsv")
    inventory = MapDefinition.from_template("FromInventory")
    assert listing.batch_input == csv.batch_input == inventory.batch_input
    assert listing.retry == csv.retry == inventory.retry
    assert inventory.item_reader["ReaderConfig"] == {"InputType": "MANIFEST"}
    assert listing.batch_input["bucket"] == "${ImagesBucket}" and listing.batch_input["model_id.$"] == "$.model_id"
    (rule,) = listing.retry
    assert "TransientError" in rule.errors and "ModelMismatch" not in rule.errors and rule.max_attempts == 6
    assert listing.tolerated_failure_percentage == 100
