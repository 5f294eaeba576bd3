"""INIT-time singletons: the engine and the boto3 clients, built once per container and reused by events.

Under Lambda (and the Runtime Interface Emulator) the function modules call ``current()`` at import, so the
model loads during INIT, not in the first request. Elsewhere (tests, the CLI) it is built on first use, and
tests may ``install`` a runtime with a fake engine or stubbed clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import botocore.session
from botocore.config import Config

from handler import sinks, vector_index
from handler.errors import ModelUnsound
from handler.observability import logger, record_embedding, record_self_check, subsegment
from handler.settings import Settings
from handler.sinks import Sink
from handler.vector_index import VectorIndex
from layer import Embedder, Embedding, Limits, ModelDirError
from layer.manifest import Manifest
from layer.selfcheck import SelfCheck
from layer.tags import Tagger

# "standard" retries throttling and 5xx with backoff (max_attempts=3 retries: 4 attempts in all); short
# timeouts so that an unreachable endpoint fails the record (and SQS retries it) long before the function
# times out.
BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=15,
    max_pool_connections=10,
)


class Engine(Protocol):
    model_id: str
    dim: int
    manifest: Manifest
    limits: Limits

    def embed_one(self, data: bytes) -> Embedding: ...

    def embed_text(self, text: str) -> Embedding: ...

    def cpu_report(self) -> dict[str, Any]: ...

    @property
    def self_check(self) -> SelfCheck | None: ...

    @property
    def tagger(self) -> Tagger | None: ...


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    s3: Any
    sink: Sink
    index: VectorIndex | None = None  # the vector index that follows the table (VECTOR_BUCKET/VECTOR_INDEX)

    def embed_image(self, data: bytes) -> Embedding:
        """The engine's image call as both functions make it: its own trace subsegment, its stage timings
        counted; raises ``ImageError`` for bad input."""
        with subsegment("engine.embed_one"):
            emb = self.engine.embed_one(data)
        record_embedding(emb)
        return emb

    def require_sound_model(self) -> None:
        """Raise ``ModelUnsound`` if the model failed its self-check at INIT: no vector may be written (or
        returned) by this sandbox."""
        check = self.engine.self_check
        if check is not None and not check.passed:
            raise ModelUnsound(f"the model failed its self-check on this CPU: {check.reason}")

    @classmethod
    def from_env(cls, settings: Settings | None = None, *, text: bool = False) -> Runtime:
        settings = settings or Settings.from_env()
        engine = Embedder.from_dir(
            settings.model_dir,
            precision="fp32" if settings.precision == "fp32" else "int8",
            settings=settings.engine,
            text=text,
        )
        check_dimension(settings, engine.dim)
        check_trained(settings, engine.manifest)
        # Which CPU Lambda gave this sandbox, the int8 kernel path it takes and whether the build's gate
        # covered that path: the first thing to look at when vectors differ between invocations.
        logger.info("model loaded", extra={"model": engine.model_id, "cpu": engine.cpu_report()})
        record_self_check(engine.self_check)
        # botocore's session, not boto3's: the clients are the same objects, and not importing boto3 (with
        # s3transfer) saves ~40-80 ms of INIT at 1,024 MB. Region, credentials and AWS_ENDPOINT_URL* come
        # from the environment exactly as for boto3.
        session = botocore.session.get_session()
        s3 = session.create_client("s3", config=BOTO_CONFIG)
        sink = sinks.connect(settings, session, BOTO_CONFIG)
        index = vector_index.connect(settings, session, BOTO_CONFIG, model=engine.model_id)
        return cls(settings=settings, engine=engine, s3=s3, sink=sink, index=index)


def check_dimension(settings: Settings, dim: int) -> None:
    """The deployment's dimension (the vector index's, ``EMBEDDING_DIM``) must be the model's: a mismatch is a
    deployment error, refused at INIT before any vector is written."""
    if settings.embedding_dim is not None and settings.embedding_dim != dim:
        raise ModelDirError(
            f"the model in {settings.model_dir} makes {dim}-d vectors, but this deployment was made for "
            f"{settings.embedding_dim}-d (EMBEDDING_DIM, the template parameter EmbeddingDimension, which sizes the "
            f"vector index): deploy with --parameter-overrides EmbeddingDimension={dim}"
        )


def untrained(manifest: Manifest) -> str | None:
    """Why the model's vectors may mean nothing (random weights, or a tower that never passed its gate), or
    None for a trained, gated model."""
    if manifest.random_init:
        return f"{manifest.model_id} has random weights (built from random-init: the offline fallback)"
    if not manifest.gated:
        return f"{manifest.model_id} has a tower that did not pass its accuracy gate"
    return None


def check_trained(settings: Settings, manifest: Manifest) -> None:
    """Refuse an untrained or ungated model at INIT unless ``ALLOW_UNTRAINED_MODEL`` says so; when allowed,
    say it loudly in every INIT log (and ``GET /model``)."""
    why = untrained(manifest)
    if why is None:
        return
    if not settings.allow_untrained:
        raise ModelDirError(
            f"refusing to serve an untrained model: {why}. Build the real checkpoint (make model), or deploy with "
            "--parameter-overrides AllowUntrainedModel=true (ALLOW_UNTRAINED_MODEL=true) to run it anyway"
        )
    logger.warning("UNTRAINED MODEL: its vectors carry no meaning (AllowUntrainedModel=true)", extra={"why": why})


_current: Runtime | None = None


_with_text = False  # the API function's process asks for the text tower (require_text), the S3 one does not


def require_text() -> None:
    """Load the text tower with the engine (if the model has one): called at import by the API function."""
    global _with_text  # noqa: PLW0603 - a per-process choice, made before the singleton is built
    _with_text = True


def current() -> Runtime:
    global _current  # noqa: PLW0603 - the per-container singleton is the point
    if _current is None:
        _current = Runtime.from_env(text=_with_text)
    return _current


def install(runtime: Runtime | None) -> Runtime | None:
    """Replace the singleton (tests); returns the previous one."""
    global _current
    previous, _current = _current, runtime
    return previous
