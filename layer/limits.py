"""Input limits, so that a hostile or huge upload fails fast with a typed error instead of exhausting memory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
# 12-MP phone photos and 50-MP camera shots pass; a 1-GP "bomb" PNG of a few KB does not.
DEFAULT_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Read ``MAX_IMAGE_BYTES`` / ``MAX_IMAGE_PIXELS`` (the function configuration contract)."""
        env = os.environ if environ is None else environ
        return cls(
            max_bytes=int(env.get("MAX_IMAGE_BYTES", DEFAULT_MAX_BYTES)),
            max_pixels=int(env.get("MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)),
        )
