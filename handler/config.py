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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            model_dir=env.get("MODEL_DIR", DEFAULT_MODEL_DIR),
            table_name=env.get("TABLE_NAME", ""),
            precision=env.get("MODEL_PRECISION", "int8"),
            limits=Limits.from_env(dict(env)),
            max_batch=int(env.get("MAX_BATCH_IMAGES", DEFAULT_MAX_BATCH)),
            record_failures=env.get("RECORD_FAILURES", "true").lower() not in ("0", "false", "no"),
        )
