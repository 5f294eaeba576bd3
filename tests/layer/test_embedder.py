"""The engine's public surface on the built model: Embedder.from_dir, embed_one/embed, the model-only path,
l2_normalize, and what it reports (fast: no torch, the cached test model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layer import Embedder, Embedding, Limits
from layer.cpu import CpuInfo
from layer.embedder import l2_normalize
from layer.errors import ModelDirError, NotAnImage, TooManyPixels
from tests.imaging import encode, photo_bytes, resized_photo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Embedder:
    return Embedder.from_dir(model_dir, threads=1)


def test_l2_normalize_returns_unit_vectors_and_the_norms() -> None:
    features = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float32)
    unit, norms = l2_normalize(features)
    assert unit.dtype == np.float32 and norms.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(norms, [5.0, 0.0, 1e-3], rtol=1e-6)


def test_embed_one_returns_the_contract(engine: Embedder, model_dir: Path) -> None:
    emb = engine.embed_one(photo_bytes()["china.jpg"])
    assert isinstance(emb, Embedding)
    assert emb.vector.shape == (512,) and emb.dim == 512 and emb.vector.dtype == np.float32
    assert abs(float(np.linalg.norm(emb.vector)) - 1.0) < 1e-5 and emb.norm > 0
    assert (emb.width, emb.height, emb.format) == (640, 427, "JPEG")
    assert emb.model == engine.model_id and "untrained" in emb.model and not emb.model.endswith("@fp32")
    t = emb.timings
    assert t.decode_ms > 0 and t.preprocess_ms > 0 and t.inference_ms > 0
    raw = engine.run_model(engine.to_pixels(photo_bytes()["china.jpg"])[0][None])
    assert float(np.linalg.norm(raw)) == pytest.approx(emb.norm, rel=1e-5)  # vector × norm = raw features


def test_a_bad_image_leaves_the_engine_as_it_was(engine: Embedder) -> None:
    a = encode(resized_photo((200, 150), "flower.jpg"))
    before = engine.embed_one(a).vector
    with pytest.raises(NotAnImage):
        engine.embed_one(b"junk")
    assert np.array_equal(engine.embed_one(a).vector, before)


def test_model_only_path_is_one_image_per_run(engine: Embedder) -> None:
    images = [photo_bytes()[n] for n in ("china.jpg", "flower.jpg")]
    images += [encode(resized_photo(size, "flower.jpg")) for size in ((300, 200), (200, 300), (250, 250))]
    pixels = np.stack([engine.to_pixels(data)[0] for data in images])  # more images than channels
    unit, norms = engine.embed_pixels(pixels)
    assert unit.shape == (5, 512) and norms.shape == (5,)
    for i in range(5):
        single, _ = engine.embed_pixels(pixels[i : i + 1])
        assert np.array_equal(single[0], unit[i])  # batch-invariant: the same bits alone or together


def test_fp32_precision_and_its_model_id(model_dir: Path, engine: Embedder) -> None:
    fp32 = Embedder.from_dir(model_dir, precision="fp32", threads=1)
    assert fp32.model_id == engine.model_id + "@fp32" and fp32.session_settings.optimization == "all"
    assert fp32.model_path == model_dir / "model.fp32.onnx"  # the fp32 export, not the int8 model
    assert fp32.session_settings.config == ()  # the int8 tuning is not for the fp32 export
    data = photo_bytes()["flower.jpg"]
    assert float(fp32.embed_one(data).vector @ engine.embed_one(data).vector) >= 0.9998


def test_limits_reach_the_decoder(model_dir: Path) -> None:
    small = Embedder.from_dir(model_dir, threads=1, limits=Limits(max_pixels=10_000))
    with pytest.raises(TooManyPixels):
        small.embed_one(photo_bytes()["china.jpg"])


def test_missing_or_corrupt_model_directory_is_a_clear_error(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelDirError, match=r"manifest\.json not found"):
        Embedder.from_dir(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        Embedder.from_dir(tmp_path)
    (tmp_path / "manifest.json").write_text((model_dir / "manifest.json").read_text())
    with pytest.raises(ModelDirError, match=r"model\.onnx not found"):
        Embedder.from_dir(tmp_path)


def test_cpu_report_names_the_path_and_the_session(engine: Embedder) -> None:
    report = engine.cpu_report()
    cpu = CpuInfo.detect()
    assert (report["kernel_path"], report["arch"], report["model"]) == (cpu.kernel_path, cpu.arch, cpu.model)
    assert report["session_config"] == dict(engine.session_settings.config)
    assert report["graph_optimization"] == engine.session_settings.optimization
    assert report["gate_covered"] is True and report["gate"]["path"] == cpu.kernel_path


def test_a_gate_that_failed_or_never_ran_on_this_cpu_does_not_cover_it(model_dir: Path) -> None:
    from layer.config import PreprocessConfig
    from layer.manifest import Manifest

    path = CpuInfo.detect().kernel_path
    for cpu_paths in ([{"path": path, "status": "failed"}], [{"path": path, "status": "not_run"}], []):
        manifest = Manifest(model_id="m", cpu_paths=cpu_paths)
        report = Embedder(model_dir / "model.onnx", PreprocessConfig(), manifest=manifest).cpu_report()
        assert report["gate_covered"] is False and report["gate"] == (cpu_paths[0] if cpu_paths else None)


def _rotated_jpeg() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display
    return encode(resized_photo((320, 200), "china.jpg"), "JPEG", exif=exif.tobytes(), quality=90)


def test_the_defaults_take_the_fast_jpeg_path_and_apply_exif(model_dir: Path) -> None:
    from layer.config import PreprocessConfig
    from layer.embedder import pixel_values

    big = encode(resized_photo((1920, 1080), "china.jpg"), "JPEG", quality=90)
    _, fast, _ = pixel_values(big, PreprocessConfig(), Limits())
    _, exact, _ = pixel_values(big, PreprocessConfig(), Limits(), fast_jpeg=False)
    assert min(fast.image.size) < 1080 == min(exact.image.size) and (fast.width, fast.height) == (1920, 1080)
    assert min(fast.image.size) >= 224 * 1.5  # the draft keeps 1.5× the resize target
    _, turned, _ = pixel_values(_rotated_jpeg(), PreprocessConfig(), Limits())
    _, as_stored, _ = pixel_values(_rotated_jpeg(), PreprocessConfig(), Limits(), exif=False)
    assert (turned.width, turned.height, as_stored.width, as_stored.height) == (200, 320, 320, 200)
    for engine in (Embedder.from_dir(model_dir, threads=1), Embedder(model_dir / "model.onnx", PreprocessConfig())):
        assert engine.fast_jpeg is True and engine.exif is True
        assert engine.embed_one(_rotated_jpeg()).width == 200
        assert min(engine.to_pixels(big)[1].image.size) < 1080  # drafted


def test_from_dir_passes_every_choice_through(model_dir: Path) -> None:
    from layer.manifest import Manifest

    e = Embedder.from_dir(model_dir, threads=1, fast_jpeg=False, exif=False)
    assert (e.fast_jpeg, e.exif, e.session_settings.threads) == (False, False, 1)
    assert e.session.get_session_options().intra_op_num_threads == 1
    assert e.manifest == Manifest.read(model_dir) and e.cpu == CpuInfo.detect()
    assert e.embed_one(_rotated_jpeg()).width == 320  # exif=False reached the decoder
    big = encode(resized_photo((1920, 1080), "china.jpg"), "JPEG", quality=90)
    assert e.to_pixels(big)[1].image.size == (1920, 1080)  # fast_jpeg=False reached the decoder: no draft
    assert e.model_path.name == "model.onnx"


def test_a_bare_engine_is_labelled_unknown(model_dir: Path) -> None:
    from layer.config import PreprocessConfig

    e = Embedder(model_dir / "model.onnx", PreprocessConfig())
    assert (e.model_id, e.manifest.model_id, e.dim, e.limits) == ("unknown", "unknown", 512, Limits())
    assert e.cpu == CpuInfo.detect() and e.cpu_report()["kernel_path"] == e.cpu.kernel_path


def test_the_cpu_and_the_dimension_given_to_an_engine(model_dir: Path) -> None:
    """A CPU passed in is the one reported; the dimension is the model's output, whatever a manifest says."""
    from layer.config import PreprocessConfig
    from layer.manifest import Manifest

    graviton = CpuInfo(arch="aarch64", model="Arm Neoverse-V1 (Graviton3)", flags=frozenset({"asimddp", "i8mm"}))
    e = Embedder(model_dir / "model.onnx", PreprocessConfig(), cpu=graviton, manifest=Manifest(model_id="m", dim=768))
    assert e.cpu == graviton and e.cpu_report()["kernel_path"] == "arm64-i8mm"
    assert e.dim == 512 == e.embed_one(photo_bytes()["china.jpg"]).vector.shape[0]


