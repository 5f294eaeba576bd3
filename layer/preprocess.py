"""RGB (or grey) image → ``pixel_values`` float32 [3, H, W], exactly as the slow ``CLIPImageProcessor`` computes it.

Pure functions composed from a ``PreprocessConfig`` (fastembed does the same): resize the shortest side with
bicubic and int-truncated long side, centre crop, rescale, normalize, HWC → CHW.

One deliberate exception, for images more than ``EXACT_MAX_ASPECT`` times longer than wide (or wider than
long): CLIPImageProcessor resizes the whole image before cropping, and a 124-byte 1×10,000 PNG becomes a
224×2,240,000 image (1.5 GB, 8 s) of which 224×224 are kept. There only the crop's source region is
resampled, in the same two passes with the same filter: the same pixels within one grey level (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from layer.config import PreprocessConfig

Transform = Callable[[Image.Image], Image.Image]


def resize_output_size(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """HF ``get_resize_output_image_size(default_to_square=False)``: short side → edge, long side truncated."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_shortest_edge(edge: int, resample: int) -> Transform:
    def apply(img: Image.Image) -> Image.Image:
        size = resize_output_size(img.width, img.height, edge)
        if size == img.size:
            return img
        return img.resize(size, resample=Image.Resampling(resample), reducing_gap=None)

    return apply


def center_crop(size: int) -> Transform:
    """HF ``center_crop``: offsets ``(dim - size) // 2``; pads with zeros when the image is smaller."""

    def apply(img: Image.Image) -> Image.Image:
        left, top = (img.width - size) // 2, (img.height - size) // 2
        return img.crop((left, top, left + size, top + size))

    return apply


EXACT_MAX_ASPECT = 64
# Half-widths of Pillow's resampling filters (in source pixels at scale 1), by PIL resample code.
_FILTER_SUPPORT = {0: 0.5, 1: 3.0, 2: 1.0, 3: 2.0, 4: 0.5, 5: 1.0}


def _source_span(start: float, stop: float, scale: float, support: float, size: int) -> tuple[int, int]:
    """The source pixels a resampling of [start, stop) reads: the filter reaches ``support × max(scale, 1)``."""
    reach = support * max(scale, 1.0) + 1
    return max(0, math.floor(start - reach)), min(size, math.ceil(stop + reach))


def crop_region_resample(img: Image.Image, resized: tuple[int, int], crop: int, resample: int) -> Image.Image:
    """``center_crop(crop)(img.resize(resized))`` without the full resize: the crop's source region (plus the
    filter's reach) is cut out, resampled horizontally, then vertically, like Pillow's own two passes."""
    (w, h), (nw, nh) = img.size, resized
    sx, sy = w / nw, h / nh
    left, top = (nw - crop) // 2, (nh - crop) // 2
    x0, x1, y0, y1 = left * sx, (left + crop) * sx, top * sy, (top + crop) * sy
    support = _FILTER_SUPPORT.get(resample, 3.0)
    c0, c1 = _source_span(x0, x1, sx, support, w)
    r0, r1 = _source_span(y0, y1, sy, support, h)
    region = img.crop((c0, r0, c1, r1))
    filt = Image.Resampling(resample)
    # One axis per call, in the order Pillow's full resize would take them (ImagingResampleInner, Pillow 13:
    # vertical first when the height shrinks by more than twice as many pixels as the width): the 8-bit
    # rounding between the passes depends on the order.
    if (h - nh) > 0 and (h - nh) > (w - nw) * 2:
        cols = region.resize((c1 - c0, crop), filt, box=(0, y0 - r0, c1 - c0, y1 - r0), reducing_gap=None)
        return cols.resize((crop, crop), filt, box=(x0 - c0, 0, x1 - c0, crop), reducing_gap=None)
    rows = region.resize((crop, r1 - r0), filt, box=(x0 - c0, 0, x1 - c0, r1 - r0), reducing_gap=None)
    return rows.resize((crop, crop), filt, box=(0, y0 - r0, crop, y1 - r0), reducing_gap=None)


def resize_center_crop(edge: int, crop: int, resample: int) -> Transform:
    """Resize the shortest side to ``edge`` and keep the centre ``crop``×``crop``: exactly, by a full resize,
    up to ``EXACT_MAX_ASPECT``; beyond, by ``crop_region_resample`` (bounded time and memory)."""
    full = [resize_shortest_edge(edge, resample), center_crop(crop)]

    def apply(img: Image.Image) -> Image.Image:
        short, long = sorted(img.size)
        resized = resize_output_size(img.width, img.height, edge)
        if long <= EXACT_MAX_ASPECT * short or crop > min(resized):
            for step in full:
                img = step(img)
            return img
        return crop_region_resample(img, resized, crop, resample)

    return apply


def compose(config: PreprocessConfig) -> list[Transform]:
    if config.do_resize and config.do_center_crop:
        return [resize_center_crop(config.shortest_edge, config.crop_size, config.resample)]
    steps: list[Transform] = []
    if config.do_resize:
        steps.append(resize_shortest_edge(config.shortest_edge, config.resample))
    if config.do_center_crop:
        steps.append(center_crop(config.crop_size))
    return steps


def to_pixel_values(img: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Rescale and normalize in float32, channels first (grey images become RGB here, after the crop)."""
    arr = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.float32)
    if config.do_rescale:
        arr = arr * np.float32(config.rescale_factor)
    if config.do_normalize:
        mean = np.asarray(config.image_mean, dtype=np.float32)
        std = np.asarray(config.image_std, dtype=np.float32)
        arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(img: Image.Image, config: PreprocessConfig) -> np.ndarray:
    for step in compose(config):
        img = step(img)
    return to_pixel_values(img, config)
