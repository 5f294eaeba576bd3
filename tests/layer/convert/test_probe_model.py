"""The u8×s8 probe model (layer/convert/probe_model.py), which the engine carries as bytes (layer.cpu.PROBE_MODEL)
since it cannot import onnx."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort

from layer.convert.probe_model import WEIGHT, probe_model
from layer.cpu import PROBE_INPUT, PROBE_MODEL, PROBE_OUTPUT, PROBE_SHAPE


def test_the_probe_model_is_the_one_probe_model_writes() -> None:
    from layer.convert.probe_model import encoded

    assert encoded() == PROBE_MODEL


def test_the_probe_is_one_int8_matmul_of_saturating_weights_that_onnxruntime_runs() -> None:
    """One DynamicQuantizeMatMul by a weight of 127s at scale 1: the largest products a u8×s8 kernel can get,
    which a 16-bit accumulation of pairs cannot hold (what layer.cpu's probe looks for)."""
    model = onnx.ModelProto.FromString(zlib.decompress(base64.b64decode(PROBE_MODEL)))
    assert model == probe_model()
    onnx.checker.check_model(model)
    [node] = model.graph.node
    assert (node.op_type, node.domain) == ("DynamicQuantizeMatMul", "com.microsoft")
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    m, k = PROBE_SHAPE
    assert weights["w"].shape == (k, 32) and weights["w"].dtype == np.int8 and (weights["w"] == WEIGHT).all()
    assert WEIGHT == 127 and weights["w_scale"].tolist() == [1.0] and weights["w_zero_point"].tolist() == [0]
    assert [i.name for i in model.graph.input] == [PROBE_INPUT]
    assert [o.name for o in model.graph.output] == [PROBE_OUTPUT]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run([PROBE_OUTPUT], {PROBE_INPUT: np.zeros(PROBE_SHAPE, np.float32)})
    assert out.shape == (m, 32) and not out.any()
