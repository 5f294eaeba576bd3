"""Seed images for the fuzzers: every accepted format and mode, the edge cases attackers reach for, and the
mutations Hypothesis applies to them (bit flips, truncation, splices, header fields rewritten, polyglots).

Built once per process (a few hundred ms); each fuzz case is a seed plus a list of mutations, so Hypothesis
shrinks a failure to the smallest seed and the fewest mutations.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from tests.imaging import photo


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_chunks(base: bytes, *chunks: bytes) -> bytes:
    return base[:33] + b"".join(chunks) + base[33:]  # after the signature and IHDR


def _animated(fmt: str, frames: int, size: tuple[int, int] = (2, 2)) -> bytes:
    images = [Image.new("P", size, i % 256) for i in range(frames)]
    return _save(images[0], fmt, save_all=True, append_images=images[1:], duration=1, loop=0)


@cache
def seeds() -> dict[str, bytes]:
    small = photo().resize((48, 32))
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 60_000  # a 60-KB ImageDescription: an EXIF segment near its 64-KB limit
    icc = b"\0" * 200_000  # spans several APP2 segments
    out: dict[str, bytes] = {
        "jpeg": _save(small, "JPEG", quality=85),
        "jpeg-progressive": _save(small, "JPEG", progressive=True),
        "jpeg-gray": _save(small.convert("L"), "JPEG"),
        "jpeg-cmyk": _save(small.convert("CMYK"), "JPEG"),
        "jpeg-444": _save(noise, "JPEG", subsampling=0, quality=100),
        "jpeg-exif-bomb": _save(small, "JPEG", exif=exif.tobytes()),
        "jpeg-icc-bomb": _save(small, "JPEG", icc_profile=icc),
        "jpeg-1x1": _save(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"),
        "png": _save(small, "PNG"),
        "png-rgba": _save(small.convert("RGBA"), "PNG"),
        "png-la": _save(small.convert("LA"), "PNG"),
        "png-p": _save(small.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
        "png-p-trns": _save(Image.new("P", (20, 20), 0), "PNG", transparency=0),
        "png-1bit": _save(small.convert("1"), "PNG"),
        "png-16bit": _save(Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16)), "PNG"),
        "png-1x1": _save(Image.new("L", (1, 1), 5), "PNG"),
        "png-thin": _save(Image.new("L", (1, 5000), 80), "PNG"),
        "png-wide": _save(Image.new("RGB", (5000, 1), (1, 2, 3)), "PNG"),
        "gif": _save(small.convert("P"), "GIF"),
        "gif-animated-3000": _animated("GIF", 3000),
        "webp": _save(small, "WEBP", quality=80),
        "webp-lossless-alpha": _save(small.convert("RGBA"), "WEBP", lossless=True),
        "webp-animated": _animated("WEBP", 50, (4, 4)),
        "tiff": _save(small, "TIFF"),
        "tiff-cmyk": _save(small.convert("CMYK"), "TIFF"),
        "tiff-f32": _save(Image.new("F", (16, 16), 3.5), "TIFF"),
        "tiff-i32": _save(Image.new("I", (16, 16), 70000), "TIFF", compression="tiff_adobe_deflate"),
        "tiff-multipage": _save(small, "TIFF", save_all=True, append_images=[small.rotate(90)] * 5),
        "bmp": _save(small, "BMP"),
        "bmp-1bit": _save(small.convert("1"), "BMP"),
        "ppm-unaccepted": _save(small, "PPM"),
        "text": b"hello, this is not an image\n" * 10,
        "empty": b"",
    }
    png = out["png"]
    out["png-ztxt-bomb"] = _png_with_chunks(png, _png_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"a" * 10_000_000, 9)))
    out["png-many-chunks"] = _png_with_chunks(png, *[_png_chunk(b"tEXt", b"k\0v")] * 2000)
    out["jpeg-zip-polyglot"] = out["jpeg"] + b"PK\x03\x04" + b"\0" * 26 + b"payload"
    out["png-wrong-magic"] = b"\xff\xd8\xff\xe0" + png[4:]
    out["jpeg-as-gif"] = b"GIF89a" + out["jpeg"][6:]
    return out


SEEDS = sorted(seeds())

# Where the dimensions live, per seed kind: (offset, struct format) of width and height.
_DIMENSIONS = {"png": (16, ">II"), "gif": (6, "<HH"), "bmp": (18, "<ii")}


def set_dimensions(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the header's declared size (PNG IHDR, GIF screen, BMP info header, JPEG SOF)."""
    if data.startswith(b"\x89PNG"):
        off, fmt = _DIMENSIONS["png"]
    elif data.startswith(b"GIF"):
        off, fmt = _DIMENSIONS["gif"]
        width, height = width & 0xFFFF, height & 0xFFFF
    elif data.startswith(b"BM"):
        off, fmt = _DIMENSIONS["bmp"]
        width, height = max(-(2**31), min(width, 2**31 - 1)), max(-(2**31), min(height, 2**31 - 1))
    elif data.startswith(b"\xff\xd8") and (sof := data.find(b"\xff\xc0")) > 0:
        off, fmt = sof + 5, ">HH"
        width, height = height & 0xFFFF, width & 0xFFFF  # SOF stores height first
    else:
        return data
    if off + struct.calcsize(fmt) > len(data):
        return data
    if fmt == ">II":
        width, height = width & 0xFFFFFFFF, height & 0xFFFFFFFF
    return data[:off] + struct.pack(fmt, width, height) + data[off + struct.calcsize(fmt) :]


def _mutate(data: bytes, op: tuple) -> bytes:
    kind, a, b, payload = op
    n = len(data)
    if n == 0:
        return payload[:8]
    i, j = a % n, b % (n + 1)
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << (b % 8))]) + data[i + 1 :]
    if kind == "set":
        return data[:i] + payload[:1] + data[i + 1 :]
    if kind == "truncate":
        return data[:i]
    if kind == "delete":
        return data[: min(i, j)] + data[max(i, j) :]
    if kind == "insert":
        return data[:i] + payload + data[i:]
    if kind == "duplicate":
        lo, hi = min(i, j), max(i, j)
        return data[:hi] + data[lo:hi] + data[hi:]
    if kind == "dims":
        return set_dimensions(data, a % 70_000 - 2, b % 70_000 - 2)
    return data


_OPS = st.tuples(
    st.sampled_from(["flip", "set", "truncate", "delete", "insert", "duplicate", "dims"]),
    st.integers(0, 2**31),
    st.integers(0, 2**31),
    st.binary(min_size=1, max_size=64),
)


@st.composite
def images(draw: st.DrawFn) -> tuple[str, bytes]:
    """(description, bytes): a seed, maybe mutated (a third of the cases stay valid)."""
    name = draw(st.sampled_from(SEEDS))
    ops = draw(st.lists(_OPS, max_size=6))
    data = seeds()[name]
    for op in ops:
        data = _mutate(data, op)
    return f"{name} + {[o[0] for o in ops]}", data
