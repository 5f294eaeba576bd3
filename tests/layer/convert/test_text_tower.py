"""The text tower in the model directory: its files and manifest section, fidelity to HF's
``CLIPModel.get_text_features`` (no attention mask needed), int8 vs fp32, texts and images in one space, its
gate on every CPU path, and the builds that leave it out or refuse it."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from layer.convert.embed_tokens import TextSession

from layer import Embedder
from layer.convert.calibration import CALIBRATION_TEXTS, calibration_images
from layer.convert.cpu_paths import PATHS
from layer.convert.gate import CROSS_ARCH_AGREEMENT, DEFAULT_MIN_COSINE, SAME_ARCH_AGREEMENT, GateResult
from layer.convert.quantize import QuantSettings
from layer.convert.text_tower import text_quant, without_gather
from layer.convert.tokenizer import encode
from layer.cpu import CpuInfo
from layer.manifest import Manifest
from tests.conftest import cross_cpu_required, require
from tests.test_layout import ENGINE_PACKAGES, ROOT, violations

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "layer.convert"]
TEXT_FILES = {"text_model.onnx", "text_model.fp32.onnx", "tokenizer.json"}
# Beyond the gate's texts: what the fidelity tests add (short, long, past the context, other scripts).
EXTRA_TEXTS = ["a dog", "two cats sleeping on a sofa", "ÉLAN vital — 100%", "a " * 90, "猫"]


def _texts() -> list[str]:
    return [*CALIBRATION_TEXTS.values(), *EXTRA_TEXTS]


# --- the model directory ------------------------------------------------------------------------------
def test_text_files_and_manifest_section(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert names >= TEXT_FILES
    manifest = Manifest.read(model_dir)
    assert set(manifest.files) >= TEXT_FILES  # sha256 and bytes of each, checked:
    manifest.verify_files(model_dir)
    text = json.loads((model_dir / "manifest.json").read_text())["text"]
    assert text == manifest.text
    assert {k: text[k] for k in ("file", "fp32_file", "tokenizer", "context_length", "pad_id", "bos_id", "eos_id")} == {
        "file": "text_model.onnx",
        "fp32_file": "text_model.fp32.onnx",
        "tokenizer": "tokenizer.json",
        "context_length": 77,
        "pad_id": 49407,
        "bos_id": 49406,
        "eos_id": 49407,
    }
    assert (text["vocab_size"], text["dim"], text["precision"], text["opset"]) == (49408, 512, "int8", 18)
    assert text["input"]["name"] == "input_ids" and text["input"]["shape"] == ["N", 77]
    assert text["output"] == {
        "name": "text_embeds",
        "shape": ["N", 512],
        "normalized": False,
        "equals": "CLIPModel.get_text_features",
    }
    assert text["tokenizer_source"]["package"] == "open-clip-torch==3.3.0"
    q = text["quantization"]
    assert q["method"] == "dynamic" and "MatMul" in q["op_types"]
    assert {k: q[k] for k in ("per_channel", "weight_type", "reduce_range", "portable_softmax")} == {
        k: (manifest.quantization or {})[k] for k in ("per_channel", "weight_type", "reduce_range", "portable_softmax")
    }  # the vision tower's weight format: the same session tuning on every CPU
    gate = text["accuracy_gate"]
    assert gate["applicable"] is True and gate["passed"] is True and gate["n_texts"] == len(CALIBRATION_TEXTS)
    assert set(gate["per_text"]) == set(CALIBRATION_TEXTS)
    assert gate["threshold"] <= gate["cosine_min"] <= gate["cosine_mean"] <= 1.0
    assert gate["attempts"][-1]["op_types"] == q["op_types"] and gate["attempts"][0]["op_types"][-1] == "Gather"
    tower = manifest.text_tower
    assert tower is not None and (tower.file, tower.tokenizer, tower.context_length) == (
        "text_model.onnx",
        "tokenizer.json",
        77,
    )
    seconds = manifest.build_seconds
    assert any(step.startswith("text tower") for step in seconds) and any(
        step.startswith("text accuracy") for step in seconds
    )


def test_text_onnx_io_and_size(model_dir: Path) -> None:
    for name in ("text_model.onnx", "text_model.fp32.onnx"):
        graph = onnx.load(model_dir / name, load_external_data=False).graph
        (inp,), (out,) = graph.input, graph.output
        assert (inp.name, inp.type.tensor_type.elem_type) == ("input_ids", onnx.TensorProto.INT64)
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1:] == [77]
        assert out.name == "text_embeds" and [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [512]
    graph = onnx.load(model_dir / "text_model.onnx").graph
    ops = {n.op_type for n in graph.node}
    assert "Softmax" not in ops and ({"MatMulInteger", "DynamicQuantizeMatMul"} & ops)
    fp32_bytes = (model_dir / "text_model.fp32.onnx").stat().st_size
    size = (model_dir / "text_model.onnx").stat().st_size
    if "Gather" in (Manifest.read(model_dir).text or {})["quantization"]["op_types"]:
        embedding = [i for i in graph.initializer if list(i.dims) == [49408, 512]]
        # 25 MB instead of 100 MB: 8 bits per tensor (onnxruntime quantizes Gather's table as an activation, u8)
        assert len(embedding) == 1 and embedding[0].data_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
        assert size < fp32_bytes / 3.5
    else:
        assert size < fp32_bytes * 0.6


def test_the_gate_worker_imports_only_what_an_emulated_cpu_has() -> None:
    """``layer.convert.embed_tokens`` runs in the arm64 root, which holds the engine's packages only."""
    worker = ROOT / "layer" / "convert" / "embed_tokens.py"
    assert violations([worker], ENGINE_PACKAGES, ("layer",)) == []
    assert "torch" not in ast.dump(ast.parse(worker.read_text()))


