"""The text tower in the model directory: its files and manifest section (``towers["text"]``), fidelity to HF's
``CLIPModel.get_text_features`` (no attention mask needed), int8 vs fp32, texts and images in one space, its
gate on every CPU path, and the builds that leave it out or refuse it."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from layer import Embedder
from layer.convert.bpe_vocab import MEMBER, OPEN_CLIP, VOCAB_SHA256
from layer.convert.calibration import CALIBRATION_TEXTS, CANARY_TEXT, calibration_images
from layer.convert.cpu_paths import EMULATED_IMAGES, PATHS
from layer.convert.emulation import ENGINE_PACKAGES as ROOT_PACKAGES
from layer.convert.gate import CROSS_ARCH_AGREEMENT, DEFAULT_MIN_COSINE, SAME_ARCH_AGREEMENT
from layer.convert.labels import GATE_PREFIX
from layer.convert.quantize import GATHER, QuantSettings
from layer.convert.text_tower import text_quant
from layer.cpu import CpuInfo
from layer.manifest import Manifest, TokenLayout, TowerSpec
from tests.conftest import cross_cpu_required, require
from tests.test_layout import ROOT

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "layer.convert"]
TEXT_FILES = {"text_model.onnx", "text_model.fp32.onnx", "tokenizer.json"}
VOCAB, WIDTH = 49408, 512  # CLIP's token embedding: one row per token
RECOVERY_METHODS = {"int8", "keep_fp32", "smoothquant", "smoothquant+keep_fp32"}
# Beyond the gate's texts: what the fidelity tests add (short, long, past the context, other scripts).
EXTRA_TEXTS = ["a dog", "two cats sleeping on a sofa", "ÉLAN vital — 100%", "a " * 90, "猫"]


def _texts() -> list[str]:
    return [*CALIBRATION_TEXTS.values(), *EXTRA_TEXTS]


def _gate_inputs(manifest: Manifest) -> int:
    """The text gate's inputs: the calibration texts and, with a tags vocabulary, each label's prompt."""
    return len(CALIBRATION_TEXTS) + (manifest.tags.gate_inputs if manifest.tags else 0)


def _text(manifest: Manifest) -> TowerSpec:
    tower = manifest.text
    assert tower is not None, "the model has no text tower"
    return tower


# --- the model directory ------------------------------------------------------------------------------
def test_text_files_and_manifest_section(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert names >= TEXT_FILES
    manifest = Manifest.read(model_dir)
    assert set(manifest.files) >= TEXT_FILES  # sha256 and bytes of each, checked:
    manifest.verify_files(model_dir)
    raw = json.loads((model_dir / "manifest.json").read_text())["towers"]["text"]
    tower = _text(manifest)
    assert raw == tower.to_dict()  # the typed spec holds every field the build writes
    assert (tower.name, tower.file, tower.fp32_file, tower.input_name, tower.output_name) == (
        "text", "text_model.onnx", "text_model.fp32.onnx", "input_ids", "text_embeds",
    )  # fmt: skip
    assert (tower.dim, manifest.dim, tower.precision, manifest.opset) == (WIDTH, WIDTH, "int8", 18)
    assert tower.input["dtype"] == "int64" and tower.input["shape"] == ["N", 77]
    assert tower.preprocessor is None and manifest.image.tokens is None  # each tower its own input

    # The token layout: CLIP's ids, and the reference tokenizer it equals (open_clip, its vocabulary, ftfy).
    assert tower.tokens is not None
    source = tower.tokens.source
    assert tower.tokens == TokenLayout(
        file="tokenizer.json", context_length=77, bos_id=49406, eos_id=49407, pad_id=49407, source=source
    )
    assert (source["package"], source["file"], source["sha256"]) == (OPEN_CLIP, MEMBER, VOCAB_SHA256)
    assert source["package"].startswith("open-clip-torch==") and "open_clip" in source["equals"]
    assert source["ftfy"] == version("ftfy")  # open_clip's cleaning, as the engine runs it

    # The vision tower's weight format (the same session tuning on every CPU), the text tower's op types.
    q = tower.quantization or {}
    fmt = ("per_channel", "weight_type", "reduce_range", "portable_softmax")
    assert q["method"] == "dynamic" and q["op_types"] == ["MatMul", GATHER]
    assert {k: q[k] for k in fmt} == {k: (manifest.image.quantization or {})[k] for k in fmt}
    assert q["nodes_to_exclude"] == list(tower.kept_fp32)  # only what the recovery kept, if anything

    gate = tower.accuracy_gate or {}
    assert gate["applicable"] is True and gate["passed"] is True and gate["n_inputs"] == _gate_inputs(manifest)
    # one cosine per gate text, by name, and one per label prompt of the tags' vocabulary
    labels = {n for n in gate["per_input"] if n.startswith(GATE_PREFIX)}
    assert set(gate["per_input"]) - labels == set(CALIBRATION_TEXTS)
    assert len(labels) == (manifest.tags.gate_inputs if manifest.tags else 0)
    # the build's --min-cosine (at least the default), also the canary's bound at INIT
    assert gate["threshold"] >= DEFAULT_MIN_COSINE and tower.canary is not None
    assert tower.canary.min_cosine == gate["threshold"]
    assert gate["threshold"] <= gate["cosine_min"] <= gate["cosine_mean"] <= 1.0
    assert gate["cosine_min"] == min(gate["per_input"].values())
    recovery = tower.recovery or {}
    assert recovery["method"] in RECOVERY_METHODS
    if recovery["method"] == "int8":  # plain int8 met the gate: nothing kept, nothing to report
        assert recovery["kept_fp32"] == [] and recovery["before"] is None
    else:
        assert recovery["before"]["cosine_min"] < gate["threshold"] <= recovery["after"]["cosine_min"]

    canary = tower.canary
    assert canary is not None and canary.input == {"text": CANARY_TEXT}
    assert manifest.built_on is not None and manifest.built_on["kernel_path"] in canary.int8
    assert set(tower.speed or {}) >= {"int8", "shipped", "fp32", "cpu", "threads"}

    seconds = manifest.build_seconds
    assert any(step.startswith("text tower: tokenizer.json + export") for step in seconds)
    assert any(step.startswith("text tower: int8, accuracy gate") for step in seconds)


def test_text_onnx_io_and_size(model_dir: Path) -> None:
    for name in ("text_model.onnx", "text_model.fp32.onnx"):
        graph = onnx.load(model_dir / name, load_external_data=False).graph
        (inp,), (out,) = graph.input, graph.output
        assert (inp.name, inp.type.tensor_type.elem_type) == ("input_ids", onnx.TensorProto.INT64)
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1:] == [77]
        assert out.name == "text_embeds" and [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [WIDTH]
    tower = _text(Manifest.read(model_dir))
    graph = onnx.load(model_dir / "text_model.onnx").graph
    ops = {n.op_type for n in graph.node}
    assert "Softmax" not in ops and ({"MatMulInteger", "DynamicQuantizeMatMul"} & ops)
    # What the recovery kept fp32 (if anything) is in the graph as such, each node reading its fp32 weight.
    inits = {i.name: i for i in graph.initializer}
    kept = [n for n in graph.node if n.name in set(tower.kept_fp32)]
    assert {n.name for n in kept} == set(tower.kept_fp32)
    weights = [inits[x] for n in kept for x in n.input if x in inits and len(inits[x].dims) == 2]
    assert len(weights) == len(kept) and {w.data_type for w in weights} <= {onnx.TensorProto.FLOAT}
    kept_bytes = sum(4 * int(np.prod(w.dims)) for w in weights)
    fp32_bytes = (model_dir / "text_model.fp32.onnx").stat().st_size
    # The rest at 8 bits instead of 32 (the token embedding included: 25 MB instead of 100 MB, unless kept).
    assert (model_dir / "text_model.onnx").stat().st_size < (fp32_bytes - kept_bytes) / 3.5 + kept_bytes
    [table] = [i for i in graph.initializer if list(i.dims) == [VOCAB, WIDTH]]
    if any(n.op_type == "Gather" for n in kept):  # the recovery kept the token embedding fp32, as it may a MatMul
        assert table.data_type == onnx.TensorProto.FLOAT
        return
    # The token embedding as int8 rows with one float scale per row ...
    assert table.data_type == onnx.TensorProto.INT8
    [scales] = [i for i in graph.initializer if list(i.dims) == [VOCAB, 1]]
    assert scales.data_type == onnx.TensorProto.FLOAT
    # ... each row within half a step of its own scale of the fp32 export's row.
    rows = numpy_helper.to_array(table).astype(np.float32) * numpy_helper.to_array(scales)
    fp32 = onnx.load(model_dir / "text_model.fp32.onnx").graph.initializer
    [embedding] = [numpy_helper.to_array(i) for i in fp32 if list(i.dims) == [VOCAB, WIDTH]]
    step = np.abs(embedding).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(rows - embedding) <= step / 2 + 1e-6)


# --- the worker the gate runs in emulated CPUs ------------------------------------------------------------
BUILD_ONLY = ("tokenizers", "ftfy", "torch", "onnx", "transformers", "sklearn", "layer.convert")


def _run_time_imports(path: Path) -> Iterator[str]:
    """Absolute module names ``path`` imports, lazy ones included, ``if TYPE_CHECKING:`` blocks left out."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{path}: a relative import"
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _closure(module: str) -> tuple[set[str], set[str]]:
    """(the local modules ``module`` loads, transitively, packages included; the other top-level packages)."""
    local: set[str] = set()
    other: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        if parts[0] != "layer":
            if parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                other.add(parts[0])
            continue
        for n in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, then a/b/c
            mod = ".".join(parts[:n])
            base = ROOT.joinpath(*parts[:n])
            file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if mod in local or not file.exists():  # not a module: a name imported from one
                continue
            local.add(mod)
            todo.extend(_run_time_imports(file))
    return local, other


