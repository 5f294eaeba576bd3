"""Input limits, so that a hostile or huge upload fails fast with a typed error instead of exhausting memory."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
# 12-MP phone photos and 61-MP camera shots pass; a 1-GP "bomb" PNG of a few KB does not. The bound is the
# memory of the worst image it admits: a 64-MP PNG with alpha (decoded RGBA + RGB, both 4 bytes a pixel in
# Pillow) peaks below the S3 function's default 1,024 MB (tests/layer/test_memory.py asserts the bound; the
# measured peak is in docs/operations.md); at 100 MP it did not fit.
DEFAULT_MAX_PIXELS = 64_000_000
# Pillow keeps a pointer per row: a 200-byte 1×100,000,000 PNG would need 800 MB of them. JPEG's own maximum.
DEFAULT_MAX_SIDE = 65_535


@dataclass(frozen=True)
class Limits:
    """Read from ``MAX_IMAGE_BYTES`` / ``MAX_IMAGE_PIXELS`` / ``MAX_IMAGE_SIDE`` (``layer.settings``)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
