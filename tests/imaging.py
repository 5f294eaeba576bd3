"""Test images made on the fly from the real JPEGs that ship with scikit-learn (no downloads)."""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import numpy as np
from PIL import Image

from layer.convert.calibration import sample_photo_paths


@cache
def photo_bytes() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sample_photo_paths()}


def photo(name: str = "china.jpg") -> Image.Image:
    return Image.open(io.BytesIO(photo_bytes()[name])).convert("RGB")


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def resized_photo(size: tuple[int, int], name: str = "china.jpg") -> Image.Image:
    return photo(name).resize(size, Image.Resampling.LANCZOS)


def jpeg_12mp(name: str = "china.jpg", quality: int = 90) -> bytes:
    """A 4000×3000 JPEG made from a real photo (what a phone camera uploads)."""
    return encode(resized_photo((4000, 3000), name), "JPEG", quality=quality)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``width×height`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def varied_images() -> dict[str, bytes]:
    """Sizes, aspect ratios and modes the fidelity tests sweep (all without EXIF orientation)."""
    base = photo("flower.jpg")
    rgba = resized_photo((300, 200)).convert("RGBA")
    alpha = np.linspace(0, 255, 300, dtype=np.uint8)[None, :].repeat(200, 0)
    rgba.putalpha(Image.fromarray(alpha))
    return {
        "china.jpg": photo_bytes()["china.jpg"],
        "flower.jpg": photo_bytes()["flower.jpg"],
        "wide-png": encode(resized_photo((900, 240))),
        "tall-png": encode(resized_photo((230, 700), "flower.jpg")),
        "small-png": encode(resized_photo((100, 80))),
        "odd-png": encode(resized_photo((333, 227))),
        "square-webp": encode(base.resize((512, 512)), "WEBP", quality=90),
        "gray-png": encode(base.convert("L")),
        "palette-png": encode(base.convert("P", palette=Image.Palette.ADAPTIVE)),
        "rgba-png": encode(rgba),
        "cmyk-jpg": encode(base.convert("CMYK"), "JPEG", quality=92),
        "bmp": encode(resized_photo((320, 240)), "BMP"),
        "tiff": encode(resized_photo((480, 360)), "TIFF"),
        "gif": encode(resized_photo((300, 300)).convert("P"), "GIF"),
    }
