"""The local Distributed Map (infra/local/distributed_map.py): the template's Choice and Map states read as
Step Functions reads them (its item readers over S3 Inventory reports: test_s3_inventory.py; whole runs
against the S3 function: tests/integration/test_backfill.py)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.distributed_map import (
    ItemReaderFailed,
    MapDefinition,
    RetryRule,
    StatesError,
    batches,
    json_path,
    resolve_parameters,
    source_state,
)


@pytest.mark.parametrize(
    ("execution", "state"),
    [
        ({"prefix": ""}, "FromListing"),
        ({"manifest": {"input_type": "LISTING", "key": ""}}, "FromListing"),
        ({"manifest": {"input_type": "CSV", "key": "manifests/a.csv"}}, "FromCsv"),
        ({"manifest": {"input_type": "MANIFEST", "key": "inventory/x/manifest.json"}}, "FromInventory"),
        ({"manifest": {"key": "inventory/x/manifest.json"}}, "FromListing"),
        ({"manifest": {"input_type": "csv"}}, "FromListing"),  # StringEquals is case-sensitive
    ],
)
def test_the_templates_choice_picks_the_map_state(execution: dict[str, Any], state: str) -> None:
    assert source_state(execution) == state


def test_the_readers_are_the_templates() -> None:
    readers = {s: MapDefinition.from_template(s).item_reader for s in ("FromListing", "FromCsv", "FromInventory")}
    assert readers["FromInventory"]["ReaderConfig"] == {"InputType": "MANIFEST"}
    assert readers["FromInventory"]["Parameters"] == {"Bucket": "${ReportsBucket}", "Key.$": "$.manifest.key"}
    assert readers["FromCsv"]["ReaderConfig"]["InputType"] == "CSV"
    assert readers["FromListing"]["Resource"].endswith(":s3:listObjectsV2")
    assert issubclass(ItemReaderFailed, StatesError)


def test_a_reference_path_reads_fields_and_tells_a_missing_one_apart_from_null() -> None:
    doc = {"manifest": {"key": "k", "input_type": None}, "prefix": ""}
    assert json_path(doc, "$") is doc and json_path(doc, "$.manifest.key") == "k" and json_path(doc, "$.prefix") == ""
    assert json_path(doc, "$.manifest.input_type") is None
    assert json_path(doc, "$.manifest.nope") is json_path(doc, "$.prefix.deeper") is not None  # the missing marker
    with pytest.raises(NotImplementedError):
        json_path(doc, "manifest.key")


def test_parameters_take_paths_from_the_input_and_names_from_the_substitutions() -> None:
    got = resolve_parameters(
        {"Bucket": "${ReportsBucket}", "Key.$": "$.manifest.key", "Model.$": "$.model_id", "Fixed": 3},
        {"manifest": {"key": "inventory/m.json"}, "model_id": None},
        {"ReportsBucket": "reports"},
    )
    assert got == {"Bucket": "reports", "Key": "inventory/m.json", "Model": None, "Fixed": "3"}
    with pytest.raises(StatesError, match=r"\$\.manifest\.key.*could not be found"):  # fails the execution
        resolve_parameters({"Key.$": "$.manifest.key"}, {}, {})


def test_the_embed_tasks_retry_backs_off_as_the_template_says() -> None:
    rule = RetryRule(errors=("TransientError",), max_attempts=4, interval_s=2, backoff=3, max_delay_s=10)
    assert [rule.delay(n) for n in (1, 2, 3)] == [2, 6, 10]  # capped at MaxDelaySeconds
    assert RetryRule(("x",), 3, 1, 2).delay(4) == 8  # no cap
    definition = MapDefinition.from_template()
    assert definition.state == "FromListing" and definition.retry, "the template retries the Embed task"
    assert any("TransientError" in r.errors for r in definition.retry)
    assert 0 <= definition.tolerated_failure_percentage <= 100


def test_batches_keep_the_order_and_the_last_one_takes_the_rest() -> None:
    items = [{"Key": str(i)} for i in range(7)]
    assert [[it["Key"] for it in b] for b in batches(items, 3)] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert list(batches([], 3)) == []


def test_the_batch_input_is_what_the_function_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The template's BatchInput, resolved from an execution input: the S3 function's backfill entry
    (handler.events.from_backfill_batch) reads exactly these fields."""
    execution: dict[str, Any] = {"prefix": "", "batch_size": 5, "concurrency": 2, "model_id": "m",
                                 "keys_url_encoded": True,
                                 "manifest": {"input_type": "LISTING", "key": ""}}  # fmt: skip
    got = MapDefinition.from_template().resolve_batch_input(execution, {"ImagesBucket": "photos"})
    assert got == {"bucket": "photos", "model_id": "m", "keys_url_encoded": True}
    assert issubclass(ItemReaderFailed, StatesError) and source_state(execution) == "FromListing"
