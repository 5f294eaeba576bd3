"""The quantizer (layer/convert/quantize.py): the nodes it is told to keep stay fp32, and the token embedding
becomes int8 rows, each with its own scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from layer.convert.quantize import QuantSettings, prepare, quantize, rowwise_int8_gather


@pytest.mark.slow
def test_excluded_nodes_stay_fp32(model_dir: Path, tmp_path: Path) -> None:
    """``--quant-exclude-nodes`` (what the recovery sets): the named MatMuls stay fp32, the others int8."""
    from layer.convert.quantize import QuantSettings
    from layer.convert.sensitivity import quantizable_nodes

    prepared = prepare(model_dir / "model.fp32.onnx", tmp_path / "prepared.onnx", QuantSettings())
    matmuls = [n.name for n in quantizable_nodes(prepared)]
    assert len(matmuls) == 73  # 12 layers × (q, k, v, out, fc1, fc2), + the projection (a Gemm, as MatMul)

    def float_matmuls(settings: QuantSettings) -> set[str]:
        out = tmp_path / "q.onnx"
        quantize(model_dir / "model.fp32.onnx", out, settings)
        return {n.name for n in onnx.load(out).graph.node if n.op_type == "MatMul"}

    excluded = tuple(matmuls[:2])
    assert not set(excluded) & float_matmuls(QuantSettings())
    assert set(excluded) <= float_matmuls(QuantSettings(nodes_to_exclude=excluded))


def test_the_token_embedding_as_int8_rows() -> None:
    rng = np.random.default_rng(0)
    table = (rng.standard_normal((2000, 16)) * rng.uniform(0.01, 1, (2000, 1))).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], name="embed", axis=0)],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [1, 5, 16])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    rows = rowwise_int8_gather(onnx.ModelProto.FromString(model.SerializeToString()))
    assert {i.data_type for i in rows.graph.initializer} == {TensorProto.INT8, TensorProto.FLOAT}
    import onnxruntime as ort

    ids = np.array([[0, 5, 1999, 42, 5]], dtype=np.int64)
    got = ort.InferenceSession(rows.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    want = table[ids[0]]
    # each row within half a step of its own scale: small rows keep their precision
    assert np.all(np.abs(got[0] - want) <= np.abs(want).max(axis=1, keepdims=True) / 127 / 2 + 1e-7)
    assert rowwise_int8_gather(model, exclude=("embed",)).graph.node[0].op_type == "Gather"  # kept fp32
