"""The engine's public surface on the built model: Embedder.from_dir (towers, probe, self-check), embed_one, the
model-only path, and what it reports (fast: no torch, the cached test model)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from layer import Embedder, Embedding, Limits
from layer.config import PreprocessConfig
from layer.cpu import CpuInfo, Probe, int8_tuning, probe_u8s8
from layer.embedder import pixel_values
from layer.errors import ModelDirError, NotAnImage, TooManyPixels
from layer.manifest import Manifest
from tests.imaging import encode, photo_bytes, resized_photo

pytestmark = pytest.mark.slow

X64_PRECISION = ("session.x64quantprecision", "1")
HASWELL = CpuInfo(arch="x86_64", model="Intel(R) Xeon(R) CPU E5-2680 v3", flags=frozenset({"avx2"}))
CASCADE = CpuInfo(arch="x86_64", model="Intel(R) Xeon(R) Platinum 8259CL", flags=frozenset({"avx2", "avx512_vnni"}))
GRAVITON3 = CpuInfo(arch="aarch64", model="Arm Neoverse-V1 (Graviton3)", flags=frozenset({"asimddp", "i8mm"}))


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Embedder:
    return Embedder.from_dir(model_dir, threads=1)


def with_cpu(monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo) -> None:
    """``CpuInfo.detect`` reports ``cpu`` (its flags); the probe still measures this machine."""
    monkeypatch.setattr(CpuInfo, "detect", classmethod(lambda cls, path=None: cpu))


def test_embed_one_returns_the_contract(engine: Embedder) -> None:
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


def test_from_dir_loads_the_image_tower_and_checks_it(engine: Embedder, model_dir: Path) -> None:
    assert engine.image.spec == Manifest.read(model_dir).image and engine.image.path == model_dir / "model.onnx"
    assert engine.session is engine.image.session and engine.session_settings is engine.image.settings
    assert engine.towers() == {"image": engine.image} and engine.text is None
    assert engine.self_check is not None and engine.self_check.passed
    assert [t.tower for t in engine.self_check.towers] == ["image"]


def test_fp32_precision_and_its_model_id(model_dir: Path, engine: Embedder) -> None:
    fp32 = Embedder.from_dir(model_dir, precision="fp32", threads=1, text=True)
    assert fp32.model_id == engine.model_id + "@fp32" and fp32.session_settings.optimization == "all"
    assert fp32.image.path == model_dir / "model.fp32.onnx"  # the fp32 export, not the int8 model
    assert fp32.text is not None and fp32.text.tower.path == model_dir / "text_model.fp32.onnx"
    assert fp32.text.model_id == fp32.model_id
    assert fp32.session_settings.config == ()  # the int8 tuning is not for the fp32 export
    assert fp32.probe is None and fp32.cpu_report()["probe"] is None  # no int8 kernel to probe
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


def test_an_image_tower_without_a_preprocessor_config_is_refused(tmp_path: Path, model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["towers"]["image"]["preprocessor"] = None
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "model.onnx").symlink_to((model_dir / "model.onnx").resolve())
    with pytest.raises(ModelDirError, match="names no preprocessor config"):
        Embedder.from_dir(tmp_path, threads=1)


def test_cpu_report_names_the_path_the_probe_the_sessions_and_the_check(model_dir: Path) -> None:
    e = Embedder.from_dir(model_dir, threads=1, text=True)
    report = e.cpu_report()
    cpu = CpuInfo.detect()
    assert (report["kernel_path"], report["arch"], report["model"]) == (cpu.kernel_path, cpu.arch, cpu.model)
    assert report["session_config"] == dict(e.session_settings.config)
    assert report["graph_optimization"] == e.session_settings.optimization
    assert report["gate_covered"] is True and report["gate"]["path"] == cpu.kernel_path
    probe = probe_u8s8(cpu.arch)
    assert e.probe is probe
    assert report["probe"] == {**probe.to_dict(), "flags_agree": probe.u8s8_exact == cpu.exact_u8s8}
    covered = {name: spec.gate_for(cpu.kernel_path) for name, spec in e.manifest.towers.items()}
    assert report["towers"] == {
        "image": {
            **e.image.report(),
            "gate_covered": bool(covered["image"] and covered["image"]["status"] == "passed"),
        },
        "text": {
            **e.text.tower.report(),
            "gate_covered": bool(covered["text"] and covered["text"]["status"] == "passed"),
        },  # type: ignore[union-attr]
    }
    assert report["towers"]["text"]["file"] == "text_model.onnx"
    assert e.self_check is not None and report["self_check"] == e.self_check.to_dict()
    json.dumps(report)  # logged and served as JSON


def test_a_gate_that_failed_or_never_ran_on_this_cpu_does_not_cover_it(engine: Embedder) -> None:
    path = engine.cpu.kernel_path
    for cpu_paths in ([{"path": path, "status": "failed"}], [{"path": path, "status": "not_run"}], []):
        image = dataclasses.replace(engine.manifest.image, cpu_paths=tuple(cpu_paths))
        manifest = dataclasses.replace(engine.manifest, towers={"image": image})
        report = Embedder(engine.image, PreprocessConfig(), manifest=manifest, model_id="m").cpu_report()
        assert report["gate_covered"] is False and report["gate"] == (cpu_paths[0] if cpu_paths else None)


def test_an_engine_built_from_a_tower_reports_what_it_was_given(engine: Embedder) -> None:
    e = Embedder(engine.image, PreprocessConfig(), manifest=engine.manifest, model_id="given")
    assert (e.model_id, e.dim, e.limits, e.fast_jpeg, e.exif) == ("given", 512, Limits(), True, True)
    assert e.cpu == CpuInfo.detect() and e.probe is None and e.self_check is None and e.text is None
    report = e.cpu_report()
    assert report["kernel_path"] == e.cpu.kernel_path and report["probe"] is None and report["self_check"] is None
    assert e.embed_one(photo_bytes()["china.jpg"]).model == "given"


def test_the_cpu_and_the_dimension_given_to_an_engine(engine: Embedder) -> None:
    """A CPU passed in is the one reported; the dimension is the model's output, whatever a manifest says."""
    image = dataclasses.replace(engine.manifest.image, dim=768)
    manifest = dataclasses.replace(engine.manifest, dim=768, towers={"image": image})
    e = Embedder(engine.image, PreprocessConfig(), cpu=GRAVITON3, manifest=manifest, model_id="m")
    assert e.cpu == GRAVITON3 and e.cpu_report()["kernel_path"] == "arm64-i8mm"
    assert e.dim == 512 == e.embed_one(photo_bytes()["china.jpg"]).vector.shape[0]


