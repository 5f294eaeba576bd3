"""RGB image → ``pixel_values`` float32 [3, H, W], exactly as the slow ``CLIPImageProcessor`` computes it.

Pure functions composed from a ``PreprocessConfig`` (fastembed does the same): resize the shortest side with
bicubic and int-truncated long side, centre crop, rescale, normalize, HWC → CHW.
"""

from __future__ import annotations

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


def compose(config: PreprocessConfig) -> list[Transform]:
    steps: list[Transform] = []
    if config.do_resize:
        steps.append(resize_shortest_edge(config.shortest_edge, config.resample))
    if config.do_center_crop:
        steps.append(center_crop(config.crop_size))
    return steps


def to_pixel_values(img: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Rescale and normalize in float32, channels first."""
    arr = np.asarray(img, dtype=np.float32)
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
