"""The Softmax decomposition that makes the int8 model's vectors identical on every x86 CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from layer.convert.portable import decompose_softmax


def _softmax_model(axis: int, opset: int = 18) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5])
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=axis, name="sm")], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_decomposition_equals_softmax(axis: int) -> None:
    x = np.random.default_rng(0).normal(0, 8, (2, 3, 5)).astype(np.float32)  # large logits: max-shift matters
    reference = _run(_softmax_model(axis), x)
    model, count = decompose_softmax(_softmax_model(axis))
    onnx.checker.check_model(model, full_check=True)
    assert count == 1
    assert {n.op_type for n in model.graph.node} == {"ReduceMax", "Sub", "Exp", "ReduceSum", "Div"}
    np.testing.assert_allclose(_run(model, x), reference, rtol=1e-6, atol=1e-7)


def test_older_opsets_are_refused() -> None:
    with pytest.raises(ValueError, match="opset >= 18"):
        decompose_softmax(_softmax_model(-1, opset=13))


def test_shipped_model_has_no_fused_softmax(model_dir: Path) -> None:
    ops = [n.op_type for n in onnx.load(model_dir / "model.onnx").graph.node]
    assert "Softmax" not in ops and ops.count("Exp") == 12  # one per transformer layer
