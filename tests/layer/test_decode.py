"""Decoding: every supported format and mode, EXIF orientation, and the limits that stop bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from layer.decode import decode
from layer.errors import CorruptImage, EmptyImage, ImageTooLarge, NotAnImage, TooManyPixels
from layer.limits import Limits
from tests.imaging import encode, jpeg_12mp, photo_bytes, png_bomb, resized_photo

LIMITS = Limits()


@pytest.mark.parametrize(
    ("fmt", "mode", "kw"),
    [
        ("JPEG", "RGB", {"quality": 90}),
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("PNG", "RGB", {}),
        ("PNG", "P", {}),
        ("PNG", "L", {}),
        ("PNG", "LA", {}),
        ("PNG", "RGBA", {}),
        ("WEBP", "RGB", {"quality": 90}),
        ("WEBP", "RGBA", {"lossless": True}),
        ("GIF", "P", {}),
        ("TIFF", "RGB", {}),
        ("TIFF", "CMYK", {}),
        ("BMP", "RGB", {}),
    ],
)
def test_formats_and_modes_decode_to_rgb(fmt: str, mode: str, kw: dict[str, object]) -> None:
    src = resized_photo((160, 120))
    img = src.convert(mode) if mode != "P" else src.convert("P", palette=Image.Palette.ADAPTIVE)
    out = decode(encode(img, fmt, **kw), LIMITS)
    # Grey stays one byte per pixel ("L") until after the crop; everything else is RGB.
    assert out.image.mode == ("L" if mode in ("L", "LA") else "RGB")
    assert (out.width, out.height) == (160, 120)
    assert out.format == fmt
    # Content survives: lossless formats exactly, lossy ones and palettes within their measured error
    # (JPEG q75–90 ~3.9, adaptive palettes ~2.7, WebP q90 ~3.2), far below a red/blue swap (17.7).
    diff = np.abs(
        np.asarray(out.image.convert("RGB"), np.float32)
        - np.asarray(src.convert("L").convert("RGB") if mode in ("L", "LA") else src, np.float32)
    )
    lossy = fmt == "JPEG" or (fmt == "WEBP" and "lossless" not in kw) or mode == "P"
    assert diff.mean() <= (5.0 if lossy else 0.0)


def test_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (50, 40), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (0, 0, 25, 40))  # opaque blue left half
    out = np.asarray(decode(encode(img), LIMITS).image)
    assert tuple(out[20, 40]) == (255, 255, 255)
    assert tuple(out[20, 5]) == (0, 0, 255)


def test_palette_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    img.paste(1, (0, 0, 10, 20))
    out = np.asarray(decode(encode(img, transparency=0), LIMITS).image)
    assert tuple(out[5, 15]) == (255, 255, 255)
    assert tuple(out[5, 5]) == (10, 200, 10)


def test_sixteen_bit_scaling_is_round_of_v_over_257() -> None:
    from layer.decode import _sixteen_to_l

    v = np.arange(0, 65536, dtype=np.uint16).reshape(256, 256)
    expected = np.clip(np.rint(v.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(_sixteen_to_l(Image.fromarray(v))), expected)  # every 16-bit value
    signed = np.array([[-70000, -129, -1, 0, 128, 129, 65535, 70000]], dtype=np.int32)
    assert np.asarray(_sixteen_to_l(Image.fromarray(signed, "I"))).tolist() == [[0, 0, 0, 0, 0, 1, 255, 255]]


def test_grey_with_alpha_is_composited_in_one_channel() -> None:
    img = Image.new("LA", (30, 20), (40, 0))  # transparent: white
    img.paste((40, 255), (0, 0, 15, 20))  # opaque grey 40
    out = decode(encode(img), LIMITS).image
    assert out.mode == "L" and out.getpixel((5, 5)) == 40 and out.getpixel((25, 5)) == 255


def test_sixteen_bit_grayscale_is_scaled_not_saturated() -> None:
    arr = np.full((30, 30), 32896, dtype=np.uint16)  # mid grey in 16 bits
    img = Image.fromarray(arr)
    assert img.mode.startswith("I")
    out = np.asarray(decode(encode(img), LIMITS).image)
    assert np.all(out == 128)


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ((250, 0, 0), (0, 250, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(decode(buf.getvalue(), LIMITS).image)
    assert out[15, 15, 0] > 200 and out[15, 15, 1] < 50


@pytest.mark.parametrize(("orientation", "size"), [(1, (200, 100)), (3, (200, 100)), (6, (100, 200)), (8, (100, 200))])
def test_exif_orientation_applied(orientation: int, size: tuple[int, int]) -> None:
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = decode(encode(img, "JPEG", exif=exif.tobytes(), quality=95), LIMITS)
    assert (out.width, out.height) == size == out.image.size
    arr = np.asarray(out.image.convert("L"))
    corner = {1: arr[:20, :20], 3: arr[-20:, -20:], 6: arr[:20, -20:], 8: arr[-20:, :20]}[orientation]
    assert corner.mean() > 200


def test_exif_orientation_can_be_ignored_like_hf() -> None:
    img = Image.new("RGB", (200, 100))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode(encode(img, "JPEG", exif=exif.tobytes()), LIMITS, exif=False)
    assert out.image.size == (200, 100)
    for orientation in (None, 6):  # the pixels as stored: neither turned nor mirrored
        kw = {} if orientation is None else {"exif": exif.tobytes()}
        stored = decode(encode(img, "PNG", **kw), LIMITS, exif=False)
        assert (stored.width, stored.height) == (200, 100)
        assert np.array_equal(np.asarray(stored.image), np.asarray(img))


def test_draft_downscales_large_jpeg_but_reports_original_size() -> None:
    out = decode(jpeg_12mp(), LIMITS, draft_min_side=448)
    assert (out.width, out.height) == (4000, 3000)
    assert 448 <= min(out.image.size) < 900  # 1/4 scale: 1000x750


def test_empty_bytes() -> None:
    with pytest.raises(EmptyImage) as err:
        decode(b"", LIMITS)
    assert err.value.http_status == 400 and err.value.code == "empty_image"


def test_too_many_bytes_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge) as err:
        decode(photo_bytes()["china.jpg"], Limits(max_bytes=1000))
    assert err.value.http_status == 413


def test_decompression_bomb_refused_from_header() -> None:
    bomb = png_bomb()
    assert len(bomb) < 200
    with pytest.raises(TooManyPixels) as err:
        decode(bomb, LIMITS)
    assert err.value.http_status == 413 and "10000000000" in err.value.message


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(TooManyPixels):
        decode(encode(resized_photo((200, 200))), Limits(max_pixels=39_999))
    assert decode(encode(resized_photo((200, 200))), Limits(max_pixels=40_000)).width == 200


@pytest.mark.parametrize("data", [b"hello world, not an image", b"%PDF-1.4\n", b"\x00" * 100])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImage) as err:
        decode(data, LIMITS)
    assert err.value.http_status == 422


def test_unsupported_format_is_refused_even_if_pillow_knows_it() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    with pytest.raises(NotAnImage):
        decode(eps, LIMITS)
    with pytest.raises(NotAnImage):
        decode(encode(Image.new("RGB", (10, 10)), "PPM"), LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_corrupt(fmt: str) -> None:
    data = encode(resized_photo((300, 200)), fmt)
    with pytest.raises((CorruptImage, NotAnImage)) as err:
        decode(data[: len(data) // 2], LIMITS)
    assert err.value.http_status == 422


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    return encode(img, "JPEG", **kw)


@pytest.mark.parametrize("kept", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("draft", [None, 336])
def test_truncated_jpeg_ending_in_eoi_is_refused(kept: float, draft: int | None) -> None:
    """libjpeg pads a JPEG whose data ends early in an EOI marker with flat blocks and only warns."""
    data = _jpeg(resized_photo((640, 480)), quality=90)
    scan = data.index(b"\xff\xda")
    cut = data[: scan + int((len(data) - scan) * kept)] + b"\xff\xd9"
    with pytest.raises(CorruptImage, match="truncated"):
        decode(cut, LIMITS, draft_min_side=draft)


def test_jpeg_header_claiming_more_pixels_than_its_data_is_refused() -> None:
    data = bytearray(_jpeg(Image.new("RGB", (8, 8), (100, 150, 200))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (4000).to_bytes(2, "big") + (3000).to_bytes(2, "big")  # height, width
    with pytest.raises(CorruptImage, match="truncated"):
        decode(bytes(data), LIMITS)


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (300, 200), (1, 254, 3)),  # exactly the first sentinel, edge to edge
        Image.new("RGB", (300, 200), (253, 2, 251)),
        Image.new("L", (300, 200), 1),
        resized_photo((333, 211)).convert("CMYK"),
    ],
)
def test_complete_jpegs_are_never_taken_for_truncated(img: Image.Image) -> None:
    for kw in ({}, {"progressive": True}, {"quality": 100, "subsampling": 0}, {"optimize": True}):
        out = decode(_jpeg(img, **kw), LIMITS)
        assert out.image.size == img.size
        if img.mode != "CMYK":
            assert np.abs(np.asarray(out.image, int) - np.asarray(img, int)).max() <= 3


def test_pixel_limit_is_ours_and_checked_before_decoding() -> None:
    """9000×9000 = 81 MP: above our 64-MP limit, below Pillow's own warning (89 MP) and refusal (179 MP), so
    only our check can refuse it; the PNG has no pixel data, so refusing it after decoding would say
    corrupt_image instead."""
    with pytest.raises(TooManyPixels, match="the limit is 64000000"):
        decode(png_bomb(9000, 9000), Limits())
    with pytest.raises(TooManyPixels, match="the limit is 1000"):
        decode(png_bomb(40, 30), Limits(max_pixels=1000))


@pytest.mark.parametrize(("orientation", "size"), [(2, (200, 100)), (4, (200, 100)), (5, (100, 200)), (7, (100, 200))])
def test_mirrored_exif_orientations(orientation: int, size: tuple[int, int]) -> None:
    """The mirrored orientations (2, 4, 5, 7) put the marker where ImageOps.exif_transpose would."""
    from PIL import ImageOps

    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(img, "PNG", exif=exif.tobytes())
    out = decode(data, LIMITS)
    assert (out.width, out.height) == size == out.image.size
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert np.array_equal(np.asarray(out.image), np.asarray(expected))


def test_mpo_phone_photo_decodes_its_first_picture() -> None:
    """Multi-picture JPEGs (phones' portrait and 3D shots) open as MPO; the first picture is the photo."""
    first, second = resized_photo((320, 240)), resized_photo((320, 240), "flower.jpg")
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second], quality=95)
    out = decode(buf.getvalue(), LIMITS)
    assert out.format == "MPO" and out.image.size == (320, 240)
    to_first = np.abs(np.asarray(out.image, int) - np.asarray(first, int)).mean()
    to_second = np.abs(np.asarray(out.image, int) - np.asarray(second, int)).mean()
    assert to_first < 3 < 20 < to_second


