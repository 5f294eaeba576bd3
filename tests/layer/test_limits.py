"""The default input limits (layer/limits.py): what they admit and what they refuse before decoding, each bound
inclusive (the decoder's checks themselves, with other limits: tests/layer/test_decode.py)."""

from __future__ import annotations

import dataclasses

import pytest

from layer.decode import decode
from layer.errors import ImageError, ImageTooLarge, NotAnImage, TooManyPixels
from layer.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, Limits
from tests.imaging import png_bomb


def refusal(data: bytes) -> type[ImageError] | None:
    """The error the default limits give ``data`` (None: decoded)."""
    try:
        decode(data, Limits())
    except ImageError as exc:
        return type(exc)
    return None


def test_the_defaults_are_the_documented_bounds() -> None:
    assert Limits() == Limits(max_bytes=DEFAULT_MAX_BYTES, max_pixels=DEFAULT_MAX_PIXELS, max_side=DEFAULT_MAX_SIDE)
    assert (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE) == (25 * 2**20, 64_000_000, 65_535)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().max_bytes = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("size", "admitted"),
    [
        ((4000, 3000), True),  # a 12-MP phone photo
        ((9568, 6376), True),  # a 61-MP camera shot
        ((8000, 8000), True),  # the pixel bound itself
        ((8001, 8000), False),
        ((31_623, 31_623), False),  # a 1-GP bomb of a few bytes
        ((DEFAULT_MAX_SIDE, 1), True),  # the side bound itself
        ((DEFAULT_MAX_SIDE + 1, 1), False),  # a strip the pixel bound would let through
        ((1, 100_000_000), False),
    ],
)
def test_the_default_bounds_are_checked_from_the_header(size: tuple[int, int], admitted: bool) -> None:
    """A PNG header declaring ``size`` over a few bytes of data: refused with TooManyPixels before any pixel is
    decoded, or admitted (and then failing as the truncated image it is, never for its size)."""
    got = refusal(png_bomb(*size))
    assert (got is not TooManyPixels) == admitted, got


def test_the_default_byte_bound_is_inclusive() -> None:
    assert refusal(b"\0" * DEFAULT_MAX_BYTES) is NotAnImage  # read, and found to be no image
    assert refusal(b"\0" * (DEFAULT_MAX_BYTES + 1)) is ImageTooLarge  # refused unread