def test_the_worker_imports_only_what_an_emulated_arm64_root_has() -> None:
    """``python -m layer.run_tower`` runs in the arm64 root, which holds the engine and its packages only
    (numpy, onnxruntime, pillow): nothing it loads may import the tokenizer, the build or its libraries."""
    local, other = _closure("layer.run_tower")
    assert {"layer", "layer.run_tower", "layer.tower", "layer.cpu", "layer.manifest"} <= local
    assert not any(m == "layer.convert" or m.startswith("layer.convert.") for m in local), local
    assert "layer.text" not in local  # the engine's tokenizer (tokenizers, ftfy) stays out
    root = {"PIL" if p == "pillow" else p for p in ROOT_PACKAGES}
    assert {"numpy", "onnxruntime"} <= other <= root, other


WORKER_WITHOUT_BUILD_PACKAGES = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as absent as in the arm64 root: importing it raises, find_spec says None
from layer.run_tower import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_the_worker_runs_the_text_tower_without_the_build_packages(model_dir: Path, tmp_path: Path) -> None:
    """The same, run: the text tower's vectors from ``run_tower`` with the tokenizer, torch, onnx,
    transformers and ``layer.convert`` unimportable, equal to the runtime's."""
    engine = Embedder.from_dir(model_dir, threads=1, text=True, self_check=False)
    assert engine.text is not None
    ids = np.stack([engine.text.tokenizer.encode(t).ids for t in ("a dog", CANARY_TEXT)])
    np.save(tmp_path / "ids.npy", ids)
    argv = [str(model_dir), "text", str(tmp_path / "ids.npy"), str(tmp_path / "out.npy")]
    proc = subprocess.run(
        [sys.executable, "-c", WORKER_WITHOUT_BUILD_PACKAGES, ",".join(BUILD_ONLY), *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cpu"]["file"] == "text_model.onnx" and report["cpu"]["precision"] == "int8"
    assert np.array_equal(np.load(tmp_path / "out.npy"), engine.text.tower.embed(ids)[0])


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


def _ids(engine: Embedder, texts: list[str]) -> np.ndarray:
    assert engine.text is not None
    return np.stack([engine.text.tokenizer.encode(t).ids for t in texts])


@pytest.fixture(scope="module")
def fp32_engine(checkpoint_model_dir: Path) -> Embedder:
    """The runtime engine on the fp32 exports of both towers (the exact image path)."""
    engine = Embedder.from_dir(checkpoint_model_dir, precision="fp32", fast_jpeg=False, text=True)
    assert engine.text is not None and engine.text.tower.path.name == "text_model.fp32.onnx"
    return engine


@pytest.fixture(scope="module")
def ours_fp32(fp32_engine: Embedder) -> np.ndarray:
    assert fp32_engine.text is not None
    return fp32_engine.text.tower.embed(_ids(fp32_engine, _texts()))[0].astype(np.float64)


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
    engine = Embedder.from_dir(checkpoint_model_dir, text=True)
    assert engine.text is not None and engine.text.tower.path.name == "text_model.onnx"
    int8 = engine.text.tower.embed(_ids(engine, _texts()))[0]
    cosines = np.sum(int8.astype(np.float64) * ours_fp32, axis=1)
    assert cosines.min() >= DEFAULT_MIN_COSINE, dict(zip(_texts(), cosines, strict=True))
    gate = _text(Manifest.read(checkpoint_model_dir)).accuracy_gate or {}
    assert gate["passed"] and gate["cosine_min"] >= DEFAULT_MIN_COSINE
    # The gate measured what the runtime computes: its cosine per text, again here.
    measured = dict(zip(_texts(), cosines, strict=False))
    recorded = gate["per_input"]
    assert set(recorded) == set(CALIBRATION_TEXTS)
    assert all(abs(measured[t] - recorded[n]) <= 5e-6 for n, t in CALIBRATION_TEXTS.items()), recorded


def test_texts_and_images_embed_into_the_same_space(
    clip_checkpoint: Path, fp32_engine: Embedder, hf: dict[str, Any], ours_fp32: np.ndarray
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
    image_vectors = np.stack([fp32_engine.embed_one(images[n]).vector for n in names])
    assert np.allclose(image_vectors @ ours_fp32.T, expected, atol=1e-3)
    text_vectors = np.stack([fp32_engine.embed_text(t).vector for t in _texts()])  # the engine's own route
    assert np.allclose(image_vectors @ text_vectors.T, expected, atol=1e-3)


# --- the gate per CPU path ----------------------------------------------------------------------------------
def test_the_text_gate_lists_every_cpu_path(model_dir: Path) -> None:
    manifest = Manifest.read(model_dir)
    tower = _text(manifest)
    results = {r["path"]: r for r in tower.cpu_paths}
    native = CpuInfo.detect()
    assert {p.name for p in PATHS} | {native.kernel_path} == set(results)
    mine = results[native.kernel_path]
    assert (mine["how"], mine["status"], mine["inputs"]) == ("native", "passed", _gate_inputs(manifest))
    assert mine["cosine_min"] == (tower.accuracy_gate or {})["cosine_min"] and "u8s8_exact" in mine["probe"]
    for path in PATHS:
        r = results[path.name]
        if r["status"] == "not_run":
            assert r["reason"], r  # never silently skipped
            if path.qemu_cpu is not None and path.name != native.kernel_path and cross_cpu_required():
                pytest.fail(f"{path.name} not run under CI: {r['reason']}")
            continue
        assert r["status"] == "passed" and r["cosine_min"] >= (tower.accuracy_gate or {})["threshold"], r
        if r["how"] == "emulated":
            # the gate texts only: the canary rode along, and was taken out of the count
            assert r["inputs"] == EMULATED_IMAGES and r["seconds_per_input"] > 0 and "u8s8_exact" in r["probe"]
            assert r["path"] in (tower.canary.int8 if tower.canary else {})
            if path.arch == native.arch == "x86_64":
                assert r["bit_identical"] is True and r["agreement_min"] >= SAME_ARCH_AGREEMENT
            else:
                assert r["agreement_min"] >= CROSS_ARCH_AGREEMENT
    # The runtime's own view: the text gate covered this machine's path.
    assert (tower.gate_for(native.kernel_path) or {}).get("status") == "passed"


# --- builds that leave the text tower out, or refuse it -------------------------------------------------------
def test_a_deliberately_bad_text_quantization_is_refused(tmp_path: Path) -> None:
    """Static QDQ on every op type of the text tower misses the gate; the recovery plans dynamic int8 only, so
    the build refuses it outright (exit 4, no recovery tried, even without --no-recover) and leaves nothing
    behind."""
    out = tmp_path / "bad-text"
    proc = subprocess.run(
        [*CLI, "build-model", "--source", "random-init", "--out", str(out), "--cross-cpu", "off",
         "--text-quant-method", "static", "--text-quant-op-types", "MatMul,Add,Mul,Gemm,Gather"],
        capture_output=True,
        text=True,
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "image speed" in proc.stderr  # the image tower passed first: the refusal is the text tower's
    assert "text accuracy gate failed" in proc.stderr and "< threshold 0.999" in proc.stderr
    assert "planning a recovery" not in proc.stderr and "text recovered" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "bad-text.partial").exists()


@pytest.mark.parametrize("text", [True, False], ids=["fp32-with-text", "fp32-no-text"])
def test_fp32_and_image_only_builds(tmp_path: Path, text: bool) -> None:
    out = tmp_path / "m"
    argv = [*CLI, "build-model", "--source", "random-init", "--out", str(out), "--precision", "fp32"]
    argv += ["--cross-cpu", "off", *([] if text else ["--no-text"])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(out)
    manifest.verify_files(out)
    names = {p.name for p in out.iterdir()}
    engine = Embedder.from_dir(out, text=True)
    assert engine.self_check is not None and engine.self_check.passed, engine.self_check
    if not text:
        assert manifest.text is None and set(manifest.towers) == {"image"} and engine.text is None
        assert not names & TEXT_FILES and not set(manifest.files) & TEXT_FILES
        assert not any(step.startswith("text tower") for step in manifest.build_seconds)
        return
    assert names >= TEXT_FILES and set(manifest.files) >= TEXT_FILES
    tower = _text(manifest)
    assert manifest.precision == tower.precision == "fp32" and tower.quantization is None
    assert tower.tokens is not None and tower.tokens.file == "tokenizer.json"
    assert (tower.accuracy_gate or {})["applicable"] is False and tower.cpu_paths == ()
    assert tower.canary is not None and tower.canary.input == {"text": CANARY_TEXT} and tower.canary.int8 == {}
    digest = {
        n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in ("text_model.onnx", "text_model.fp32.onnx")
    }
    assert digest["text_model.onnx"] == digest["text_model.fp32.onnx"]  # the fp32 export under both names
    assert engine.text is not None and engine.text.tower.precision == "fp32"
    assert engine.embed_text("a dog").dim == manifest.dim


def test_a_vision_only_checkpoint_needs_no_text_and_never_falls_back(tmp_path: Path) -> None:
    """A CLIPVisionModelWithProjection has no text tower: exit 3 with what to do, not random text weights,
    and not the --fallback-source (the checkpoint itself is fine); with --no-text it builds."""
    from layer.convert.source import random_init

    random_init(seed=3).save_pretrained(tmp_path / "vision-only")
    argv = [*CLI, "build-model", "--source", str(tmp_path / "vision-only"), "--out", str(tmp_path / "m")]
    argv += ["--precision", "fp32", "--cross-cpu", "off"]
    proc = subprocess.run([*argv, "--fallback-source", "random-init"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "has no text tower" in proc.stderr and "--no-text" in proc.stderr
    assert "FALLING BACK" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()

    proc = subprocess.run([*argv, "--no-text"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = Manifest.read(tmp_path / "m")
    assert set(manifest.towers) == {"image"} and manifest.source["kind"] == "local"


# --- small parts ------------------------------------------------------------------------------------------
def test_text_quantization_follows_the_vision_format() -> None:
    image = QuantSettings(reduce_range=True, per_channel=False, weight_type="uint8", portable_softmax=False)
    text = text_quant(image, nodes_to_exclude=("n1",))
    assert text == QuantSettings(
        method="dynamic",
        op_types=("MatMul", GATHER),  # + the token embedding as int8 rows
        per_channel=False,
        weight_type="uint8",
        reduce_range=True,
        portable_softmax=False,
        nodes_to_exclude=("n1",),
    )
    static = text_quant(QuantSettings(nodes_to_exclude=("image-node",)), method="static", op_types=("MatMul",))
    assert static == QuantSettings(method="static")  # the image tower's exclusions are not the text tower's