# --- fidelity to HF -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf(clip_checkpoint: Path) -> dict[str, Any]:
    """The saved CLIPModel and HF's CLIPTokenizer over the same vocabulary."""
    torch = require("torch")
    transformers = require("transformers")
    from layer.convert.bpe_vocab import load_bpe
    from layer.convert.tokenizer import hf_tokenizer

    model = transformers.CLIPModel.from_pretrained(clip_checkpoint).eval()
    return {"torch": torch, "model": model, "tokenizer": hf_tokenizer(load_bpe())}


def _hf_text_features(hf: dict[str, Any], texts: list[str], padding: str) -> np.ndarray:
    """Normalized ``get_text_features`` of HF's tokenization, with its attention mask."""
    torch = hf["torch"]
    batch = hf["tokenizer"](texts, padding=padding, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = hf["model"].get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    feats = getattr(out, "pooler_output", out).numpy().astype(np.float64)
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ours_fp32(checkpoint_model_dir: Path) -> np.ndarray:
    ids = encode(checkpoint_model_dir / "tokenizer.json", _texts())
    return TextSession(checkpoint_model_dir, precision="fp32").embed(ids)


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_fp32_equals_normalized_hf_get_text_features_without_an_attention_mask(
    padding: str, hf: dict[str, Any], ours_fp32: np.ndarray
) -> None:
    """HF with its attention mask, padded to 77 or only to the batch's longest text, against our export fed
    the 77 ids alone: the causal tower pools at the first <|endoftext|>, so the padding after it is never
    read."""
    ref = _hf_text_features(hf, _texts(), padding)
    assert np.allclose(ours_fp32, ref, atol=1e-3)  # the contract
    assert np.max(np.abs(ours_fp32 - ref)) <= 1e-5  # what it measures: ~1e-7


def test_int8_agrees_with_fp32_on_the_gate_texts(checkpoint_model_dir: Path, ours_fp32: np.ndarray) -> None:
    ids = encode(checkpoint_model_dir / "tokenizer.json", _texts())
    int8 = TextSession(checkpoint_model_dir).embed(ids)
    cosines = np.sum(int8.astype(np.float64) * ours_fp32, axis=1)
    assert cosines.min() >= DEFAULT_MIN_COSINE, dict(zip(_texts(), cosines, strict=True))
    gate = (Manifest.read(checkpoint_model_dir).text or {})["accuracy_gate"]
    assert gate["passed"] and gate["cosine_min"] >= DEFAULT_MIN_COSINE


def test_texts_and_images_embed_into_the_same_space(
    checkpoint_model_dir: Path, clip_checkpoint: Path, hf: dict[str, Any], ours_fp32: np.ndarray
) -> None:
    """Our normalized text vector · our normalized image vector = HF's ``logits_per_image / logit_scale.exp()``."""
    import io

    from PIL import Image

    transformers = require("transformers")
    torch = hf["torch"]
    images = dict(calibration_images(0))
    names = ["china.jpg", "flower.jpg", "shapes", "text"]
    processor = transformers.CLIPImageProcessor.from_pretrained(clip_checkpoint)
    pixels = processor(images=[Image.open(io.BytesIO(images[n])) for n in names], return_tensors="pt")["pixel_values"]
    batch = hf["tokenizer"](_texts(), padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = hf["model"](pixel_values=pixels, **batch)
        expected = (out.logits_per_image / hf["model"].logit_scale.exp()).numpy()
    engine = Embedder.from_dir(checkpoint_model_dir, precision="fp32", fast_jpeg=False)
    image_vectors = np.stack([engine.embed_one(images[n]).vector for n in names])
    assert np.allclose(image_vectors @ ours_fp32.T, expected, atol=1e-3)


def test_export_pools_at_the_first_eos_under_both_config_styles(tmp_path: Path) -> None:
    """openai/clip-vit-base-patch32's config still says eos_token_id=2 (HF then pools at the largest id, which
    is <|endoftext|>'s); newer configs say 49407 (HF pools at its first occurrence). Both exports, fed padded
    ids, equal HF with the attention mask. A 2-layer tower keeps this fast."""
    torch = require("torch")
    transformers = require("transformers")
    import onnxruntime as ort

    from layer.convert.export import export_text_onnx

    ids = np.full((3, 77), 49407, dtype=np.int64)
    ids[:, 0] = 49406
    ids[0, 1:4] = [320, 1125, 539]
    ids[1, 1:70] = np.arange(1000, 1069)
    ids[2, 1:2] = 2368
    mask = (np.cumsum(ids == 49407, axis=1) <= 1).astype(np.int64)  # up to and including the first EOS
    for eos in (2, 49407):
        torch.manual_seed(0)
        config = transformers.CLIPTextConfig(
            num_hidden_layers=2, hidden_size=64, intermediate_size=128, eos_token_id=eos
        )
        model = transformers.CLIPTextModelWithProjection(config).eval()
        model.set_attn_implementation("eager")
        path = export_text_onnx(model, tmp_path / f"text-{eos}.onnx")
        ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).text_embeds.numpy()
        assert np.max(np.abs(ours - ref)) <= 1e-5, eos


# --- the gate per CPU path ----------------------------------------------------------------------------------
def test_the_text_gate_lists_every_cpu_path(model_dir: Path) -> None:
    manifest = Manifest.read(model_dir)
    tower = manifest.text_tower
    assert tower is not None
    results = {r["path"]: r for r in tower.cpu_paths}
    native = CpuInfo.detect()
    assert {p.name for p in PATHS} | {native.kernel_path} == set(results)
    assert results[native.kernel_path]["how"] == "native" and results[native.kernel_path]["texts"] == len(
        CALIBRATION_TEXTS
    )
    for path in PATHS:
        r = results[path.name]
        if r["status"] == "not_run":
            assert r["reason"], r  # never silently skipped
            if path.qemu_cpu is not None and path.name != native.kernel_path and cross_cpu_required():
                pytest.fail(f"{path.name} not run under CI: {r['reason']}")
            continue
        assert r["status"] == "passed" and r["cosine_min"] >= DEFAULT_MIN_COSINE, r
        if r["how"] == "emulated":
            assert r["texts"] >= 4 and "images" not in r and r["seconds_per_text"] > 0
            if path.arch == native.arch == "x86_64":
                assert r["bit_identical"] is True and r["agreement_min"] >= SAME_ARCH_AGREEMENT
            else:
                assert r["agreement_min"] >= CROSS_ARCH_AGREEMENT
    # The runtime's own view: the text gate covered this machine's path.
    assert (tower.gate_for(native.kernel_path) or {}).get("status") == "passed"


# --- builds that leave the text tower out, or refuse it -------------------------------------------------------
def test_gate_fails_a_deliberately_bad_text_quantization(tmp_path: Path) -> None:
    """Static QDQ on every op type of the text tower: below the threshold with the token embedding int8 and
    without it (the fallback), so the build fails and leaves nothing behind."""
    out = tmp_path / "bad-text"
    proc = subprocess.run(
        [
            *CLI,
            "build-model",
            "--source",
            "random-init",
            "--out",
            str(out),
            "--cross-cpu",
            "off",
            "--text-quant-method",
            "static",
            "--text-quant-op-types",
            "MatMul,Add,Mul,Gemm,Gather",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "text accuracy gate failed" in proc.stderr and "< threshold 0.999" in proc.stderr
    assert "again with it in fp32" in proc.stderr  # the fallback without the int8 token embedding was tried
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "bad-text.partial").exists()


@pytest.mark.parametrize("text", [True, False], ids=["fp32-with-text", "fp32-no-text"])
def test_fp32_and_image_only_builds(tmp_path: Path, text: bool) -> None:
    out = tmp_path / "m"
    argv = [*CLI, "build-model", "--source", "random-init", "--out", str(out), "--precision", "fp32"]
    proc = subprocess.run([*argv, *([] if text else ["--no-text"])], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(out)
    names = {p.name for p in out.iterdir()}
    if not text:
        assert manifest.text is None and manifest.text_tower is None
        assert not names & TEXT_FILES and not set(manifest.files) & TEXT_FILES
        return
    assert names >= TEXT_FILES and set(manifest.files) >= TEXT_FILES
    tower = manifest.text_tower
    assert tower is not None and tower.precision == "fp32" and tower.quantization is None
    assert (manifest.text or {})["accuracy_gate"]["applicable"] is False
    digest = {
        n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in ("text_model.onnx", "text_model.fp32.onnx")
    }
    assert digest["text_model.onnx"] == digest["text_model.fp32.onnx"]  # the fp32 export under both names


def test_a_vision_only_checkpoint_needs_no_text_and_never_falls_back(tmp_path: Path) -> None:
    """A CLIPVisionModelWithProjection has no text tower: exit 3 with what to do, not random text weights,
    and not the --fallback-source (the checkpoint itself is fine)."""
    from layer.convert.source import random_init

    random_init(seed=3).save_pretrained(tmp_path / "vision-only")
    argv = [*CLI, "build-model", "--source", str(tmp_path / "vision-only"), "--out", str(tmp_path / "m")]
    proc = subprocess.run(
        [*argv, "--precision", "fp32", "--fallback-source", "random-init"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "has no text tower" in proc.stderr and "--no-text" in proc.stderr
    assert "FALLING BACK" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


# --- small parts ------------------------------------------------------------------------------------------
def test_text_quantization_follows_the_vision_format() -> None:
    image = QuantSettings(reduce_range=True, per_channel=False)
    text = text_quant(image, nodes_to_exclude=("n1",))
    assert (text.reduce_range, text.per_channel, text.op_types, text.nodes_to_exclude) == (
        True,
        False,
        ("MatMul", "Gather"),
        ("n1",),
    )
    assert without_gather(text) == QuantSettings(reduce_range=True, per_channel=False, nodes_to_exclude=("n1",))
    assert without_gather(QuantSettings()) is None


def test_the_text_gate_result_names_its_texts() -> None:
    result = GateResult(2, 0.9991, 0.9995, "b", 0.999, True, {"a": 0.9999, "b": 0.9991})
    d = result.to_dict("texts")
    assert list(d) == ["n_texts", "cosine_min", "cosine_mean", "worst", "threshold", "passed", "per_text"]
    assert result.to_dict() == {**result.to_dict(), "n_images": 2, "per_image": {"a": 0.9999, "b": 0.9991}}
