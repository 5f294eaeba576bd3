"""Function configuration, read once from the environment (the contract in design.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from layer import Limits

DEFAULT_MODEL_DIR = "/opt/model"
DEFAULT_MAX_BATCH = 16  # images per API request: bounded so one request fits Lambda's time and memory


@dataclass(frozen=True)
class Settings:
    model_dir: str = DEFAULT_MODEL_DIR
    table_name: str = ""
    precision: str = "int8"
    limits: Limits = field(default_factory=Limits)
    max_batch: int = DEFAULT_MAX_BATCH
    # Failure records written at the item's pk (see handler.sink); off only for read-only experiments.
    record_failures: bool = True
    # The buckets the API's {"s3": ...} references may name (empty: none). The function's role may read more
    # than one caller should reach through it; this keeps the API from being a confused deputy.
    allowed_buckets: tuple[str, ...] = ()
    # Whether the API honours "store": true (turn off for a public API: callers then cannot write items).
    allow_store: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            model_dir=env.get("MODEL_DIR", DEFAULT_MODEL_DIR),
            table_name=env.get("TABLE_NAME", ""),
            precision=env.get("MODEL_PRECISION", "int8"),
            limits=Limits.from_env(dict(env)),
            max_batch=int(env.get("MAX_BATCH_IMAGES", DEFAULT_MAX_BATCH)),
            record_failures=_flag(env.get("RECORD_FAILURES", "true")),
            allowed_buckets=tuple(b.strip() for b in env.get("ALLOWED_S3_BUCKETS", "").split(",") if b.strip()),
            allow_store=_flag(env.get("API_ALLOW_STORE", "true")),
        )


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off")
