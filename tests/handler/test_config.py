"""Settings.from_env: every variable of the function configuration contract, and the defaults."""

from __future__ import annotations

from handler.config import DEFAULT_MAX_BATCH, DEFAULT_MODEL_DIR, Settings
from layer.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.model_dir, s.table_name, s.precision, s.max_batch) == (DEFAULT_MODEL_DIR, "", "int8", DEFAULT_MAX_BATCH)
    assert (s.limits.max_bytes, s.limits.max_pixels) == (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS)
    assert (s.record_failures, s.allow_store, s.allowed_buckets) == (True, True, ())


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
        }
    )
    assert (s.model_dir, s.table_name, s.precision, s.max_batch) == ("/m", "t", "fp32", 3)
    assert (s.limits.max_bytes, s.limits.max_pixels) == (1000, 2000)
    assert (s.record_failures, s.allow_store, s.allowed_buckets) == (False, False, ("photos", "archive"))


def test_flags_accept_the_usual_spellings() -> None:
    for off in ("false", "False", "0", "no", "off"):
        assert Settings.from_env({"RECORD_FAILURES": off}).record_failures is False
    for on in ("true", "1", "yes"):
        assert Settings.from_env({"API_ALLOW_STORE": on}).allow_store is True
