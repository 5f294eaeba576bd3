"""The typed manifest: reading, its errors, the per-CPU-path gate lookup and the file check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from layer.errors import ModelDirError
from layer.manifest import Manifest, TextTower, sha256_file


def test_from_dict_needs_a_model_id_and_keeps_known_fields_only() -> None:
    m = Manifest.from_dict({"model_id": "m", "dim": 768, "precision": "fp32", "added_later": 1})
    assert (m.model_id, m.dim, m.precision, m.random_init) == ("m", 768, "fp32", False)
    assert "added_later" not in m.to_dict()
    for bad in ({}, {"model_id": 3}, []):
        with pytest.raises(ModelDirError, match="model_id"):
            Manifest.from_dict(bad)  # type: ignore[arg-type]


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    m = Manifest(model_id="m", quantization={"method": "dynamic"}, cpu_paths=[{"path": "x86-avx2", "status": "passed"}])
    path = m.write(tmp_path)
    assert path.name == "manifest.json" and json.loads(path.read_text())["model_id"] == "m"
    assert Manifest.read(tmp_path) == m


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match=r"manifest\.json not found"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        Manifest.read(tmp_path)


def test_gate_for_finds_the_kernel_path() -> None:
    paths = [{"path": "x86-avx2", "status": "passed"}, {"path": "arm64-i8mm", "status": "not_run"}]
    m = Manifest(model_id="m", cpu_paths=paths)
    assert m.gate_for("arm64-i8mm") == paths[1] and m.gate_for("x86-avx2") == paths[0]
    assert m.gate_for("x86-avx512-vnni") is None


def test_verify_files_catches_a_changed_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "b.bin").write_bytes(b"xyz")
    files = {n: {"sha256": sha256_file(tmp_path / n), "bytes": 3} for n in ("a.bin", "b.bin")}
    m = Manifest(model_id="m", files=files)
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
    files = {"model.fp32.onnx": {"sha256": "0" * 64, "bytes": 1}, "b.bin": {"sha256": sha256_file(tmp_path / "b.bin")}}
    m = Manifest(model_id="m", files=files)
    m.verify_files(tmp_path, missing_ok=frozenset({"model.fp32.onnx"}))
    (tmp_path / "b.bin").write_bytes(b"xyZ")  # a file after the missing one changed
    with pytest.raises(ModelDirError, match=r"b\.bin: sha256"):
        m.verify_files(tmp_path, missing_ok=frozenset({"model.fp32.onnx"}))


TEXT = {
    "file": "text_model.onnx",
    "fp32_file": "text_model.fp32.onnx",
    "tokenizer": "tokenizer.json",
    "context_length": 77,
    "pad_id": 49407,
    "bos_id": 49406,
    "eos_id": 49407,
    "dim": 512,
    "input": {"name": "input_ids", "dtype": "int64", "shape": ["N", 77]},
    "output": {"name": "text_embeds", "shape": ["N", 512], "normalized": False},
    "precision": "int8",
    "quantization": {"method": "dynamic", "op_types": ["MatMul", "Gather"]},
    "cpu_paths": [{"path": "x86-avx2", "status": "passed"}],
}


def test_manifests_from_before_the_text_tower_load_without_one() -> None:
    m = Manifest.from_dict({"model_id": "m", "precision": "int8", "files": {}})
    assert m.text is None and m.text_tower is None
    assert m.to_dict()["text"] is None


def test_the_text_tower_accessor_types_the_text_section(tmp_path: Path) -> None:
    m = Manifest(model_id="m", text=TEXT)
    m.write(tmp_path)
    assert Manifest.read(tmp_path) == m
    tower = Manifest.read(tmp_path).text_tower
    assert tower == TextTower(quantization=TEXT["quantization"], cpu_paths=({"path": "x86-avx2", "status": "passed"},))
    assert (tower.file, tower.fp32_file) == ("text_model.onnx", "text_model.fp32.onnx")
    assert tower.tokenizer == "tokenizer.json"
    assert (tower.context_length, tower.bos_id, tower.eos_id, tower.pad_id, tower.dim) == (77, 49406, 49407, 49407, 512)
    assert (tower.input_name, tower.output_name, tower.precision) == ("input_ids", "text_embeds", "int8")
    assert tower.gate_for("x86-avx2") == {"path": "x86-avx2", "status": "passed"}
    assert tower.gate_for("arm64-i8mm") is None


@pytest.mark.parametrize("broken", [{"file": "text_model.onnx"}, {**TEXT, "pad_id": "none"}, ["not", "a", "dict"]])
def test_a_malformed_text_section_is_a_model_dir_error(broken: object) -> None:
    m = Manifest(model_id="m", text=broken)  # type: ignore[arg-type]
    with pytest.raises(ModelDirError, match="text section"):
        _ = m.text_tower
