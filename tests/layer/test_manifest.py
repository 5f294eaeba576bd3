"""The typed manifest: reading, its errors, the per-CPU-path gate lookup and the file check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from layer.errors import ModelDirError
from layer.manifest import Manifest, sha256_file


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
