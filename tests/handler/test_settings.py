"""Settings.from_env: every variable of the function configuration contract, and the defaults."""

from __future__ import annotations

import pytest

from handler import settings, sinks
from handler.settings import DEFAULT_MAX_BATCH, Settings
from layer.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from layer.settings import IMAGE_MODEL_DIR


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.model_dir, s.table_name, s.precision, s.max_batch) == (IMAGE_MODEL_DIR, "", "int8", DEFAULT_MAX_BATCH)
    assert (s.limits.max_bytes, s.limits.max_pixels) == (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS)
    assert (s.record_failures, s.allow_store, s.allowed_buckets, s.sink) == (True, True, (), "dynamodb")


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "MODEL_DIR": "/m",
            "TABLE_NAME": "t",
            "MODEL_PRECISION": "fp32",
            "MAX_BATCH_IMAGES": "3",
            "MAX_IMAGE_BYTES": "1000",
            "MAX_IMAGE_PIXELS": "2000",
            "RECORD_FAILURES": "false",
            "ALLOWED_S3_BUCKETS": " photos , archive,,",
            "API_ALLOW_STORE": "0",
            "SINK": "other",
            "CLIP_LAMBDA_THREADS": "2",
        }
    )
    assert (s.model_dir, s.table_name, s.precision, s.max_batch) == ("/m", "t", "fp32", 3)
    assert (s.limits.max_bytes, s.limits.max_pixels) == (1000, 2000)
    assert (s.record_failures, s.allow_store, s.allowed_buckets) == (False, False, ("photos", "archive"))
    assert (s.sink, s.engine.threads) == ("other", 2)  # the engine's variables ride along in Settings.engine


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "from-the-environment")
    monkeypatch.setenv("MAX_BATCH_IMAGES", "5")
    s = Settings.from_env()
    assert (s.table_name, s.max_batch) == ("from-the-environment", 5)


def test_flags_accept_the_usual_spellings() -> None:
    for off in ("false", "False", "0", "no", "off"):
        assert Settings.from_env({"RECORD_FAILURES": off}).record_failures is False
    for on in ("true", "1", "yes"):
        assert Settings.from_env({"API_ALLOW_STORE": on}).allow_store is True


def test_an_unknown_sink_is_refused_at_init_with_the_choices() -> None:
    with pytest.raises(ValueError, match="dynamodb"):
        sinks.connect(Settings(sink="nosuch"), session=None, client_config=None)
    assert "dynamodb" in sinks.available()


def test_private_modules_of_the_sinks_package_are_not_sinks(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared helper module (``_name.py``) next to the sinks is not offered as a SINK."""
    (tmp_path / "_shared.py").write_text("")
    (tmp_path / "other.py").write_text("")
    monkeypatch.setattr(sinks, "__path__", [*sinks.__path__, str(tmp_path)])
    assert sinks.available() == ["dynamodb", "other"]


def test_observability_names_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API", raising=False)
    assert (settings.service_name(), settings.metrics_namespace(), settings.in_lambda()) == (
        "clip-lambda",
        "ClipLambda",
        False,
    )
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "svc")
    assert settings.in_lambda() and settings.service_name() == "svc"


def test_item_vector_defaults_to_lean_with_an_index_and_full_without() -> None:
    from handler import item

    indexed = {"VECTOR_BUCKET": "vb", "VECTOR_INDEX": "images"}
    assert Settings.from_env(indexed).item_vector_format == item.NONE
    assert Settings.from_env({}).item_vector_format == item.FULL
    assert Settings.from_env({**indexed, "ITEM_VECTOR": "Float16"}).item_vector_format == item.FLOAT16
    assert Settings.from_env({"ITEM_VECTOR": "full"}).item_vector_format == item.FULL


def test_item_vector_none_without_an_index_is_refused_at_init() -> None:
    with pytest.raises(ValueError, match="no index is configured"):
        Settings.from_env({"ITEM_VECTOR": "none"})
    with pytest.raises(ValueError, match="choose one of full, float16, none, auto"):
        Settings.from_env({"ITEM_VECTOR": "half"})