def test_float_grey_is_rounded_and_clipped_to_8_bits() -> None:
    arr = np.array([[-5.0, 0.4, 0.6, 127.5, 128.49, 254.6, 255.0, 1e6] * 4] * 4, dtype=np.float32)
    img = Image.fromarray(arr, "F")
    out = decode(encode(img, "TIFF"), LIMITS).image
    assert out.mode == "L"
    assert np.asarray(out)[0, :8].tolist() == [0, 0, 1, 128, 128, 255, 255, 255]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P"])
def test_grey_stays_one_byte_per_pixel(mode: str) -> None:
    """Grey sources decode to "L" (a third of RGB's memory until after the crop); a palette of colours to RGB."""
    img = Image.new("RGB", (40, 30), (200, 30, 30)).convert("P") if mode == "P" else Image.new(mode, (40, 30))
    out = decode(encode(img), LIMITS).image
    assert out.mode == ("RGB" if mode == "P" else "L")


def test_a_grey_jpeg_is_drafted_too() -> None:
    big = encode(resized_photo((1600, 1200)).convert("L"), "JPEG", quality=90)
    out = decode(big, LIMITS, draft_min_side=336)
    assert out.image.mode == "L" and min(out.image.size) < 1200 and (out.width, out.height) == (1600, 1200)