@pytest.mark.parametrize("flags", [HASWELL, CASCADE], ids=["avx2-flags", "vnni-flags"])
def test_the_int8_session_is_tuned_by_the_probe_not_the_flags(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, flags: CpuInfo
) -> None:
    """Whatever /proc/cpuinfo claims, the session re-encodes the weights exactly when the probe saw this
    machine's u8×s8 kernel saturate, and the canaries then match the build's."""
    with_cpu(monkeypatch, flags)
    e = Embedder.from_dir(model_dir, threads=1)
    probe = probe_u8s8("x86_64")
    assert e.cpu == flags and e.probe == probe
    assert e.session_settings.config == int8_tuning(flags, e.manifest.image.quantization, probe).config
    assert (X64_PRECISION in e.session_settings.config) is (not probe.u8s8_exact)
    assert e.cpu_report()["probe"]["flags_agree"] is (probe.u8s8_exact == flags.exact_u8s8)
    assert e.self_check is not None and e.self_check.passed, e.self_check


@pytest.mark.parametrize("u8s8_exact", [False, True])
def test_from_dir_applies_what_the_probe_measured(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, u8s8_exact: bool
) -> None:
    probe = Probe(u8s8_exact=u8s8_exact, reencoded_exact=None if u8s8_exact else True, ms=1.0)
    monkeypatch.setattr("layer.embedder.probe_u8s8", lambda arch=None: probe)
    with_cpu(monkeypatch, CASCADE if not u8s8_exact else HASWELL)  # flags that say the opposite
    e = Embedder.from_dir(model_dir, threads=1, self_check=False)
    assert e.probe is probe
    assert e.session_settings.config == (() if u8s8_exact else (X64_PRECISION,))
    assert e.session_settings.optimization == ("basic" if u8s8_exact else "extended")
    if not u8s8_exact:
        assert e.session.get_session_options().get_session_config_entry(X64_PRECISION[0]) == "1"


