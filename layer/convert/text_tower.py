"""The text tower's build steps, beside the vision tower's in the same model directory.

tokenizer.json (CLIP's vocabulary, ``layer.convert.tokenizer``) → text tower + projection exported to
``text_model.fp32.onnx`` → int8 ``text_model.onnx`` (the vision tower's format: per-channel s8 MatMul weights,
dynamic u8 activations, portable Softmax; plus the 49,408 × 512 token embedding in 8 bits, 25 MB instead of
100 MB, kept only if the gate passes with it) → the text gate (every calibration text, int8 vs fp32, in the
runtime's session for this CPU, then a few texts on the other CPU paths) → the manifest's ``text`` section.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from layer.convert.bpe_vocab import load_bpe
from layer.convert.embed_tokens import TextSession
from layer.convert.export import OPSET, export_text_onnx
from layer.convert.gate import GateFailed, GateResult, judge
from layer.convert.quantize import QuantSettings, optimize_offline, quantize
from layer.convert.source import NoTextTower, load_text_source
from layer.convert.tokenizer import write_tokenizer
from layer.manifest import (
    TEXT_FP32_FILE,
    TEXT_INPUT_NAME,
    TEXT_MODEL_FILE,
    TEXT_OUTPUT_NAME,
    TOKENIZER_FILE,
    Manifest,
)

# The token embedding lookup: onnxruntime quantizes its table like an activation (u8, one scale and zero point
# for the whole table) and dequantizes the looked-up rows; exact on every CPU (no integer GEMM involved).
GATHER = "Gather"


@dataclass(frozen=True)
class TextExport:
    """What the fp32 export and the tokenizer fixed: the token layout and the output size."""

    context_length: int
    bos_id: int
    eos_id: int
    vocab_size: int
    dim: int
    tokenizer_source: dict[str, str]


def export_text(source: str, folder: Path, *, revision: str | None = None, seed: int = 0) -> TextExport:
    """Write ``tokenizer.json`` and ``text_model.fp32.onnx`` of ``source`` into ``folder``."""
    import transformers

    bpe = load_bpe()
    loaded = load_text_source(source, revision=revision, seed=seed)
    config = loaded.model.config
    if config.vocab_size != len(bpe.vocab):
        raise NoTextTower(f"{source!r}: a text tower over {config.vocab_size} tokens, not CLIP's {len(bpe.vocab)}")
    write_tokenizer(bpe, folder / TOKENIZER_FILE, loaded.context_length)
    export_text_onnx(loaded.model, folder / TEXT_FP32_FILE, context_length=loaded.context_length)
    return TextExport(
        context_length=loaded.context_length,
        bos_id=bpe.bos_id,
        eos_id=bpe.eos_id,
        vocab_size=len(bpe.vocab),
        dim=int(loaded.model.text_projection.out_features),
        tokenizer_source={**bpe.source, "tokenizer": f"transformers {transformers.__version__} CLIPTokenizer"},
    )


def text_quant(
    image: QuantSettings,
    *,
    method: Literal["dynamic", "static"] = "dynamic",
    op_types: tuple[str, ...] = ("MatMul", GATHER),
    nodes_to_exclude: tuple[str, ...] = (),
) -> QuantSettings:
    """The vision tower's weight format (bits, per channel, signedness, portable Softmax: the same session
    tuning and the same vectors on every CPU) with the text tower's own op types and exclusions."""
    return dataclasses.replace(image, method=method, op_types=op_types, nodes_to_exclude=nodes_to_exclude)


def without_gather(settings: QuantSettings) -> QuantSettings | None:
    """The fallback when the int8 token embedding fails the gate; None if it was not quantized."""
    if GATHER not in settings.op_types:
        return None
    return dataclasses.replace(settings, op_types=tuple(t for t in settings.op_types if t != GATHER))


def quantize_text(folder: Path, settings: QuantSettings, calibration: np.ndarray) -> Path:
    """``text_model.onnx`` from ``text_model.fp32.onnx``, saved pre-optimized like ``model.onnx``."""
    calib = list(calibration) if settings.method == "static" else []
    out = quantize(folder / TEXT_FP32_FILE, folder / TEXT_MODEL_FILE, settings, calib, input_name=TEXT_INPUT_NAME)
    return optimize_offline(out)


