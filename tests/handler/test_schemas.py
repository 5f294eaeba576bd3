"""The API's request and response shapes (handler.schemas): strict requests (no coercion, no unknown field,
exactly one source per image or search) and one set of embedding fields for every answer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from handler.schemas import (
    MAX_TEXTS,
    BatchItem,
    EmbeddingOut,
    EmbedRequest,
    ImageRef,
    SearchRequest,
    TextItem,
    TextRequest,
    embedding_fields,
    error_body,
)
from layer import Embedding
from layer.text import MAX_TEXT_CHARS


@pytest.mark.parametrize(
    "payload",
    [
        {"images": []},
        {"images": [{}]},
        {"images": [{"data": "aGk=", "s3": "s3://b/k"}]},  # both sources
        {"images": [{"data": 5}]},
        {"images": [{"s3": "s3://b/k"}], "store": "true"},  # no coercion of a string
        {"images": [{"s3": "s3://b/k"}], "store": 1},
        {"images": [{"s3": "s3://b/k"}], "extra": True},  # no unknown field
        {"image": "aGk="},
    ],
)
def test_an_embed_request_is_strict(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmbedRequest.model_validate(payload)


def test_an_embed_request_takes_one_source_per_image_and_a_boolean_store() -> None:
    got = EmbedRequest.model_validate({"images": [{"data": "aGk="}, {"s3": "s3://b/x%2Fy.png"}], "store": True})
    assert got.images == [ImageRef(data="aGk="), ImageRef(s3="s3://b/x%2Fy.png")] and got.store is True
    assert EmbedRequest.model_validate({"images": [{"data": "aGk="}]}).store is False  # the default


def test_a_text_request_holds_one_to_max_texts() -> None:
    assert len(TextRequest.model_validate({"texts": ["a"] * MAX_TEXTS}).texts) == MAX_TEXTS
    for texts in ([], ["a"] * (MAX_TEXTS + 1), ["a", 5]):
        with pytest.raises(ValidationError):
            TextRequest.model_validate({"texts": texts})


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"text": "a", "s3": "s3://b/k"},
        {"text": "a", "image": "aGk=", "s3": "s3://b/k"},
        {"text": "a", "k": 0},
        {"text": "a", "k": 101},
        {"text": "a", "k": 5.0},
        {"text": "x" * (MAX_TEXT_CHARS + 1)},
        {"text": "a", "prefix": 3},
    ],
)
def test_a_search_needs_exactly_one_query_and_a_k_in_range(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SearchRequest.model_validate(payload)


def test_a_search_defaults_to_ten_results_and_takes_its_bounds() -> None:
    assert SearchRequest.model_validate({"text": "a cat"}).k == 10
    for k in (1, 100):
        assert SearchRequest.model_validate({"s3": "s3://b/k", "k": k, "prefix": "cats/"}).k == k
    assert SearchRequest.model_validate({"text": "x" * MAX_TEXT_CHARS}).text == "x" * MAX_TEXT_CHARS


def test_every_answer_carries_the_same_embedding_fields() -> None:
    emb = Embedding(vector=np.array([0.6, 0.8], np.float32), norm=2.5, model="m", width=4, height=3, tokens=7,
                    truncated=True)  # fmt: skip
    fields = {"model": "m", "dim": 2, "embedding": [0.6000000238418579, 0.800000011920929], "norm": 2.5,
              "width": 4, "height": 3}  # fmt: skip
    assert embedding_fields(emb) == fields
    assert EmbeddingOut.of(emb).model_dump(exclude_none=True) == fields
    item = BatchItem.embedded(3, emb, s3="s3://b/k").model_dump(exclude_none=True)
    assert item == {"index": 3, "s3": "s3://b/k", **fields}
    text = TextItem.embedded(1, emb).model_dump(exclude_none=True)
    assert text == {"index": 1, "embedding": fields["embedding"], "norm": 2.5, "tokens": 7, "truncated": True}


def test_an_error_body_is_the_code_and_the_message_alone() -> None:
    assert error_body("not_found", "no route") == {"error": {"code": "not_found", "message": "no route"}}
