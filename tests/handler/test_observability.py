"""The functions' Logger, Metrics and Tracer (handler.observability): the EMF blobs the alarms and the
measurements read, and the provider that records nothing while tracing is off."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from handler import observability
from handler.observability import UntracedProvider
from layer import Embedding
from layer.embedding import Timings
from layer.selfcheck import SelfCheck, TowerCheck


def test_the_failure_metric_is_in_the_functions_namespace(capsys, monkeypatch) -> None:
    """EmbedFailures goes to the same namespace as every other metric, also where the environment does not
    name one (the default namespace applies)."""
    from handler import observability

    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    observability.record_failure("not_an_image")
    [blob] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "EmbedFailures" in x]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == observability.NAMESPACE
    assert blob["code"] == "not_an_image"


def test_untraced_provider_records_nothing_and_passes_errors_through() -> None:
    provider = UntracedProvider()
    with provider.in_subsegment("## x") as seg:
        seg.put_annotation("k", "v")
        seg.put_metadata("k", {"a": 1})
    with pytest.raises(KeyError), provider.in_subsegment("## y"):
        raise KeyError("kept")


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.startswith('{"_aws"')]


@pytest.fixture
def unflushed() -> Iterator[Callable[[], dict[str, Any]]]:
    """The metrics added outside a handler (which flushes them), from this test alone."""
    observability.metrics.clear_metrics()
    yield lambda: dict(observability.metrics.metric_set)
    observability.metrics.clear_metrics()


def test_a_failed_self_check_is_its_own_metric_and_an_error_log(capsys, logs) -> None:
    """INIT: SelfCheckTime always, ModelSelfCheckFailed (the alarm's metric) and an error line only on failure,
    each in its own blob in the functions' namespace (flushed at once: INIT runs outside any invocation)."""
    failed = SelfCheck(passed=False, towers=(TowerCheck("image", False, reason="cosine 0.5"),), ms=12.5)
    observability.record_self_check(None)
    assert emf(capsys.readouterr().out) == []
    observability.record_self_check(SelfCheck(passed=True, towers=(TowerCheck("image", True),), ms=3.0))
    [timing] = emf(capsys.readouterr().out)
    assert timing["SelfCheckTime"] == [3.0] and "ModelSelfCheckFailed" not in timing
    assert [x for x in logs() if x["level"] == "ERROR"] == []
    observability.record_self_check(failed)
    timing, alarm = emf(capsys.readouterr().out)
    assert timing["SelfCheckTime"] == [12.5] and alarm["ModelSelfCheckFailed"] == [1.0]
    for blob in (timing, alarm):
        assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == observability.NAMESPACE
        assert blob["service"] == observability.SERVICE
    [error] = [x for x in logs() if x["level"] == "ERROR"]
    assert error["self_check"]["towers"][0]["reason"] == "cosine 0.5"


def test_an_embedding_counts_one_image_and_the_time_of_each_stage(unflushed) -> None:
    emb = Embedding(vector=np.ones(4, np.float32) / 2, norm=1.0, model="m",
                    timings=Timings(decode_ms=1.5, preprocess_ms=2.5, inference_ms=3.5))  # fmt: skip
    observability.record_embedding(emb)
    observability.count("IndexRepairs", 2)
    got = unflushed()
    assert {k: (v["Unit"], v["Value"]) for k, v in got.items()} == {
        "ImagesEmbedded": ("Count", [1.0]),
        "DecodeTime": ("Milliseconds", [1.5]),
        "PreprocessTime": ("Milliseconds", [2.5]),
        "InferenceTime": ("Milliseconds", [3.5]),
        "IndexRepairs": ("Count", [2.0]),
    }


def test_timed_adds_the_blocks_milliseconds_even_when_it_raises(unflushed, monkeypatch) -> None:
    clock = iter([10.0, 10.25])
    monkeypatch.setattr(observability.time, "perf_counter", lambda: next(clock))
    with pytest.raises(KeyError), observability.timed("S3ReadTime"):
        raise KeyError("kept")
    assert unflushed()["S3ReadTime"]["Value"] == [250.0] and unflushed()["S3ReadTime"]["Unit"] == "Milliseconds"


def test_a_subsegment_passes_the_blocks_errors_through() -> None:
    with pytest.raises(ValueError, match="kept"), observability.subsegment("s3.get_object"):
        raise ValueError("kept")
