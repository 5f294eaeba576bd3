"""Typed errors for bad input: each carries a stable ``code`` and the HTTP status a caller should map it to.

Bad input is a value, not a crash: the engine returns these in place of a vector for the input that caused
them, so one bad image (or text) never poisons its batch. ``CodedError`` is the one base class of every
coded refusal, the engine's and the API's (``handler.errors.RequestError``).
"""

from __future__ import annotations


class CodedError(ValueError):
    """A refusal with a stable ``code``, the HTTP ``http_status`` a caller should answer, and a message."""

    code = "invalid_input"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ImageError(CodedError):
    """An input image that cannot be embedded. Permanent: retrying the same bytes gives the same error."""

    code = "invalid_image"
    http_status = 422


class EmptyImage(ImageError):
    code = "empty_image"
    http_status = 400


class ImageTooLarge(ImageError):
    """More bytes than ``Limits.max_bytes``: refused before decoding."""

    code = "image_too_large"
    http_status = 413


class TooManyPixels(ImageError):
    """Declared dimensions above ``Limits.max_pixels`` (decompression bomb): refused before decoding pixels."""

    code = "too_many_pixels"
    http_status = 413


class NotAnImage(ImageError):
    """Bytes that no supported decoder recognises."""

    code = "not_an_image"
    http_status = 422


class CorruptImage(ImageError):
    """A recognised format whose pixel data cannot be decoded (truncated, damaged)."""

    code = "corrupt_image"
    http_status = 422


class TextError(CodedError):
    """A text that cannot be embedded (the text tower's counterpart of ImageError)."""

    code = "invalid_text"
    http_status = 400


class EmptyText(TextError):
    code = "empty_text"
    http_status = 400


class TextTooLong(TextError):
    """More characters than the API takes per text (the tokenizer itself truncates at 77 tokens)."""

    code = "text_too_long"
    http_status = 413


class ModelDirError(RuntimeError):
    """The model directory is missing files or does not match its manifest. A deployment error, not input."""
