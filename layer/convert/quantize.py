"""int8 quantization with onnxruntime's own tools.

Default: dynamic quantization of MatMul weights only (per output channel, signed int8, full 8-bit range),
patch Conv left fp32, Softmax decomposed (``layer.convert.portable``): ~3× faster than fp32 on VNNI CPUs at
cosine ≥ 0.9998 on random weights. The engine runs one image per session call, which keeps dynamic
(per-tensor, per-run) activation scales batch-invariant. Signed weights meet unsigned activations in a u8×s8
GEMM that is exact on VNNI/AMX/arm64 but saturates on x86 CPUs without VNNI; there the session converts the
weights to u8 at load (``layer.cpu``), so that every CPU computes the same integers.
``static`` (QDQ with calibrated activation scales) is offered for experiments; on all op types it loses
accuracy badly, which is what the accuracy gate is for.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.onnx_model import ONNXModel
from onnxruntime.quantization.shape_inference import quant_pre_process

from layer.convert.portable import decompose_softmax
from layer.manifest import INPUT_NAME

GATHER = "Gather"  # in op_types: the token embedding as int8 rows (``rowwise_int8_gather``)


@dataclass(frozen=True)
class QuantSettings:
    method: Literal["dynamic", "static"] = "dynamic"
    op_types: tuple[str, ...] = ("MatMul",)
    per_channel: bool = True
    weight_type: Literal["int8", "uint8"] = "int8"
    # 7-bit weights cannot saturate u8×s8 pairs, so x86 without VNNI needs no conversion at load, but they
    # lose accuracy (min cosine 0.99962 vs 0.99986 on random-init): off by default.
    reduce_range: bool = False
    portable_softmax: bool = True  # the same vectors on every x86 CPU (layer.convert.portable)
    nodes_to_exclude: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["op_types"] = list(self.op_types)
        d["nodes_to_exclude"] = list(self.nodes_to_exclude)
        return d


class _Calibration(CalibrationDataReader):
    """One input at a time (pixel values [3,H,W] or token ids [77]), as the engine runs them."""

    def __init__(self, inputs: Sequence[np.ndarray], name: str) -> None:
        self._items: Iterator[np.ndarray] = iter(inputs)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._items, None)
        return None if x is None else {self._name: x[None]}


def optimize_offline(path: Path, level: str = "extended") -> Path:
    """Apply ORT's graph optimizations once at build time and save the result in place, so that every cold
    start skips them (session creation ~25% faster). "extended" fusions are CPU-provider and
    onnxruntime-version specific: the manifest records the version, and the image pins the same one."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    tmp = path.with_suffix(".opt.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    tmp.replace(path)
    return path


def prepare(fp32_path: Path, out_path: Path, settings: QuantSettings) -> onnx.ModelProto:
    """The fp32 graph the quantizer and the recovery work on, saved to ``out_path``: onnxruntime's
    recommended pre-processing (shape inference, graph cleanup), the portable Softmax, Gemm written as
    MatMul (what the quantizer would do itself, so node names agree between a plan and the quantized
    model)."""
    with tempfile.TemporaryDirectory(prefix="clip-prep-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
    if settings.portable_softmax:
        model, _ = decompose_softmax(model)
    wrapped = ONNXModel(model)
    wrapped.replace_gemm_with_matmul()
    model = wrapped.model
    onnx.save(model, str(out_path))
    return model


def is_embedding_gather(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], min_rows: int = 1024) -> bool:
    """A Gather along axis 0 of a float table of at least ``min_rows`` rows: the token embedding (not the
    77 position rows)."""
    table = inits.get(node.input[0]) if node.op_type == "Gather" else None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return (
        table is not None
        and table.data_type == TensorProto.FLOAT
        and len(table.dims) == 2
        and table.dims[0] >= min_rows
        and axis == 0
    )


def rowwise_quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 rows [-127, 127] and their float32 scales [rows, 1]."""
    absmax = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(absmax > 0, absmax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def rowwise_int8_gather(model: onnx.ModelProto, exclude: Sequence[str] = ()) -> onnx.ModelProto:
    """Every Gather from a float table of at least ``min_rows`` rows (the token embedding, not the 77
    position rows) reads int8 rows with one scale per row instead: 4× smaller, and each token keeps its own
    range, where onnxruntime's Gather quantization shares one u8 scale over all 49,408 rows. Float math
    (Gather, Cast, Mul) gives the same values on every CPU."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if not is_embedding_gather(node, inits) or node.name in exclude:
            nodes.append(node)
            continue
        q, scale = rowwise_quantize(numpy_helper.to_array(inits[node.input[0]]))
        p = f"{node.name or node.output[0]}_rowwise"
        graph.initializer.extend(
            [numpy_helper.from_array(q, f"{p}_int8"), numpy_helper.from_array(scale, f"{p}_scale")]
        )
        ids = node.input[1]
        nodes += [
            helper.make_node("Gather", [f"{p}_int8", ids], [f"{p}_rows"], name=f"{p}_gather", axis=0),
            helper.make_node("Cast", [f"{p}_rows"], [f"{p}_float"], name=f"{p}_cast", to=TensorProto.FLOAT),
            helper.make_node("Gather", [f"{p}_scale", ids], [f"{p}_scales"], name=f"{p}_gather_scale", axis=0),
            helper.make_node("Mul", [f"{p}_float", f"{p}_scales"], [node.output[0]], name=f"{p}_mul"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def quantize_prepared(
    prepared: Path,
    out_path: Path,
    settings: QuantSettings,
    calibration: Sequence[np.ndarray] = (),
    input_name: str = INPUT_NAME,
) -> Path:
    """``out_path`` from a ``prepare``d graph (MatMul weights int8 by onnxruntime's quantizer, the token
    embedding as int8 rows if ``settings`` quantizes Gather), saved pre-optimized. ``calibration``: inputs
    of ``input_name`` for the static method."""
    weight_type = QuantType.QInt8 if settings.weight_type == "int8" else QuantType.QUInt8
    op_types = [t for t in settings.op_types if t != GATHER]
    with tempfile.TemporaryDirectory(prefix="clip-quant-") as tmp:
        raw = Path(tmp) / "quantized.onnx"
        if GATHER in settings.op_types:
            rows = Path(tmp) / "rows.onnx"
            onnx.save(rowwise_int8_gather(onnx.load(str(prepared)), settings.nodes_to_exclude), str(rows))
            prepared = rows
        if settings.method == "dynamic":
            quantize_dynamic(
                str(prepared),
                str(raw),
                op_types_to_quantize=op_types,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                weight_type=weight_type,
                nodes_to_exclude=list(settings.nodes_to_exclude),
                extra_options={"MatMulConstBOnly": True},
            )
        else:
            if not calibration:
                raise ValueError("static quantization needs calibration inputs")
            quantize_static(
                str(prepared),
                str(raw),
                _Calibration(calibration, input_name),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=weight_type,
                nodes_to_exclude=list(settings.nodes_to_exclude),
            )
        optimize_offline(raw)
        shutil.move(str(raw), out_path)
    return out_path


def quantize(
    fp32_path: Path,
    out_path: Path,
    settings: QuantSettings,
    calibration: Sequence[np.ndarray] = (),
    input_name: str = INPUT_NAME,
) -> Path:
    """``prepare`` then ``quantize_prepared`` in one go (no recovery)."""
    with tempfile.TemporaryDirectory(prefix="clip-quant-") as tmp:
        pre = Path(tmp) / "prepared.onnx"
        prepare(fp32_path, pre, settings)
        return quantize_prepared(pre, out_path, settings, calibration, input_name)
