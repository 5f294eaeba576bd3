"""PreprocessConfig: the preprocessor_config.json that transformers, fastembed and the engine all read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layer.config import CLIP_MEAN, CLIP_STD, PIL_BICUBIC, PreprocessConfig

OTHER = PreprocessConfig(
    shortest_edge=256,
    crop_size=240,
    resample=2,
    rescale_factor=0.5,
    image_mean=(0.1, 0.2, 0.3),
    image_std=(0.4, 0.5, 0.6),
    do_resize=False,
    do_center_crop=False,
    do_rescale=False,
    do_normalize=False,
    do_convert_rgb=False,
)


def test_defaults_are_clips() -> None:
    c = PreprocessConfig.from_dict({})
    assert c == PreprocessConfig()
    assert (c.shortest_edge, c.crop_size, c.resample, c.rescale_factor) == (224, 224, PIL_BICUBIC, 1 / 255)
    assert (c.image_mean, c.image_std) == (CLIP_MEAN, CLIP_STD)
    assert all((c.do_resize, c.do_center_crop, c.do_rescale, c.do_normalize, c.do_convert_rgb))


def test_every_field_round_trips_through_the_hf_json(tmp_path: Path) -> None:
    d = OTHER.to_hf_dict()
    assert d["image_processor_type"] == "CLIPImageProcessor"
    assert d["size"] == {"shortest_edge": 256} and d["crop_size"] == {"height": 240, "width": 240}
    assert PreprocessConfig.from_dict(d) == OTHER
    (tmp_path / "p.json").write_text(json.dumps(d))
    assert PreprocessConfig.from_file(tmp_path / "p.json") == OTHER


def test_transformers_reads_the_same_values() -> None:
    from transformers import CLIPImageProcessor

    hf = CLIPImageProcessor(**OTHER.to_hf_dict())
    assert hf.size == {"shortest_edge": 256} and hf.crop_size == {"height": 240, "width": 240}
    assert (hf.resample, hf.rescale_factor, list(hf.image_mean), list(hf.image_std)) == (
        2,
        0.5,
        [0.1, 0.2, 0.3],
        [0.4, 0.5, 0.6],
    )
    assert not any((hf.do_resize, hf.do_center_crop, hf.do_rescale, hf.do_normalize, hf.do_convert_rgb))


@pytest.mark.parametrize(
    ("size", "expected"),
    [(200, 200), ({"shortest_edge": 210}, 210), ({"height": 220, "width": 220}, 220)],
)
def test_every_size_spelling_hf_accepts(size: object, expected: int) -> None:
    c = PreprocessConfig.from_dict({"size": size, "crop_size": size})
    assert c.shortest_edge == expected and c.crop_size == expected


def test_a_non_square_size_is_refused() -> None:
    for size in ({"height": 224, "width": 200}, {"height": 224}, {"width": 224}):
        with pytest.raises(ValueError, match="non-square"):
            PreprocessConfig.from_dict({"crop_size": size})
        with pytest.raises(ValueError, match="non-square"):
            PreprocessConfig.from_dict({"size": size})
