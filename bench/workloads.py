"""Benchmark inputs, derived from the real photos that ship with scikit-learn and written to disk once."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from layer.convert.calibration import sample_photo_paths


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    files: list[Path]  # empty for model-only


def _save(img: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    if not path.exists():
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        path.write_bytes(buf.getvalue())
    return path


def make_workloads(folder: Path, count: int) -> list[Workload]:
    """``count`` images per workload, cycling over the photos (each file distinct by a small crop)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [Image.open(p).convert("RGB") for p in sample_photo_paths()]

    def variant(i: int, size: tuple[int, int]) -> Image.Image:
        img = photos[i % len(photos)]
        w, h = img.size
        d = i // len(photos)  # shift the crop so files differ
        return img.crop((d, d, w - d, h - d)).resize(size, Image.Resampling.LANCZOS)

    big = [_save(variant(i, (4000, 3000)), folder / f"12mp-{i}.jpg", "JPEG", quality=90) for i in range(count)]
    hd = [_save(variant(i, (1920, 1080)), folder / f"1080p-{i}.jpg", "JPEG", quality=90) for i in range(count)]
    png = [_save(variant(i, (640, 480)), folder / f"vga-{i}.png", "PNG") for i in range(count)]
    return [
        Workload("jpeg-12mp", "4000×3000 JPEG photos (q90), end to end", big),
        Workload("jpeg-1080p", "1920×1080 JPEGs (q90), end to end", hd),
        Workload("png-640x480", "640×480 PNGs, end to end", png),
        Workload("model-only", "preprocessed [1,3,224,224] tensors, inference only", []),
    ]
