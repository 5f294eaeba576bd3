"""The build pipeline (layer/convert/pipeline.py): model-directory contract, manifest, the accuracy gate of a
whole build (the sources themselves: test_source.py; the command's errors: test_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from layer import Embedder
from layer.manifest import Manifest

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "layer.convert"]


def test_model_directory_contract(model_dir: Path) -> None:
    assert {p.name for p in model_dir.iterdir()} >= {
        "model.onnx",
        "model.fp32.onnx",
        "preprocessor_config.json",
        "manifest.json",
    }
    manifest = Manifest.read(model_dir)
    manifest.verify_files(model_dir)  # every sha256 matches
    m = json.loads((model_dir / "manifest.json").read_text())
    assert manifest.to_dict() == m  # the typed manifest holds every field the build writes
    assert set(m["files"]) == {
        "model.onnx",
        "model.fp32.onnx",
        "preprocessor_config.json",
        "text_model.onnx",  # the text tower (tests/layer/convert/test_text_tower.py)
        "text_model.fp32.onnx",
        "tokenizer.json",
        "labels.json",  # the tags' vocabulary (tests/labels.txt) and its fp32 text vectors
        "labels.npy",
    }
    assert m["format"] == 2 and m["precision"] == "int8" and m["dim"] == 512 and m["opset"] == 18
    assert m["random_init"] is True and "untrained" in m["model_id"]
    assert m["source"] == {"kind": "random-init", "name": "random-init", "revision": None, "seed": 0}
    assert set(m["towers"]) == {"image", "text"}
    image = m["towers"]["image"]
    assert (image["file"], image["fp32_file"], image["preprocessor"]) == (
        "model.onnx", "model.fp32.onnx", "preprocessor_config.json",
    )  # fmt: skip
    assert image["quantization"]["method"] == "dynamic" and image["quantization"]["per_channel"] is True
    for tower in m["towers"].values():
        gate = tower["accuracy_gate"]
        assert gate["passed"] is True and gate["n_inputs"] >= 15
        assert gate["threshold"] <= gate["cosine_min"] <= gate["cosine_mean"] <= 1.0
        assert tower["dim"] == m["dim"] and tower["recovery"]["method"] in {"int8", "keep_fp32", "smoothquant",
                                                                           "smoothquant+keep_fp32"}  # fmt: skip
        assert set(tower["speed"]) >= {"int8", "shipped", "fp32", "cpu", "threads"}
        canary = tower["canary"]
        assert canary["fp32"] and m["built_on"]["kernel_path"] in canary["int8"]
    assert {"onnxruntime", "torch", "transformers"} <= set(m["versions"])
    assert m["built_at"].endswith("Z") and any(k.startswith("image tower: export") for k in m["build_seconds"])


def test_onnx_graph_io(model_dir: Path) -> None:
    for name in ("model.onnx", "model.fp32.onnx"):
        graph = onnx.load(model_dir / name, load_external_data=False).graph
        (inp,), (out,) = graph.input, graph.output
        assert inp.name == "pixel_values" and out.name == "image_embeds"
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1:] == [3, 224, 224]
    ops = {n.op_type for n in onnx.load(model_dir / "model.onnx").graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert (model_dir / "model.onnx").stat().st_size < (model_dir / "model.fp32.onnx").stat().st_size / 3


def test_local_checkpoint_source_keeps_the_vision_tower(checkpoint_model_dir: Path, clip_checkpoint: Path) -> None:
    m = Manifest.read(checkpoint_model_dir).to_dict()
    assert m["source"]["kind"] == "local" and m["random_init"] is False
    assert m["towers"]["image"]["accuracy_gate"]["passed"] is True
    assert Embedder.from_dir(checkpoint_model_dir).dim == 512


def test_gate_fails_a_deliberately_bad_quantization(tmp_path: Path) -> None:
    """Static QDQ on every op type (activation scales from a calibration run) loses accuracy: cosine ~0.91."""
    out = tmp_path / "bad-model"
    proc = subprocess.run(
        [
            *CLI,
            "build-model",
            "--source",
            "random-init",
            "--out",
            str(out),
            "--quant-method",
            "static",
            "--quant-op-types",
            "MatMul,Conv,Add,Mul,Gemm,Softmax",
            "--no-text",  # the image gate alone (the text gate's own test: test_text_tower.py)
            "--cross-cpu",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    # The recovery simulates dynamic int8 only: a static build is refused, not recovered.
    assert "image accuracy gate failed" in proc.stderr and "< threshold 0.999" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "bad-model.partial").exists()


def test_fp32_engine_reports_its_precision_in_the_model_id(model_dir: Path) -> None:
    """Vectors from model.fp32.onnx are labelled as such, so they are never mixed with int8 ones."""
    m = json.loads((model_dir / "manifest.json").read_text())
    assert Embedder.from_dir(model_dir, precision="fp32").model_id == m["model_id"] + "@fp32"
