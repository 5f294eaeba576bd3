"""The functions' settings: every environment variable they read, with its default, read once at INIT.

The engine's own variables (``MAX_IMAGE_*``, ``CLIP_LAMBDA_*``, Lambda's memory size) are ``layer.settings``;
``Settings.engine`` carries them so that the engine never reads the environment behind the functions' back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_lambda_powertools.shared.functions import strtobool

from handler import item
from layer import Limits
from layer.settings import IMAGE_MODEL_DIR, EngineSettings

# Environment variables (the configuration contract: docs/operations.md#environment).
MODEL_DIR = "MODEL_DIR"
MODEL_PRECISION = "MODEL_PRECISION"  # "int8" (default) | "fp32"
SINK = "SINK"  # a module of handler/sinks; default "dynamodb"
TABLE_NAME = "TABLE_NAME"
MAX_BATCH_IMAGES = "MAX_BATCH_IMAGES"
RECORD_FAILURES = "RECORD_FAILURES"
ALLOWED_S3_BUCKETS = "ALLOWED_S3_BUCKETS"
API_ALLOW_STORE = "API_ALLOW_STORE"
S3_PREFETCH = "S3_PREFETCH"
# The S3 Vectors index that follows the table (handler.vector_index); either empty: no index.
VECTOR_BUCKET = "VECTOR_BUCKET"
VECTOR_INDEX = "VECTOR_INDEX"
# The dimension the deployment was made for (template parameter EmbeddingDimension: the vector index's); empty:
# not checked. INIT refuses a model of another dimension (handler.runtime).
EMBEDDING_DIM = "EMBEDDING_DIM"
# "true": run a model that is untrained (random-init) or ungated anyway (template AllowUntrainedModel); else
# INIT refuses it (handler.runtime), as the deploy check does.
ALLOW_UNTRAINED_MODEL = "ALLOW_UNTRAINED_MODEL"
# Where the item's vector goes (template ItemVector): "full" | "float16" | "none" (only in the vector index) |
# "auto" (default: "none" with an index, else "full"); see handler.item.
ITEM_VECTOR = "ITEM_VECTOR"
# Read by Powertools itself (we only default them) and by the runtime client.
SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"  # set by Lambda and by the Runtime Interface Emulator
TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"  # the template sets it from its Tracing parameter
TASK_ROOT = "LAMBDA_TASK_ROOT"  # set by Lambda (and by our image)
SAM_LOCAL = "AWS_SAM_LOCAL"  # set by `sam local`

DEFAULT_SERVICE = "clip-lambda"
DEFAULT_NAMESPACE = "ClipLambda"
DEFAULT_MAX_BATCH = 16  # images per API request: bounded so one request fits Lambda's time and memory
# Objects the S3 function reads ahead while it embeds (handler.prefetch): 2 covers S3's first-byte latency at
# every memory size measured; each holds at most MAX_IMAGE_BYTES. 0 reads each object in turn.
DEFAULT_PREFETCH = 2


@dataclass(frozen=True)
class Settings:
    model_dir: str = IMAGE_MODEL_DIR
    precision: str = "int8"
    sink: str = "dynamodb"
    table_name: str = ""
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_batch: int = DEFAULT_MAX_BATCH
    # Failure records written at the item's pk (see handler.item); off only for read-only experiments.
    record_failures: bool = True
    # The buckets the API's {"s3": ...} references may name (empty: none). The function's role may read more
    # than one caller should reach through it; this keeps the API from being a confused deputy.
    allowed_buckets: tuple[str, ...] = ()
    # Whether the API honours "store": true (turn off for a public API: callers then cannot write items).
    allow_store: bool = True
    prefetch: int = DEFAULT_PREFETCH
    vector_bucket: str = ""
    vector_index: str = ""
    embedding_dim: int | None = None
    allow_untrained: bool = False
    item_vector: str = "auto"

    @property
    def indexed(self) -> bool:
        return bool(self.vector_bucket and self.vector_index)

    @property
    def item_vector_format(self) -> str:
        """``item_vector`` resolved: "auto" keeps the vector out of the item when an index holds it (the item
        then fits one DynamoDB write unit: 368 B against 2,425 B for 512 float32), in the item otherwise."""
        if self.item_vector == "auto":
            return item.NONE if self.indexed else item.FULL
        return self.item_vector

    @property
    def limits(self) -> Limits:
        return self.engine.limits

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            model_dir=env.get(MODEL_DIR, IMAGE_MODEL_DIR),
            precision=env.get(MODEL_PRECISION, "int8"),
            sink=env.get(SINK, "dynamodb"),
            table_name=env.get(TABLE_NAME, ""),
            engine=EngineSettings.from_env(env),
            max_batch=int(env.get(MAX_BATCH_IMAGES, DEFAULT_MAX_BATCH)),
            record_failures=_flag(env.get(RECORD_FAILURES, "true")),
            allowed_buckets=tuple(b.strip() for b in env.get(ALLOWED_S3_BUCKETS, "").split(",") if b.strip()),
            allow_store=_flag(env.get(API_ALLOW_STORE, "true")),
            prefetch=max(0, int(env.get(S3_PREFETCH, DEFAULT_PREFETCH))),
            vector_bucket=env.get(VECTOR_BUCKET, "").strip(),
            vector_index=env.get(VECTOR_INDEX, "").strip(),
            embedding_dim=int(env[EMBEDDING_DIM]) if env.get(EMBEDDING_DIM, "").strip() else None,
            allow_untrained=_flag(env.get(ALLOW_UNTRAINED_MODEL, "false")),
            item_vector=_item_vector(env.get(ITEM_VECTOR, "auto"), indexed=_indexed(env)),
        )


def service_name() -> str:
    return os.environ.get(SERVICE_NAME, DEFAULT_SERVICE)


def metrics_namespace() -> str:
    return os.environ.get(METRICS_NAMESPACE, DEFAULT_NAMESPACE)


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Powertools' own rule for its Tracer (off when ``POWERTOOLS_TRACE_DISABLED`` is true, outside Lambda
    and under ``sam local``), decided before the Tracer exists: the X-Ray SDK it would import costs ~100 ms
    of INIT at 1,024 MB and is only imported when tracing will record something."""
    env = os.environ if environ is None else environ
    if strtobool(env.get(TRACE_DISABLED, "false")):
        return False
    return bool(env.get(TASK_ROOT)) and not env.get(SAM_LOCAL)


def in_lambda() -> bool:
    """True inside Lambda or the RIE (both set the Runtime API address for the runtime client)."""
    return bool(os.environ.get(RUNTIME_API))


def _indexed(env: Mapping[str, str]) -> bool:
    return bool(env.get(VECTOR_BUCKET, "").strip() and env.get(VECTOR_INDEX, "").strip())


def _item_vector(value: str, indexed: bool) -> str:
    fmt = value.strip().lower() or "auto"
    if fmt not in (*item.VECTOR_FORMATS, "auto"):
        raise ValueError(f"{ITEM_VECTOR}={value!r}: choose one of full, float16, none, auto")
    if fmt == item.NONE and not indexed:
        raise ValueError(
            f"{ITEM_VECTOR}=none keeps vectors only in the vector index, and no index is configured "
            f"({VECTOR_BUCKET}/{VECTOR_INDEX}): the vectors would be lost; use full or float16"
        )
    return fmt


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off")
