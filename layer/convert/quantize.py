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
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from layer.convert.portable import decompose_softmax
from layer.manifest import INPUT_NAME


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


def quantize(
    fp32_path: Path,
    out_path: Path,
    settings: QuantSettings,
    calibration: Sequence[np.ndarray] = (),
    input_name: str = INPUT_NAME,
) -> Path:
    """``calibration``: inputs of the model's ``input_name`` for the static method (float32 pixel values for
    the vision tower, int64 token ids for the text tower)."""
    weight_type = QuantType.QInt8 if settings.weight_type == "int8" else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix="clip-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # ORT's recommended pre-processing: shape inference + graph cleanup before quantization.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        if settings.portable_softmax:
            model, _ = decompose_softmax(onnx.load(str(pre)))
            onnx.save(model, str(pre))
        if settings.method == "dynamic":
            quantize_dynamic(
                str(pre),
                str(out_path),
                op_types_to_quantize=list(settings.op_types),
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
                str(pre),
                str(out_path),
                _Calibration(calibration, input_name),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(settings.op_types),
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=weight_type,
                nodes_to_exclude=list(settings.nodes_to_exclude),
            )
        for extra in Path(tmp).glob("*.data"):
            shutil.move(str(extra), out_path.parent / extra.name)
    return out_path
