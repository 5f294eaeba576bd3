"""Image bytes → RGB ``PIL.Image``, with limits checked before any pixel is decoded.

Matches HF ``convert_to_rgb`` (transparency composited on white, other modes converted by Pillow) with two documented
differences: EXIF orientation is applied (HF and fastembed ignore it, so a portrait phone photo is embedded
sideways there), and 16-bit grayscale is scaled to 8 bits (HF's ``convert("RGB")`` saturates it to white).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import (  # the plugins of FORMATS only: no Image.init(), which loads every parser
    BmpImagePlugin,  # noqa: F401
    GifImagePlugin,  # noqa: F401
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from layer.errors import CorruptImage, EmptyImage, ImageTooLarge, NotAnImage, TooManyPixels
from layer.limits import Limits

# Pillow formats we accept. Restricting ``Image.open`` keeps exotic parsers (EPS calls Ghostscript) out.
# (Multi-picture phone JPEGs, "MPO", are opened by the JPEG factory.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_EXIF_ORIENTATION = 0x0112
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated upload is an error, not a grey-padded image


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, EXIF orientation applied; may be DCT-downscaled (see ``draft_min_side``)
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
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8), "L")
    # Same as transformers.image_transforms.convert_to_rgb: transparency composited over white.
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode(data: bytes, limits: Limits, *, draft_min_side: int | None = None, exif: bool = True) -> Decoded:
    """Decode to RGB. ``draft_min_side``: let libjpeg downscale in the DCT domain (1/2…1/8) while keeping
    the shortest side ≥ that many pixels, which skips most of the work on large JPEGs."""
    img = open_image(data, limits)
    fmt = img.format or "unknown"
    width, height = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if exif else 1
        if fmt in ("JPEG", "MPO"):
            if draft_min_side is not None and img.mode in ("RGB", "L"):
                k = draft_min_side / min(width, height)
                if k < 1:
                    img.draft(img.mode, (int(width * k + 1), int(height * k + 1)))
        else:
            img.seek(0)  # first frame of GIF / WebP / TIFF
        img.load()
        if exif and orientation != 1:
            img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"cannot decode {fmt} image: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return Decoded(image=rgb, width=width, height=height, format=fmt)