def test_a_probe_that_calls_a_saturating_kernel_exact_is_caught_by_the_self_check(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the re-encoding, a CPU whose u8×s8 kernel saturates computes other vectors than the build's:
    the self-check fails exactly where the real probe says the plain kernel is not exact."""
    claims_exact = Probe(u8s8_exact=True, reencoded_exact=None, ms=1.0)
    monkeypatch.setattr("layer.embedder.probe_u8s8", lambda arch=None: claims_exact)
    e = Embedder.from_dir(model_dir, threads=1)
    assert e.session_settings.config == int8_tuning(e.cpu, e.manifest.image.quantization, claims_exact).config
    assert e.self_check is not None
    assert e.self_check.passed is probe_u8s8(e.cpu.arch).u8s8_exact


def _rotated_jpeg() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display
    return encode(resized_photo((320, 200), "china.jpg"), "JPEG", exif=exif.tobytes(), quality=90)


def test_the_defaults_take_the_fast_jpeg_path_and_apply_exif(engine: Embedder) -> None:
    big = encode(resized_photo((1920, 1080), "china.jpg"), "JPEG", quality=90)
    _, fast, _ = pixel_values(big, PreprocessConfig(), Limits())
    _, exact, _ = pixel_values(big, PreprocessConfig(), Limits(), fast_jpeg=False)
    assert min(fast.image.size) < 1080 == min(exact.image.size) and (fast.width, fast.height) == (1920, 1080)
    assert min(fast.image.size) >= 224 * 1.5  # the draft keeps 1.5× the resize target
    _, turned, _ = pixel_values(_rotated_jpeg(), PreprocessConfig(), Limits())
    _, as_stored, _ = pixel_values(_rotated_jpeg(), PreprocessConfig(), Limits(), exif=False)
    assert (turned.width, turned.height, as_stored.width, as_stored.height) == (200, 320, 320, 200)
    bare = Embedder(engine.image, PreprocessConfig(), manifest=engine.manifest, model_id="m")
    for e in (engine, bare):
        assert e.fast_jpeg is True and e.exif is True
        assert e.embed_one(_rotated_jpeg()).width == 200
        assert min(e.to_pixels(big)[1].image.size) < 1080  # drafted


def test_from_dir_passes_every_choice_through(model_dir: Path) -> None:
    e = Embedder.from_dir(model_dir, threads=1, fast_jpeg=False, exif=False, self_check=False)
    assert (e.fast_jpeg, e.exif, e.session_settings.threads, e.self_check) == (False, False, 1, None)
    assert e.session.get_session_options().intra_op_num_threads == 1
    assert e.manifest == Manifest.read(model_dir) and e.cpu == CpuInfo.detect()
    assert e.embed_one(_rotated_jpeg()).width == 320  # exif=False reached the decoder
    big = encode(resized_photo((1920, 1080), "china.jpg"), "JPEG", quality=90)
    assert e.to_pixels(big)[1].image.size == (1920, 1080)  # fast_jpeg=False reached the decoder: no draft
    assert e.image.path.name == "model.onnx"


def test_an_fp32_only_build_runs_its_export_as_fp32(model_dir: Path, tmp_path: Path) -> None:
    """A build with --precision fp32 ships the export as the image tower's file: no int8 tuning, no probe, the
    canary checked against the fp32 vector, and its vectors labelled fp32."""
    for name in ("model.fp32.onnx", "preprocessor_config.json"):
        (tmp_path / name).symlink_to((model_dir / name).resolve())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    image = manifest["towers"]["image"]
    image.update(precision="fp32", file="model.fp32.onnx", quantization=None)
    manifest.pop("tags", None)  # an image-only build has no text tower to embed a vocabulary with
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "precision": "fp32", "towers": {"image": image}}))
    e = Embedder.from_dir(tmp_path, threads=1)
    assert e.image.path == tmp_path / "model.fp32.onnx" and e.image.precision == "fp32"
    assert e.model_id == manifest["model_id"] + "@fp32"
    assert (e.session_settings.config, e.session_settings.optimization, e.probe) == ((), "all", None)
    assert e.self_check is not None and e.self_check.passed
    assert e.self_check.towers[0].agreement is None  # no int8 vector to agree with


def test_verify_refuses_files_that_do_not_match_the_manifest(model_dir: Path, tmp_path: Path) -> None:
    for p in model_dir.iterdir():
        (tmp_path / p.name).symlink_to(p.resolve())
    Embedder.from_dir(tmp_path, threads=1, verify=True, self_check=False)
    (tmp_path / "preprocessor_config.json").unlink()
    shutil.copy(model_dir / "preprocessor_config.json", tmp_path / "preprocessor_config.json")
    with (tmp_path / "preprocessor_config.json").open("a") as f:
        f.write("\n")
    Embedder.from_dir(tmp_path, threads=1, self_check=False)  # not verified at each cold start
    with pytest.raises(ModelDirError, match="sha256"):
        Embedder.from_dir(tmp_path, threads=1, verify=True, self_check=False)


def test_timings_are_milliseconds_of_this_call(engine: Embedder) -> None:
    import time

    data = photo_bytes()["china.jpg"]
    t0 = time.perf_counter()
    t = engine.embed_one(data).timings
    wall_ms = (time.perf_counter() - t0) * 1e3
    assert t.decode_ms > 0 and t.preprocess_ms > 0 and t.inference_ms > 0
    assert t.decode_ms + t.preprocess_ms + t.inference_ms <= wall_ms
