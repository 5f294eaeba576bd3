"""Exact preprocessing equals the slow (PIL) ``CLIPImageProcessor`` of transformers within 1e-5."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layer.config import PreprocessConfig
from layer.decode import decode
from layer.limits import Limits
from layer.preprocess import preprocess, resize_output_size
from tests.imaging import varied_images

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_processor() -> object:
    return transformers.CLIPImageProcessor()


@pytest.mark.parametrize("name", sorted(varied_images()))
def test_exact_path_matches_clip_image_processor(name: str, hf_processor: object) -> None:
    data = varied_images()[name]
    ours = preprocess(decode(data, Limits()).image, PreprocessConfig())
    theirs = hf_processor(images=Image.open(io.BytesIO(data)), return_tensors="np")["pixel_values"][0]  # type: ignore[operator]
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((640, 427), (335, 224)), ((427, 640), (224, 335)), ((224, 224), (224, 224)), ((1000, 223), (1004, 224))],
)
def test_resize_truncates_long_side_like_hf(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resize_output_size(*size, 224) == expected


def test_config_round_trips_through_hf_format(tmp_path: Path) -> None:
    cfg = PreprocessConfig()
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg.to_hf_dict()))
    assert PreprocessConfig.from_file(tmp_path / "preprocessor_config.json") == cfg
    hf = transformers.CLIPImageProcessor.from_pretrained(tmp_path)
    assert hf.size["shortest_edge"] == 224 and hf.crop_size["height"] == 224
    assert list(hf.image_mean) == list(cfg.image_mean)


def test_legacy_integer_sizes_are_read() -> None:
    cfg = PreprocessConfig.from_dict({"size": 256, "crop_size": 240})
    assert (cfg.shortest_edge, cfg.crop_size) == (256, 240)
