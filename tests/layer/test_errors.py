"""The engine's refusals (layer/errors.py): each a value with a stable code and the HTTP status a caller
answers, the same pairs as the API's table (handler.errors.API_ERRORS)."""

from __future__ import annotations

import inspect

import pytest

from handler.errors import API_ERRORS
from layer import errors
from layer.errors import (
    CodedError,
    CorruptImage,
    EmptyImage,
    EmptyText,
    ImageError,
    ImageTooLarge,
    ModelDirError,
    NotAnImage,
    TextError,
    TextTooLong,
    TooManyPixels,
)

# Every refusal of the engine: its code and status are the contract (docs/api.md), not its message.
CODES: dict[type[CodedError], tuple[str, int]] = {
    ImageError: ("invalid_image", 422),
    EmptyImage: ("empty_image", 400),
    ImageTooLarge: ("image_too_large", 413),
    TooManyPixels: ("too_many_pixels", 413),
    NotAnImage: ("not_an_image", 422),
    CorruptImage: ("corrupt_image", 422),
    TextError: ("invalid_text", 400),
    EmptyText: ("empty_text", 400),
    TextTooLong: ("text_too_long", 413),
}


def test_an_image_error_serializes_as_the_api_error_body() -> None:
    err = NotAnImage("not an image: 3 bytes")
    assert err.to_dict() == {"code": "not_an_image", "message": "not an image: 3 bytes"}
    assert (err.code, err.http_status, str(err)) == ("not_an_image", 422, "not an image: 3 bytes")


def test_every_refusal_has_its_code_and_status() -> None:
    defined = {c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, CodedError)}
    assert defined - {CodedError} == set(CODES), "a refusal without its row in CODES"
    for cls, pair in CODES.items():
        assert (cls.code, cls.http_status) == pair, cls
    # an image's refusals are permanent (the same bytes fail again): the S3 function records them, never retries
    assert all(issubclass(c, ImageError) for c in (EmptyImage, ImageTooLarge, TooManyPixels, NotAnImage, CorruptImage))
    assert all(issubclass(c, TextError) and not issubclass(c, ImageError) for c in (EmptyText, TextTooLong))


@pytest.mark.parametrize("cls", [c for c in CODES if c is not ImageError])
def test_the_api_answers_each_refusal_with_the_engines_status(cls: type[CodedError]) -> None:
    """The engine's code reaches the caller as it is: the API's table has it, at the same status (ImageError
    itself is never raised: only its subclasses are)."""
    assert API_ERRORS[cls.code] == cls.http_status


def test_a_refusal_is_a_value_error_and_a_broken_model_directory_is_not() -> None:
    """Bad input (ValueError, recorded, never retried) versus a deployment error (RuntimeError)."""
    exc = TooManyPixels("100000 x 100000")
    assert isinstance(exc, ValueError) and str(exc) == exc.message == "100000 x 100000"
    assert exc.to_dict() == {"code": "too_many_pixels", "message": "100000 x 100000"}
    assert issubclass(ModelDirError, RuntimeError) and not issubclass(ModelDirError, (ValueError, CodedError))