@dataclass(frozen=True)
class TextGate:
    quant: QuantSettings  # the settings that passed
    result: GateResult
    int8: np.ndarray  # unit vectors of the gate's texts
    fp32: np.ndarray
    attempts: tuple[dict[str, Any], ...]  # op types tried, in order, and their minimum cosine

    def to_dict(self) -> dict[str, Any]:
        return {"applicable": True, **self.result.to_dict("texts"), "attempts": list(self.attempts)}


def _gate_once(folder: Path, names: list[str], ids: np.ndarray, min_cosine: float) -> tuple[GateResult, Any, Any]:
    """Each text's int8 vector against its fp32 vector, both in the runtime's session for this CPU (the
    manifest in ``folder`` must already name the text tower's quantization)."""
    int8 = TextSession(folder).embed(ids)
    fp32 = TextSession(folder, precision="fp32").embed(ids)
    return judge(names, int8, fp32, min_cosine), int8, fp32


def gate_text(
    folder: Path,
    provisional: Manifest,
    export: TextExport,
    *,
    quant: QuantSettings,
    names: list[str],
    ids: np.ndarray,
    min_cosine: float,
    log: Callable[[str], None],
) -> tuple[TextGate, Manifest]:
    """The text gate on ``text_model.onnx`` as quantized with ``quant``; below the threshold with the token
    embedding int8, quantized again without it and gated again. Returns the gate and the provisional
    manifest that names the settings kept; raises ``GateFailed`` when no attempt passes."""
    attempts: list[dict[str, Any]] = []
    current: QuantSettings | None = quant
    while current is not None:
        if attempts:
            log(f"    below {min_cosine} with the token embedding int8: again with it in fp32")
            quantize_text(folder, current, ids)
            provisional = dataclasses.replace(
                provisional, text=text_section(export, precision="int8", quant=current, gate={}, cpu_paths=[])
            )
            provisional.write(folder)
        result, int8, fp32 = _gate_once(folder, names, ids, min_cosine)
        attempts.append({"op_types": list(current.op_types), "cosine_min": result.cosine_min})
        log(
            f"    {'+'.join(current.op_types)}: cosine min {result.cosine_min:.6f} ({result.worst}), "
            f"mean {result.cosine_mean:.6f}"
        )
        if result.passed:
            return TextGate(current, result, int8, fp32, tuple(attempts)), provisional
        current = without_gather(current)
    raise GateFailed(result, "text")


def text_section(
    export: TextExport,
    *,
    precision: Literal["int8", "fp32"],
    quant: QuantSettings | None,
    gate: dict[str, Any],
    cpu_paths: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest's ``text`` (``layer.manifest.TextTower`` is its typed view)."""
    n = export.context_length
    return {
        "file": TEXT_MODEL_FILE,
        "fp32_file": TEXT_FP32_FILE,
        "tokenizer": TOKENIZER_FILE,
        "context_length": n,
        "pad_id": export.eos_id,  # as HF's CLIPTokenizer pads
        "bos_id": export.bos_id,
        "eos_id": export.eos_id,
        "vocab_size": export.vocab_size,
        "dim": export.dim,
        "precision": precision,
        "input": {
            "name": TEXT_INPUT_NAME,
            "dtype": "int64",
            "shape": ["N", n],
            "layout": f"bos_id, the text's tokens, eos_id, then pad_id up to {n} (longer texts: bos_id, their "
            f"first {n - 2} tokens, eos_id); no attention mask (causal tower, pooled at the first eos_id); "
            "one text per run",
        },
        "output": {
            "name": TEXT_OUTPUT_NAME,
            "shape": ["N", export.dim],
            "normalized": False,
            "equals": "CLIPModel.get_text_features",
        },
        "tokenizer_source": export.tokenizer_source,
        "opset": OPSET,
        "quantization": quant.to_dict() if quant is not None else None,
        "graph_optimization": "extended (offline)" if precision == "int8" else "none",
        "accuracy_gate": gate,
        "cpu_paths": cpu_paths,
    }
