"""The accuracy gate's inputs (layer/convert/calibration.py): seeded, offline, every one of them something the
engine takes (the gate runs them through the engine's own decoder and tokenizer)."""

from __future__ import annotations

from layer.convert.calibration import (
    CALIBRATION_TEXTS,
    CANARY_TEXT,
    calibration_images,
    calibration_texts,
    canary_image,
    sample_photo_paths,
)
from layer.decode import decode
from layer.limits import Limits
from layer.text import check_text


def test_the_images_are_seeded_named_once_and_all_decodable() -> None:
    images = calibration_images(0)
    names = [name for name, _ in images]
    assert len(names) == len(set(names)) >= 15
    assert images == calibration_images(0)  # byte for byte: a build gates on the same inputs every time
    other = dict(calibration_images(1))
    assert other["noise"] != dict(images)["noise"] and other["china.jpg"] == dict(images)["china.jpg"]
    for name, data in images:
        decoded = decode(data, Limits())
        assert decoded.image.mode in ("RGB", "L") and min(decoded.width, decoded.height) >= 64, name


def test_the_photos_are_scikit_learns_and_each_has_its_variants() -> None:
    assert [p.name for p in sample_photo_paths()] == ["china.jpg", "flower.jpg"]
    names = {name for name, _ in calibration_images()}
    for stem in ("china", "flower"):
        assert {f"{stem}.jpg", f"{stem}-crop", f"{stem}-gray", f"{stem}-flip-dark"} <= names


def test_every_text_is_one_the_engine_takes_and_one_runs_past_the_context() -> None:
    assert calibration_texts() == list(CALIBRATION_TEXTS.items())
    for name, text in [*calibration_texts(), ("canary", CANARY_TEXT)]:
        assert check_text(text) == text, name  # not empty, not whitespace, within the API's limit
    assert len(CALIBRATION_TEXTS["past-context"].split()) > 77  # more words than CLIP's 77 tokens
    assert len({t for _, t in calibration_texts()}) == len(CALIBRATION_TEXTS)


def test_the_canary_image_is_tiny_and_deterministic() -> None:
    data = canary_image()
    assert data == canary_image() and len(data) < 4096
    decoded = decode(data, Limits())
    assert (decoded.width, decoded.height, decoded.format, decoded.image.mode) == (64, 48, "PNG", "RGB")