def test_the_int8_model_is_tuned_for_the_cpu_it_runs_on(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX2 CPU without VNNI the int8 session re-encodes the weights (graph level "extended"), whatever
    CPU runs the test."""
    haswell = CpuInfo(arch="x86_64", model="Intel(R) Xeon(R) CPU E5-2680 v3", flags=frozenset({"avx2"}))
    monkeypatch.setattr(CpuInfo, "detect", classmethod(lambda cls, path=None: haswell))
    e = Embedder.from_dir(model_dir, threads=1)
    assert e.cpu == haswell
    assert (e.session_settings.config, e.session_settings.optimization) == (
        (("session.x64quantprecision", "1"),),
        "extended",
    )
    assert e.session.get_session_options().get_session_config_entry("session.x64quantprecision") == "1"


def test_an_fp32_only_build_runs_its_export_as_fp32(model_dir: Path, tmp_path: Path) -> None:
    import json

    for name in ("model.fp32.onnx", "preprocessor_config.json"):
        (tmp_path / name).symlink_to((model_dir / name).resolve())
    (tmp_path / "model.onnx").symlink_to((model_dir / "model.fp32.onnx").resolve())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "precision": "fp32", "quantization": None}))
    e = Embedder.from_dir(tmp_path, threads=1)
    assert e.model_id.endswith("@fp32") and e.session_settings.optimization == "all"
    assert e.session_settings.config == ()


def test_verify_refuses_files_that_do_not_match_the_manifest(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    for p in model_dir.iterdir():
        (tmp_path / p.name).symlink_to(p.resolve())
    Embedder.from_dir(tmp_path, threads=1, verify=True)
    (tmp_path / "preprocessor_config.json").unlink()
    shutil.copy(model_dir / "preprocessor_config.json", tmp_path / "preprocessor_config.json")
    with (tmp_path / "preprocessor_config.json").open("a") as f:
        f.write("\n")
    Embedder.from_dir(tmp_path, threads=1)  # not verified at each cold start
    with pytest.raises(ModelDirError, match="sha256"):
        Embedder.from_dir(tmp_path, threads=1, verify=True)


def test_timings_are_milliseconds_of_this_call(engine: Embedder) -> None:
    import time

    data = photo_bytes()["china.jpg"]
    t0 = time.perf_counter()
    t = engine.embed_one(data).timings
    wall_ms = (time.perf_counter() - t0) * 1e3
    assert t.decode_ms > 0.05 and t.preprocess_ms > 0.05 and t.inference_ms > 0.05
    assert t.decode_ms + t.preprocess_ms + t.inference_ms <= wall_ms
