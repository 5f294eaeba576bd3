"""The typed manifest (format 2): towers, their errors, the per-CPU-path gate lookup, canaries, vectors and the
file check."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layer.errors import ModelDirError
from layer.manifest import (
    FORMAT,
    Canary,
    Manifest,
    TokenLayout,
    TowerSpec,
    decode_vector,
    encode_vector,
    sha256_file,
)


def tower(name: str = "image", dim: int = 512, **extra: Any) -> dict[str, Any]:
    """The fields a tower needs, as the build writes them."""
    return {
        "file": f"{name}.onnx",
        "fp32_file": f"{name}.fp32.onnx",
        "input_name": f"{name}_in",
        "output_name": f"{name}_out",
        "dim": dim,
        **extra,
    }


def spec(name: str = "image", **extra: Any) -> TowerSpec:
    return TowerSpec.from_dict(name, tower(name, **extra))


def manifest(**towers: TowerSpec) -> Manifest:
    return Manifest(model_id="m", dim=512, towers=towers or {"image": spec()})


def test_from_dict_needs_a_model_id_and_keeps_known_fields_only() -> None:
    m = Manifest.from_dict({"model_id": "m", "dim": 768, "towers": {"image": tower(dim=768)}, "added_later": 1})
    assert (m.model_id, m.dim, m.format, m.precision, m.random_init) == ("m", 768, FORMAT, "int8", False)
    assert "added_later" not in m.to_dict()
    no_model_id: list[Any] = [{}, {"model_id": 3}, []]
    for bad in no_model_id:
        with pytest.raises(ModelDirError, match="model_id"):
            Manifest.from_dict(bad)


def test_a_format_1_manifest_is_refused_with_how_to_rebuild() -> None:
    old = {"model_id": "m", "dim": 512, "file": "model.onnx", "precision": "int8", "text": None}
    with pytest.raises(ModelDirError, match="format 1") as info:
        Manifest.from_dict(old)
    assert "rebuild" in str(info.value) and "build-model" in str(info.value)


def test_a_model_needs_an_image_tower() -> None:
    with pytest.raises(ModelDirError, match="no image tower"):
        Manifest(model_id="m", dim=512, towers={"text": spec("text")})
    with pytest.raises(ModelDirError, match="no image tower"):
        Manifest.from_dict({"model_id": "m", "dim": 512, "towers": {"text": tower("text")}})


def test_every_tower_has_the_models_dimension() -> None:
    with pytest.raises(ModelDirError, match="text tower's dimension 768 is not the model's 512"):
        manifest(image=spec(), text=spec("text", dim=768))


@pytest.mark.parametrize(
    "broken",
    [
        {"fp32_file": "x", "input_name": "x", "output_name": "y", "dim": 512},  # no file
        {**tower(), "dim": "wide"},
        tower(tokens={"context_length": 77, "not_a_field": 1}),
        tower(canary={"fp32": "AAAA"}),  # no input
        "not a dict",
    ],
)
def test_a_malformed_tower_is_a_model_dir_error_naming_it(broken: object) -> None:
    with pytest.raises(ModelDirError, match="image tower is malformed"):
        Manifest.from_dict({"model_id": "m", "dim": 512, "towers": {"image": broken}})


def test_malformed_towers_or_dimension_are_a_model_dir_error() -> None:
    broken: list[dict[str, Any]] = [{"towers": ["image"], "dim": 512}, {"towers": {"image": tower()}, "dim": "x"}]
    for d in [*broken, {"towers": {}}]:
        with pytest.raises(ModelDirError, match=r"malformed|no image tower"):
            Manifest.from_dict({"model_id": "m", **d})


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    canary = {"input": {"text": "a cat"}, "fp32": encode_vector(np.ones(4)), "int8": {"x86-avx2": "AAAA"}}
    image = spec(cpu_paths=[{"path": "x86-avx2", "status": "passed"}], quantization={"method": "dynamic"})
    text = spec("text", canary=canary, tokens={"file": "tok.json", "context_length": 8})
    m = Manifest(model_id="m", dim=512, towers={"image": image, "text": text}, files={"a": {"sha256": "0"}})
    path = m.write(tmp_path)
    assert path.name == "manifest.json"
    written = json.loads(path.read_text())
    assert written["model_id"] == "m" and written["format"] == 2 and set(written["towers"]) == {"image", "text"}
    assert "name" not in written["towers"]["image"]  # the name is the key
    assert Manifest.read(tmp_path) == m


def test_the_built_manifest_reads_and_writes_back_unchanged(model_dir: Path, tmp_path: Path) -> None:
    """Every field the build writes is typed or kept: nothing is lost on the way through ``Manifest``."""
    m = Manifest.read(model_dir)
    m.write(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads((model_dir / "manifest.json").read_text())
    assert m.image.preprocessor is not None and m.image.tokens is None and m.image.canary is not None
    assert m.text is not None and isinstance(m.text.tokens, TokenLayout) and m.text.preprocessor is None
    assert m.text.tokens.context_length == 77 and (model_dir / m.text.tokens.file).exists()
    assert all((model_dir / t.file).exists() and t.dim == m.dim for t in m.towers.values())


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match=r"manifest\.json not found"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        Manifest.read(tmp_path)


def test_image_and_text_accessors() -> None:
    image_only = manifest()
    assert image_only.image is image_only.towers["image"] and image_only.text is None
    both = manifest(image=spec(), text=spec("text"))
    assert both.text is both.towers["text"] and both.text.name == "text"


def test_gate_for_finds_the_kernel_path() -> None:
    paths = [{"path": "x86-avx2", "status": "passed"}, {"path": "arm64-i8mm", "status": "not_run"}]
    s = spec(cpu_paths=paths)
    assert s.gate_for("arm64-i8mm") == paths[1] and s.gate_for("x86-avx2") == paths[0]
    assert s.gate_for("x86-avx512-vnni") is None
    assert spec().gate_for("x86-avx2") is None  # no gate at all


def test_kept_fp32_lists_the_recovered_nodes() -> None:
    assert spec().kept_fp32 == ()
    assert spec(recovery={"method": "int8", "kept_fp32": []}).kept_fp32 == ()
    assert spec(recovery={"method": "mixed", "kept_fp32": ["fc1", "fc2"]}).kept_fp32 == ("fc1", "fc2")


def test_gated_means_every_int8_tower_passed() -> None:
    passed, failed = {"passed": True}, {"passed": False}
    assert manifest(image=spec(accuracy_gate=passed), text=spec("text", accuracy_gate=passed)).gated
    assert not manifest(image=spec(accuracy_gate=passed), text=spec("text", accuracy_gate=failed)).gated
    assert not manifest(image=spec()).gated  # an int8 tower without a gate result is not gated
    assert manifest(image=spec(precision="fp32"), text=spec("text", precision="fp32")).gated  # fp32 needs none


def test_vectors_are_base64_of_little_endian_float32() -> None:
    assert encode_vector(np.array([1.0, -2.0])) == base64.b64encode(struct.pack("<2f", 1.0, -2.0)).decode()
    v = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    back = decode_vector(encode_vector(v))
    assert back.dtype == np.float32 and np.array_equal(back, v)
    assert back.flags.writeable  # a copy, not a view of the decoded bytes
    assert decode_vector(encode_vector(np.float64(0.1) * np.ones(3))).dtype == np.float32


def test_canary_defaults_and_types() -> None:
    c = Canary.from_dict({"input": {"text": "a cat"}, "fp32": "AAAA"})
    assert (c.int8, c.min_cosine, c.agreement) == ({}, 0.999, {})
    c = Canary.from_dict(
        {"input": {"text": "a"}, "fp32": "A", "int8": {"x86-avx2": "B"}, "min_cosine": "0.99", "agreement": {"s": 1}}
    )
    assert (c.int8, c.min_cosine, c.agreement) == ({"x86-avx2": "B"}, 0.99, {"s": 1.0})
    assert isinstance(c.agreement["s"], float)


def test_token_layout_defaults_are_clips() -> None:
    layout = TokenLayout()
    assert (layout.context_length, layout.bos_id, layout.eos_id, layout.pad_id) == (77, 49406, 49407, 49407)
    assert spec("text", tokens={"context_length": 16}).tokens == TokenLayout(context_length=16)


def test_verify_files_catches_a_changed_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "b.bin").write_bytes(b"xyz")
    files = {n: {"sha256": sha256_file(tmp_path / n), "bytes": 3} for n in ("a.bin", "b.bin")}
    m = Manifest(model_id="m", dim=512, towers={"image": spec()}, files=files)
    m.verify_files(tmp_path)
    (tmp_path / "b.bin").write_bytes(b"xyZ")
    with pytest.raises(ModelDirError, match=r"b\.bin: sha256"):
        m.verify_files(tmp_path)
    (tmp_path / "b.bin").unlink()
    with pytest.raises(ModelDirError, match="missing"):
        m.verify_files(tmp_path)
    m.verify_files(tmp_path, missing_ok=frozenset({"b.bin"}))  # the image ships no fp32 export


def test_sha256_reads_in_chunks(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert sha256_file(tmp_path / "f", chunk=3) == sha256_file(tmp_path / "f") == hashlib.sha256(b"x" * 10).hexdigest()


def test_a_missing_optional_file_does_not_end_the_check(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"xyz")
    files: dict[str, dict[str, Any]] = {
        "model.fp32.onnx": {"sha256": "0" * 64, "bytes": 1},
        "b.bin": {"sha256": sha256_file(tmp_path / "b.bin")},
    }
    m = Manifest(model_id="m", dim=512, towers={"image": spec()}, files=files)
    m.verify_files(tmp_path, missing_ok=frozenset({"model.fp32.onnx"}))
    (tmp_path / "b.bin").write_bytes(b"xyZ")  # a file after the missing one changed
    with pytest.raises(ModelDirError, match=r"b\.bin: sha256"):
        m.verify_files(tmp_path, missing_ok=frozenset({"model.fp32.onnx"}))
