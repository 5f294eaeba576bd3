"""The S3 function's cost per image (bench/cost.py), its arithmetic on tiny inputs: the other services priced
from a run's request counts, the stages from the function's metrics, the table (the measurement itself runs
against the image in tests/container/test_measurements.py)."""

from __future__ import annotations

import json

import pytest

from bench.cost import PRICES, S3_VECTORS_MIN_PUT_BYTES, STAGES, other_usd, stage_ms_per_image

GB = 2**30


def test_every_service_is_priced_from_the_requests_counted() -> None:
    ops = {"PutItem": 100.0, "GetItem": 100.0, "BatchGetItem.keys": 20.0, "GET": 100.0, "HEAD": 50.0,
           "PutVectors": 10.0, "PutVectors.bytes": 100.0 * 2400}  # fmt: skip
    got = other_usd(ops, images=100, write_units=1.0)
    assert got["dynamodb_write"] == pytest.approx(PRICES["dynamodb_write_unit"])  # one write unit per image
    assert got["dynamodb_read"] == pytest.approx(1.2 * PRICES["dynamodb_read_unit"])
    assert got["s3_get_head"] == pytest.approx(1.5 * PRICES["s3_get"])
    assert got["sqs"] == pytest.approx(1.2 * PRICES["sqs_request"])  # a send per object, receive + delete per 10
    # 10 PutVectors of 24 KB each are billed at the 128 KB minimum each
    assert got["s3_vectors_put"] == pytest.approx(10 * S3_VECTORS_MIN_PUT_BYTES / GB * 0.20 / 100)


def test_large_puts_are_billed_by_their_bytes_and_no_index_costs_nothing() -> None:
    big = other_usd({"PutVectors": 1.0, "PutVectors.bytes": 4.0 * S3_VECTORS_MIN_PUT_BYTES}, images=200, write_units=2)
    assert big["s3_vectors_put"] == pytest.approx(4 * S3_VECTORS_MIN_PUT_BYTES / GB * 0.20 / 200)
    none = other_usd({"PutItem": 10.0}, images=10, write_units=2.0, batch_size=5)
    assert none["s3_vectors_put"] == 0.0 and none["dynamodb_write"] == pytest.approx(2 * PRICES["dynamodb_write_unit"])
    assert none["sqs"] == pytest.approx(1.4 * PRICES["sqs_request"])


def test_stage_times_are_the_mean_per_image_after_the_warm_up() -> None:
    def blob(**metrics: object) -> str:
        return json.dumps({"_aws": {"CloudWatchMetrics": []}, **metrics})

    logs = "\n".join([
        "START RequestId: a",
        blob(InferenceTime=[999.0], DecodeTime=[999.0]),  # the warm-up invoke: skipped
        blob(InferenceTime=[100.0, 110.0], DecodeTime=[10.0, 20.0], S3ReadTime=40.0),
        "not json",
        blob(InferenceTime=[120.0], DecodeTime=[30.0], ImagesEmbedded=[1.0]),
    ])  # fmt: skip
    assert stage_ms_per_image(logs, skip_invokes=1) == {"S3ReadTime": 40.0, "DecodeTime": 20.0, "InferenceTime": 110.0}
    assert set(stage_ms_per_image(logs, 0)) <= set(STAGES)
