"""The u8×s8 probe model the engine carries as ``layer.cpu.PROBE_MODEL`` (the engine cannot import onnx, so
the bytes are written here once and pasted there; tests/layer/convert/test_probe_model.py checks they still agree)."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from layer.cpu import PROBE_INPUT, PROBE_OUTPUT, PROBE_SHAPE

WEIGHT = 127


def probe_model() -> onnx.ModelProto:
    """``DynamicQuantizeMatMul`` (com.microsoft) of a float input [8, 128] by an int8 weight of 127s [128, 32]
    with scale 1 and zero point 0."""
    m, k = PROBE_SHAPE
    n = 32
    inits = [
        numpy_helper.from_array(np.full((k, n), WEIGHT, dtype=np.int8), "w"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array([0], dtype=np.int8), "w_zero_point"),
    ]
    node = helper.make_node(
        "DynamicQuantizeMatMul", [PROBE_INPUT, "w", "w_scale", "w_zero_point"], [PROBE_OUTPUT],
        domain="com.microsoft", name="probe",
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "u8s8_probe",
        [helper.make_tensor_value_info(PROBE_INPUT, TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info(PROBE_OUTPUT, TensorProto.FLOAT, [m, n])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)],
        producer_name="clip-lambda",
    )
    model.ir_version = 8
    return model


def encoded() -> str:
    """The model as ``layer.cpu.PROBE_MODEL`` holds it: zlib-compressed, base64."""
    return base64.b64encode(zlib.compress(probe_model().SerializeToString(), 9)).decode("ascii")


if __name__ == "__main__":
    print(encoded())
