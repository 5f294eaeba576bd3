"""Request and response shapes of the HTTP API (pydantic: they validate input and feed the OpenAPI doc).

The request models are strict: a JSON value must already have the field's type (``"k": 5``, not ``"5"``,
``5.0`` or ``true``; ``"store": true``, not ``"true"`` or ``1``), else 400 ``invalid_request``, as unknown
fields are. ``s3`` references are ``s3://bucket/key`` with the key taken literally (no ``%xx`` decoding).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from layer import Embedding
from layer.text import MAX_TEXT_CHARS

MAX_TEXTS = 64  # texts per POST /embed/text: one session run each, ~10 ms apiece
MAX_TAG_FILTERS = 5  # tags a search may require at once


# The request models: no unknown fields, no coercion (see the module docstring).
STRICT_REQUEST = ConfigDict(extra="forbid", strict=True)
S3_REF = "s3://bucket/key; the key is taken literally (no %xx decoding), as POST /search returns it"


class ImageRef(BaseModel):
    """One image of a JSON request: inline base64 ``data`` or an ``s3`` reference, exactly one of them."""

    model_config = STRICT_REQUEST
    data: str | None = Field(default=None, description="The image file, base64-encoded")
    s3: str | None = Field(default=None, description=f"An image the function may read: {S3_REF}")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        if (self.data is None) == (self.s3 is None):
            raise ValueError('each image needs exactly one of "data" or "s3"')
        return self


class EmbedRequest(BaseModel):
    model_config = STRICT_REQUEST
    images: list[ImageRef] = Field(min_length=1, description="Up to MAX_BATCH_IMAGES (default 16) images")
    store: bool = Field(
        default=False,
        description="Also write the DynamoDB item for each s3 reference, as the S3 function does (a JSON boolean)",
    )
    tags: bool = Field(
        default=False,
        description="Also return each image's zero-shot tags (the model's label vocabulary, GET /model)",
    )


class TagOut(BaseModel):
    label: str
    score: float = Field(description="Cosine similarity of the image and the label's prompt")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class EmbeddingOut(BaseModel):
    model: str
    dim: int
    embedding: list[float] = Field(
        description="Unit-length vector (L2 norm 1) of `dim` floats: the model's dimension (GET /model; 512 for "
        "ViT-B/32 and B/16, 768 for ViT-L/14)"
    )
    norm: float = Field(description="L2 norm before normalisation: raw CLIP features = embedding * norm")
    width: int
    height: int
    tags: list[TagOut] | None = Field(default=None, description="With tags=true: the image's tags, best first")

    @classmethod
    def of(cls, emb: Embedding, tags: bool = False) -> EmbeddingOut:
        return cls(**embedding_fields(emb, tags))


class BatchItem(BaseModel):
    """A result in request order: an embedding, or the error for that image alone."""

    index: int
    model: str | None = None
    dim: int | None = None
    embedding: list[float] | None = None
    norm: float | None = None
    width: int | None = None
    height: int | None = None
    tags: list[TagOut] | None = None
    s3: str | None = None
    stored: bool | None = Field(default=None, description="With store=true: whether the item was written")
    status: int | None = Field(default=None, description="HTTP status this error would have alone")
    error: ErrorBody | None = None

    @classmethod
    def embedded(cls, index: int, emb: Embedding, s3: str | None = None, tags: bool = False) -> BatchItem:
        return cls(index=index, s3=s3, **embedding_fields(emb, tags))


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


def embedding_fields(emb: Embedding, tags: bool = False) -> dict[str, Any]:
    """The JSON fields of an embedding, the same in a single answer and in a batch item."""
    fields = {
        "model": emb.model,
        "dim": emb.dim,
        "embedding": emb.vector.tolist(),
        "norm": float(emb.norm),
        "width": emb.width,
        "height": emb.height,
    }
    if tags:
        fields["tags"] = [TagOut(label=t.label, score=t.score) for t in emb.tags]
    return fields


class TextRequest(BaseModel):
    model_config = STRICT_REQUEST
    texts: list[str] = Field(
        min_length=1,
        max_length=MAX_TEXTS,
        description=f"Up to {MAX_TEXTS} texts of up to {MAX_TEXT_CHARS} characters each; longer than CLIP's "
        "77-token context is truncated (and said so per text)",
    )


class TextItem(BaseModel):
    """A text's result in request order: its embedding, or the error for that text alone."""

    index: int
    embedding: list[float] | None = Field(default=None, description="Unit-length vector, the images' space")
    norm: float | None = None
    tokens: int | None = Field(default=None, description="Tokens kept, <|startoftext|> and <|endoftext|> included")
    truncated: bool | None = Field(default=None, description="The text had more than 77 tokens: the rest was cut")
    status: int | None = Field(default=None, description="HTTP status this error would have alone")
    error: ErrorBody | None = None

    @classmethod
    def embedded(cls, index: int, emb: Embedding) -> TextItem:
        return cls(
            index=index,
            embedding=emb.vector.tolist(),
            norm=float(emb.norm),
            tokens=emb.tokens,
            truncated=emb.truncated,
        )


class TextResponse(BaseModel):
    model: str
    dim: int
    results: list[TextItem]


class SearchRequest(BaseModel):
    """A query by text, by an inline image or by an image in S3 (at most one), for the k nearest images; or
    by tags alone (browse: the first tag's label ranks the images that carry every tag)."""

    model_config = STRICT_REQUEST
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS, description="Find images matching this text")
    image: str | None = Field(default=None, description="Find images like this one (the file, base64-encoded)")
    s3: str | None = Field(default=None, description=f"Find images like this one: {S3_REF}")
    k: int = Field(default=10, ge=1, le=100, description="How many results (1-100, a JSON integer)")
    prefix: str | None = Field(default=None, description="Only images whose key starts with this prefix")
    tags: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TAG_FILTERS,
        description=f"Only images tagged with every one of these labels (up to {MAX_TAG_FILTERS}; GET /model "
        "lists the vocabulary); alone, without a query, the images carrying them ranked by the first label",
    )

    @model_validator(mode="after")
    def _at_most_one(self) -> SearchRequest:
        queries = sum(x is not None for x in (self.text, self.image, self.s3))
        if queries > 1 or (queries == 0 and not self.tags):
            raise ValueError('a search needs exactly one of "text", "image" or "s3", or "tags" alone')
        return self


class SearchHit(BaseModel):
    key: str = Field(description="The object key, exactly as stored: pass s3://{bucket}/{key} back as an s3 reference")
    bucket: str
    score: float = Field(description="Cosine similarity to the query (1: the same direction)")
    width: int | None = Field(default=None, description="Absent where the index's record holds none")
    height: int | None = Field(default=None, description="Absent where the index's record holds none")
    etag: str | None = None
    tags: list[str] | None = Field(default=None, description="The image's zero-shot tags, best first")


class SearchResponse(BaseModel):
    model: str
    query: str = Field(description='"text", "image", "s3" or "tags"')
    truncated: bool | None = Field(default=None, description="A text query longer than 77 tokens was cut")
    results: list[SearchHit]