def test_the_byte_limit_is_inclusive() -> None:
    data = encode(Image.new("RGB", (8, 8)))
    assert decode(data, Limits(max_bytes=len(data))).width == 8
    with pytest.raises(ImageTooLarge):
        decode(data, Limits(max_bytes=len(data) - 1))


def test_the_frame_type_is_read_past_segments_of_any_length() -> None:
    from layer.decode import _sof_marker

    def segment(marker: int, length: int) -> bytes:
        return bytes([0xFF, marker]) + length.to_bytes(2, "big") + bytes(length - 2)

    app1 = segment(0xE1, 300)  # longer than 255: the length is big-endian, two bytes
    for sof in (0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
        assert _sof_marker(b"\xff\xd8" + app1 + segment(0xC4, 20) + segment(0xCC, 6) + segment(sof, 17)) == sof
    assert _sof_marker(b"\xff\xd8" + segment(0xC8, 4) + segment(0xC2, 17)) == 0xC2  # JPG extension: not a frame
    assert _sof_marker(b"\xff\xd8" + app1 + bytes([0xFF, 0xDA, 0, 8])) is None  # scan before a frame
    assert _sof_marker(b"\xff\xd8" + segment(0xD0, 4)) is None  # RST is not a frame
    assert _sof_marker(b"\xff\xd8\xff\xc0\x00") is None and _sof_marker(b"\xff\xd8\xff\xc2\x00\x11") == 0xC2
    assert _sof_marker(b"\xff\xd8\x00\xc0\x00\x11") is None  # not at a marker


def _band_test_image(mode: str) -> Image.Image:
    """A 40×30 image whose every row differs, in ``mode`` (alpha varies by row and column)."""
    photo = resized_photo((40, 30))
    if mode == "RGBA":
        img = photo.convert("RGBA")
        img.putalpha(Image.fromarray((np.add.outer(np.arange(30) * 6, np.arange(40) * 2) % 256).astype(np.uint8)))
        return img
    if mode == "LA":
        return _band_test_image("RGBA").convert("LA")
    if mode == "P":
        return photo.convert("P", palette=Image.Palette.ADAPTIVE)
    return photo.convert(mode)


@pytest.mark.parametrize(
    ("mode", "fmt"), [("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("CMYK", "TIFF"), ("1", "PNG")]
)
def test_band_by_band_conversion_equals_converting_the_whole_image(
    mode: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conversions run a few rows at a time (memory); the result is the whole image's conversion."""
    from layer import decode as dec

    monkeypatch.setattr(dec, "_BAND_PIXELS", 40 * 7)  # bands of 7 rows: 7, 7, 7, 7, 2
    img = _band_test_image(mode)
    out = decode(encode(img, fmt), LIMITS).image
    if mode in ("RGBA", "LA"):  # composited on white in one go
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        expected = Image.alpha_composite(white, img.convert("RGBA")).convert("RGB" if mode == "RGBA" else "L")
    else:
        expected = img.convert("L" if mode == "1" else "RGB")
    assert out.mode == expected.mode and np.array_equal(np.asarray(out), np.asarray(expected))


def test_each_row_is_converted_once_a_band_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from layer import decode as dec

    monkeypatch.setattr(dec, "_BAND_PIXELS", 40 * 7)
    img = _band_test_image("P")
    bands: list[tuple[int, int]] = []

    def convert(band: Image.Image) -> Image.Image:
        bands.append(band.size)
        return band.convert("RGB")

    out = dec._by_bands(img, "RGB", convert)
    assert bands == [(40, 7)] * 4 + [(40, 2)]  # the rows once each, never the whole image
    assert np.array_equal(np.asarray(out), np.asarray(img.convert("RGB")))


def test_grey_with_a_transparent_value_is_composited_in_one_channel() -> None:
    img = Image.new("L", (30, 20), 7)  # 7 is the transparent value (PNG tRNS): white
    img.paste(90, (0, 0, 15, 20))
    out = decode(encode(img, transparency=7), LIMITS).image
    assert out.mode == "L" and out.getpixel((5, 5)) == 90 and out.getpixel((25, 5)) == 255


def _premultiplied_grey_tiff(img: Image.Image) -> bytes:
    """``img`` ("LA") as a TIFF whose alpha is marked associated (ExtraSamples = 1), which Pillow opens as "La"
    (it cannot write one)."""
    import struct

    data = bytearray(encode(img, "TIFF"))
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 338:  # ExtraSamples: 2 (unassociated) → 1 (associated)
            struct.pack_into("<H", data, entry + 8, 1)
    return bytes(data)


def test_premultiplied_grey_alpha_is_composited_on_white_in_one_channel() -> None:
    """Stored grey v with alpha a is premultiplied: the colour v·255/a over white is v + 255 − a."""
    img = Image.new("LA", (30, 20), (0, 0))  # transparent
    img.paste((100, 255), (0, 0, 10, 20))  # opaque
    img.paste((50, 128), (10, 0, 20, 20))  # half-transparent, premultiplied
    data = _premultiplied_grey_tiff(img)
    assert Image.open(io.BytesIO(data)).mode == "La"
    out = decode(data, LIMITS).image
    assert out.mode == "L"
    assert (out.getpixel((5, 5)), out.getpixel((25, 5))) == (100, 255)
    assert abs(int(out.getpixel((15, 5))) - (50 + 255 - 128)) <= 1


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_an_image_that_needs_no_conversion_is_not_copied(mode: str) -> None:
    """An RGB or grey decode is passed on as it is: a copy would need the decoded size again (64 MP: 192 MB)."""
    from layer.decode import _flatten

    img = Image.open(io.BytesIO(encode(Image.new(mode, (20, 10), 128))))
    img.load()
    assert _flatten(img) is img


@pytest.mark.parametrize("missing", [64, 100])
def test_a_jpeg_cut_a_few_blocks_before_its_end_is_refused(missing: int) -> None:
    """The bytes that let libjpeg read ahead past a complete stream are decoded as data when the stream is
    short; they must not be enough to finish a last row whose blocks are missing."""
    data = _jpeg(resized_photo((640, 480)), quality=90)
    with pytest.raises(CorruptImage, match="truncated"):
        decode(data[: -2 - missing] + b"\xff\xd9", LIMITS)


def test_a_complete_jpeg_without_its_end_marker_decodes_every_pixel() -> None:
    """Some encoders leave out the final EOI marker: nothing is missing, so nothing may change."""
    data = _jpeg(resized_photo((320, 240)), quality=90)
    assert data.endswith(b"\xff\xd9")
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(decode(data[:-2], LIMITS).image), expected)


def test_a_jpeg_whose_stream_breaks_after_its_picture_is_corrupt() -> None:
    """A decoding error is reported as one, even when every row was decoded before it (here a second,
    malformed frame header after the scan, which Pillow refuses too)."""
    data = _jpeg(resized_photo((320, 240)), quality=90)
    broken = data[:-2] + b"\xff\xc0\x00\x03x" + b"\xff\xd9"
    with pytest.raises(OSError, match="broken data stream"):
        Image.open(io.BytesIO(broken)).load()
    with pytest.raises(CorruptImage):
        decode(broken, LIMITS)


def test_an_mpo_phone_photo_is_drafted_like_a_jpeg() -> None:
    first, second = resized_photo((1600, 1200)), resized_photo((320, 240), "flower.jpg")
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second], quality=90)
    out = decode(buf.getvalue(), LIMITS, draft_min_side=336)
    assert out.format == "MPO" and (out.width, out.height) == (1600, 1200)
    assert 336 <= min(out.image.size) < 1200
