"""Image bytes → an RGB (or grey "L") ``PIL.Image``, with limits checked before any pixel is decoded.

Matches HF ``convert_to_rgb`` (transparency composited on white, other modes converted by Pillow) with two documented
differences: EXIF orientation is applied (HF and fastembed ignore it, so a portrait phone photo is embedded
sideways there), and 16-bit grayscale is scaled to 8 bits (HF's ``convert("RGB")`` saturates it to white).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import (  # the plugins of FORMATS only: no Image.init(), which loads every parser
    BmpImagePlugin,  # noqa: F401
    GifImagePlugin,  # noqa: F401
    Image,
    ImageFile,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from layer.errors import CorruptImage, EmptyImage, ImageError, ImageTooLarge, NotAnImage, TooManyPixels
from layer.limits import Limits

# Pillow formats we accept. Restricting ``Image.open`` keeps exotic parsers (EPS calls Ghostscript) out.
# (Multi-picture phone JPEGs, "MPO", are opened by the JPEG factory.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_EXIF_ORIENTATION = 0x0112
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated upload is an error, not a grey-padded image


@dataclass(frozen=True)
class Decoded:
    # "RGB", or "L" for grey sources (preprocessing converts after the crop); EXIF orientation applied; may be
    # DCT-downscaled (see ``draft_min_side``)
    image: Image.Image
    width: int  # original dimensions after orientation, before any draft downscale
    height: int
    format: str


def open_image(data: bytes, limits: Limits) -> Image.Image:
    """Identify the format and check the limits; no pixel data is decoded yet."""
    if not data:
        raise EmptyImage("empty body: no image bytes")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage(
            f"not a supported image (expected one of {', '.join(FORMATS)}; first bytes {data[:8].hex()})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"cannot read image header: {exc}") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise CorruptImage(f"image has no pixels ({w}x{h})")
    if w * h > limits.max_pixels:
        raise TooManyPixels(f"image is {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}")
    if max(w, h) > limits.max_side:
        raise TooManyPixels(f"image is {w}x{h}: a side exceeds the limit of {limits.max_side} pixels")
    return img


# Conversions run a band of rows at a time, so that the peak is the decoded source plus the result, never the
# several full-size intermediates of a one-shot conversion (RGBA + a white background + the composite + RGB:
# 1.6 GB for a 100-MP PNG with alpha; float64 for 16-bit: 2.2 GB).
_BAND_PIXELS = 4_000_000


def _by_bands(img: Image.Image, mode: str, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    out = Image.new(mode, img.size)
    rows = max(1, _BAND_PIXELS // max(1, img.width))
    for top in range(0, img.height, rows):
        out.paste(convert(img.crop((0, top, img.width, min(img.height, top + rows)))), (0, top))
    return out


def _sixteen_to_l(band: Image.Image) -> Image.Image:
    """Scale 16-bit (or 32-bit integer) grey to 8 bits: round(v / 257), in integers (v / 257 is never a tie)."""
    arr = np.asarray(band, dtype=np.int64)
    return Image.fromarray(np.clip((2 * arr + 257) // 514, 0, 255).astype(np.uint8), "L")


def _float_to_l(band: Image.Image) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(np.asarray(band, dtype=np.float32)), 0, 255).astype(np.uint8), "L")


def _on_white(band: Image.Image) -> Image.Image:
    """transformers.image_transforms.convert_to_rgb: transparency composited over white. (Pillow converts
    premultiplied grey, "La" from a TIFF with associated alpha, to "LA" only.)"""
    rgba = (band.convert("LA") if band.mode == "La" else band).convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def _flatten(img: Image.Image) -> Image.Image:
    """The decoded image as "RGB", or "L" when it has no colour: grey stays one byte per pixel until after the
    centre crop (converting L to RGB copies the value to three channels, so doing it later changes nothing)."""
    transparent = not {"A", "a"}.isdisjoint(img.getbands()) or img.info.get("transparency") is not None
    if img.mode in _SIXTEEN_BIT:
        return _by_bands(img, "L", _sixteen_to_l)
    if img.mode == "F":
        return _by_bands(img, "L", _float_to_l)
    grey = img.mode in ("1", "L", "LA", "La")
    if transparent:  # grey RGB → L is exact: (R, G, B) = (v, v, v) gives v
        return (
            _by_bands(img, "L", lambda band: _on_white(band).convert("L")) if grey else _by_bands(img, "RGB", _on_white)
        )
    if img.mode in ("L", "RGB"):
        return img
    return _by_bands(img, "L" if grey else "RGB", lambda band: band.convert("L" if grey else "RGB"))


# EXIF orientation → the transpose that undoes it (what ImageOps.exif_transpose applies).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _draft(img: Image.Image, min_side: int | None) -> None:
    """Let libjpeg downscale in the DCT domain (1/2…1/8) while keeping the shortest side ≥ ``min_side``."""
    if min_side is not None and img.mode in ("RGB", "L"):
        k = min_side / min(img.size)
        if k < 1:
            img.draft(img.mode, (int(img.width * k + 1), int(img.height * k + 1)))


def _drafted(img: ImageFile.ImageFile, min_side: int | None) -> ImageFile.ImageFile:
    _draft(img, min_side)
    return img


def _sof_marker(data: bytes) -> int | None:
    """The frame type of a JPEG (0xC0 baseline, 0xC1 extended, 0xC2 progressive, 0xC9 arithmetic, ...)."""
    i = 2  # after SOI
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


# Fill for the rows libjpeg never writes (values a decoded full row can hardly all have), per mode.
_SENTINELS: dict[str, list[int | tuple[int, ...]]] = {
    "RGB": [(1, 254, 3), (253, 2, 251)],
    "L": [1, 254],
    "CMYK": [(1, 254, 3, 252), (253, 2, 251, 4)],
}


def _load_sequential_jpeg(img: ImageFile.ImageFile, data: bytes, sentinel: int | tuple[int, ...]) -> bool:
    """Decode a sequential (Huffman) JPEG, True when its last row was never written: truncated.

    libjpeg decodes a JPEG that ends early in an EOI marker by padding the missing blocks (a flat image),
    with only a warning that Pillow ignores. Without the final EOI and with a few zero bytes of room for its
    read-ahead, a complete stream still yields every row (then waits for an EOI that never comes), while a
    truncated one stops where its data does: the rows below keep the sentinel they were filled with."""
    body = data[:-2] if data.endswith(b"\xff\xd9") else data
    img.fp = io.BytesIO(body + b"\0" * 64)  # same prefix: the tile offsets still hold
    img.im = Image.core.fill(img.mode, img.size, sentinel)  # decoded into
    try:
        img.load()
    except OSError as exc:
        if "truncated" not in str(exc):  # a broken stream: a real decoding error
            raise
    img.tile = []  # what was decoded stays; nothing more to read
    w, h = img.size
    return img.crop((0, h - 1, w, h)).tobytes() == Image.new(img.mode, (w, 1), sentinel).tobytes()


def decode(data: bytes, limits: Limits, *, draft_min_side: int | None = None, exif: bool = True) -> Decoded:
    """Decode to RGB. ``draft_min_side``: let libjpeg downscale in the DCT domain (1/2…1/8) while keeping
    the shortest side ≥ that many pixels, which skips most of the work on large JPEGs."""
    img = open_image(data, limits)
    fmt = img.format or "unknown"
    width, height = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if exif else 1
        if fmt in ("JPEG", "MPO"):
            _draft(img, draft_min_side)
            sequential = _sof_marker(data) in (0xC0, 0xC1)
            if fmt == "JPEG" and isinstance(img, ImageFile.ImageFile) and img.mode in _SENTINELS and sequential:
                # Two different fills must both survive in the last row: a real last row equal to one of
                # them across its whole width is possible (a flat synthetic image), to both is not.
                first, second = _SENTINELS[img.mode]
                if _load_sequential_jpeg(img, data, first):
                    again = open_image(data, limits)
                    if not isinstance(again, ImageFile.ImageFile) or _load_sequential_jpeg(
                        _drafted(again, draft_min_side), data, second
                    ):
                        raise CorruptImage("truncated JPEG: its data ends before its last row")
        else:
            img.seek(0)  # first frame of GIF / WebP / TIFF
        img.load()
        img = _flatten(img)
        if orientation in _ORIENT:
            img = img.transpose(_ORIENT[orientation])
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"cannot decode {fmt} image: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return Decoded(image=img, width=width, height=height, format=fmt)
