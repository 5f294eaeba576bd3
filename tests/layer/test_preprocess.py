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
from tests.conftest import require
from tests.imaging import encode, varied_images

transformers = require("transformers")


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


# ------------------------------------------------------------------------------- extreme aspect ratios
def _noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(w * 7919 + h)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.parametrize("resample", [3, 2])  # CLIP's bicubic; bilinear, which is not Pillow's default
@pytest.mark.parametrize(
    "size",
    [(20, 6000), (6000, 20), (100, 7000), (7000, 90), (230, 16000), (16000, 230), (500, 40000), (3, 1000),
     (20, 6001), (6001, 20)],  # odd margins: the crop's offset must be a whole pixel
)  # fmt: skip
def test_region_path_matches_the_full_resize(size: tuple[int, int], resample: int) -> None:
    """Beyond EXACT_MAX_ASPECT only the crop's source region is resampled: the same pixels within one grey
    level, on a tiny fraction of them (noise is the worst case for rounding differences)."""
    from layer.preprocess import EXACT_MAX_ASPECT, center_crop, crop_region_resample, resize_shortest_edge

    img = _noise(*size)
    assert max(size) > EXACT_MAX_ASPECT * min(size)
    full = np.asarray(center_crop(224)(resize_shortest_edge(224, resample)(img)), dtype=int)
    region = np.asarray(crop_region_resample(img, resize_output_size(*size, 224), 224, resample), dtype=int)
    diff = np.abs(full - region)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002


def test_up_to_the_bound_the_full_resize_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from layer import preprocess as pre

    monkeypatch.setattr(pre, "crop_region_resample", lambda *a: pytest.fail("region path below the bound"))
    size = (10, 10 * pre.EXACT_MAX_ASPECT)
    out = pre.preprocess(_noise(*size), PreprocessConfig())
    full = pre.to_pixel_values(
        pre.center_crop(224)(pre.resize_shortest_edge(224, 3)(_noise(*size))), PreprocessConfig()
    )
    assert np.array_equal(out, full)


@pytest.mark.parametrize("size", [(1, 10_000), (1, 30_000), (30_000, 1), (1, 65_535)])
def test_thin_images_cost_nothing(size: tuple[int, int]) -> None:
    """A 124-byte 1×10,000 PNG used to take 8 s and 2 GB (the whole image resized to 224×2,240,000)."""
    import resource
    import time

    from layer.embedder import pixel_values

    data = encode(Image.new("L", size, 90))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    pixels = pixel_values(data, PreprocessConfig(), Limits())[0]
    assert pixels.shape == (3, 224, 224) and np.isfinite(pixels).all()
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: < 100 MiB more


def test_too_long_a_side_is_refused_before_decoding() -> None:
    from layer.errors import TooManyPixels

    with pytest.raises(TooManyPixels, match="side"):
        decode(encode(Image.new("L", (1, 100_000), 90)), Limits())


def test_each_step_can_be_turned_off_alone() -> None:
    from dataclasses import replace

    from layer import preprocess as pre

    img = _noise(300, 200)
    config = PreprocessConfig()
    only_resize = pre.preprocess(img, replace(config, do_center_crop=False))
    assert only_resize.shape == (3, 224, 336)  # shortest side 224, nothing cropped
    only_crop = pre.preprocess(img, replace(config, do_resize=False))
    assert only_crop.shape == (3, 224, 224)
    np.testing.assert_array_equal(only_crop, pre.to_pixel_values(pre.center_crop(224)(img), config))
    assert pre.preprocess(img, replace(config, do_resize=False, do_center_crop=False)).shape == (3, 200, 300)
    nearest = pre.preprocess(img, replace(config, do_center_crop=False, resample=0))
    expected = pre.to_pixel_values(img.resize((336, 224), Image.Resampling.NEAREST), config)
    np.testing.assert_array_equal(nearest, expected)  # the configured filter, not Pillow's default


def test_pixel_values_are_float32_rgb_channels_first() -> None:
    from layer import preprocess as pre

    grey = Image.new("L", (4, 2), 128)
    out = pre.to_pixel_values(grey, PreprocessConfig(do_normalize=False))
    assert out.dtype == np.float32 and out.shape == (3, 2, 4)
    np.testing.assert_array_equal(out, np.full((3, 2, 4), np.float32(128) * np.float32(1 / 255)))
    raw = pre.to_pixel_values(
        Image.new("RGB", (1, 1), (10, 20, 30)), PreprocessConfig(do_rescale=False, do_normalize=False)
    )
    assert raw.dtype == np.float32 and raw[:, 0, 0].tolist() == [10.0, 20.0, 30.0]
