"""The accuracy gate's inputs: real photos plus synthetic images that stress different statistics, and texts
of every kind a search box gets (captions, queries, one word, other scripts, emoji, numbers, past the context).

Deterministic (seeded), offline: the photos are the JPEGs that ship with scikit-learn.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def sample_photo_paths() -> list[Path]:
    """``china.jpg`` and ``flower.jpg`` from scikit-learn's package data (real camera JPEGs, 427×640)."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    return sorted(folder.glob("*.jpg"))


def _encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def synthetic_images(seed: int = 0) -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:300, 0:400]
    grad = np.stack([xx / 400 * 255, yy / 300 * 255, (xx + yy) / 700 * 255], -1).astype(np.uint8)
    yield "gradient", _encode(Image.fromarray(grad))
    yield "noise", _encode(Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)))
    check = (((xx // 25) + (yy // 25)) % 2 * 255).astype(np.uint8)
    yield "checkerboard", _encode(Image.fromarray(check, "L"))
    for name, colour in (("black", (0, 0, 0)), ("white", (255, 255, 255)), ("red", (220, 30, 30))):
        yield f"solid-{name}", _encode(Image.new("RGB", (240, 240), colour))
    img = Image.new("RGB", (500, 300), (30, 60, 120))
    draw = ImageDraw.Draw(img)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, 450)), int(rng.integers(0, 250))
        r, g, b = (int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x0, y0, x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(10, 120))), fill=(r, g, b))
    yield "shapes", _encode(img)
    text = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(text).text((20, 80), "clip-lambda calibration 0123456789", fill="black")
    yield "text", _encode(text)
    smooth = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).resize((300, 300))
    yield "blurred-noise", _encode(smooth.filter(ImageFilter.GaussianBlur(4)), "JPEG", quality=85)


def photo_variants(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        data = path.read_bytes()
        yield path.name, data
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        yield f"{path.stem}-crop", _encode(img.crop((w // 4, h // 4, w * 3 // 4, h * 3 // 4)), "JPEG", quality=90)
        yield f"{path.stem}-gray", _encode(img.convert("L"))
        yield (
            f"{path.stem}-flip-dark",
            _encode(Image.eval(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), lambda v: v // 3), "JPEG"),
        )


def calibration_images(seed: int = 0) -> list[tuple[str, bytes]]:
    return [*photo_variants(sample_photo_paths()), *synthetic_images(seed)]


# name → text. Empty and whitespace-only texts are left out: the engine refuses them (layer.text).
CALIBRATION_TEXTS: dict[str, str] = {
    "caption-cat": "a photo of a cat",
    "caption-dog": "A photograph of a golden retriever playing fetch on the beach at sunset.",
    "caption-apple": "a close-up of a red apple on a wooden table",
    "caption-city": "an aerial view of a city at night with lights reflecting on the river",
    "query-diagram": "diagram of a neural network with attention layers",
    "query-satellite": "satellite image of farmland, rivers and roads",
    "one-word": "red",
    "one-letter": "x",
    "upper-case": "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "accents": "Café crème brûlée à la française, naïve façade in São Paulo",
    "german": "Ein Hund läuft über die Straße",
    "cyrillic": "Привет, мир! Красная площадь зимой",
    "japanese": "東京の夜景とネオンサイン",
    "emoji": "🐱🐶 emoji party 🎉🎉🎉 👍🏽",
    "price": "price: $1,299.99 — 50% off!!! (limited time)",
    "timestamp": "2024-06-01 12:34:56 UTC, order #A-1093",
    "contractions": "it's a dog's life, isn't it? we'll see",
    "symbols": "<html> tags & symbols ~ ^ | \\ / {curly} [square] Ω≈ç√∫",
    "gibberish": "sdkfjh qwpoeiru zmxncb",
    "past-context": " ".join(
        ["a long rambling description of a crowded market street with stalls selling fruit, fabric,"]
        + ["spices, lanterns, old books and hand-painted signs in many colours"] * 8
    ),
}


def calibration_texts() -> list[tuple[str, str]]:
    return list(CALIBRATION_TEXTS.items())


CANARY_TEXT = "a photo of a red bicycle leaning against a blue wall"


def canary_image() -> bytes:
    """The image canary: a small PNG (64×48, ~2 KB) with smooth gradients and hard edges, stored in the
    manifest; tiny, so decoding it costs nothing at INIT, while the tower still runs a full 224² input."""
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    draw.rectangle((8, 8, 24, 30), fill=(250, 240, 20))
    draw.ellipse((34, 12, 58, 40), fill=(20, 30, 200))
    return _encode(img)
