"""Request and response shapes of the HTTP API (pydantic: they validate input and feed the OpenAPI doc)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from layer import Embedding


class ImageRef(BaseModel):
    """One image of a JSON request: inline base64 ``data`` or an ``s3`` reference, exactly one of them."""

    model_config = ConfigDict(extra="forbid")
    data: str | None = Field(default=None, description="The image file, base64-encoded")
    s3: str | None = Field(default=None, description="s3://bucket/key of an image the function may read")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        if (self.data is None) == (self.s3 is None):
            raise ValueError('each image needs exactly one of "data" or "s3"')
        return self


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[ImageRef] = Field(min_length=1, description="Up to MAX_BATCH_IMAGES (default 16) images")
    store: bool = Field(
        default=False,
        description="Also write the DynamoDB item for each s3 reference, as the S3 function does",
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class EmbeddingOut(BaseModel):
    model: str
    dim: int
    embedding: list[float] = Field(description="Unit-length vector (L2 norm 1)")
    norm: float = Field(description="L2 norm before normalisation: raw CLIP features = embedding * norm")
    width: int
    height: int

    @classmethod
    def of(cls, emb: Embedding) -> EmbeddingOut:
        return cls(**embedding_fields(emb))


class BatchItem(BaseModel):
    """A result in request order: an embedding, or the error for that image alone."""

    index: int
    model: str | None = None
    dim: int | None = None
    embedding: list[float] | None = None
    norm: float | None = None
    width: int | None = None
    height: int | None = None
    s3: str | None = None
    stored: bool | None = Field(default=None, description="With store=true: whether the item was written")
    status: int | None = Field(default=None, description="HTTP status this error would have alone")
    error: ErrorBody | None = None

    @classmethod
    def embedded(cls, index: int, emb: Embedding, s3: str | None = None) -> BatchItem:
        return cls(index=index, s3=s3, **embedding_fields(emb))


class BatchResponse(BaseModel):
    model: str
    dim: int
    results: list[BatchItem]


class Health(BaseModel):
    status: str
    model: str
    dim: int


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def embedding_fields(emb: Embedding) -> dict[str, Any]:
    """The JSON fields of an embedding, the same in a single answer and in a batch item."""
    return {
        "model": emb.model,
        "dim": emb.dim,
        "embedding": emb.vector.tolist(),
        "norm": float(emb.norm),
        "width": emb.width,
        "height": emb.height,
    }
