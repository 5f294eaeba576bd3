"""A tiny pre-LN block: LayerNorm → q, k (MatMul) and LayerNorm → fc1 → GELU → fc2, the graph the int8 tools'
tests (test_sensitivity.py, test_smoothing.py) quantize, simulate and migrate in milliseconds."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH, HIDDEN, TOKENS = 64, 128, 20


def tiny_block(hot: float = 1.0, seed: int = 0) -> onnx.ModelProto:
    """x [1, TOKENS, WIDTH] → LN → two MatMuls (summed) → LN → fc1 → Gelu → fc2 → y. ``hot``: the gain of
    three LayerNorm channels (an outlier channel at every MatMul input after it)."""
    rng = np.random.default_rng(seed)
    gain = np.ones(WIDTH, np.float32)
    gain[[3, 17, 40]] = hot
    inits = [
        numpy_helper.from_array(gain, "ln1_g"),
        numpy_helper.from_array(np.zeros(WIDTH, np.float32), "ln1_b"),
        numpy_helper.from_array(gain.copy(), "ln2_g"),
        numpy_helper.from_array(np.zeros(WIDTH, np.float32), "ln2_b"),
        numpy_helper.from_array((rng.standard_normal((WIDTH, WIDTH)) * 0.1).astype(np.float32), "wq"),
        numpy_helper.from_array((rng.standard_normal((WIDTH, WIDTH)) * 0.1).astype(np.float32), "wk"),
        numpy_helper.from_array((rng.standard_normal((WIDTH, HIDDEN)) * 0.1).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((HIDDEN, WIDTH)) * 0.1).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln1_g", "ln1_b"], ["n1"], name="ln1", axis=-1),
        helper.make_node("MatMul", ["n1", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["n1", "wk"], ["k"], name="k"),
        helper.make_node("Add", ["q", "k"], ["h"], name="add"),
        helper.make_node("LayerNormalization", ["h", "ln2_g", "ln2_b"], ["n2"], name="ln2", axis=-1),
        helper.make_node("MatMul", ["n2", "w1"], ["f1"], name="fc1"),
        helper.make_node("Gelu", ["f1"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("MatMul", ["g", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, WIDTH])],
        inits,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def block_inputs(n: int = 6, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, TOKENS, WIDTH)).astype(np.float32)


def run_block(model: onnx.ModelProto, x: np.ndarray, int8: bool = False) -> np.ndarray:
    """``int8``: with the session options the runtime gives an int8 model on this CPU (exact u8×s8)."""
    import onnxruntime as ort

    from layer.cpu import CpuInfo, int8_tuning, probe_u8s8
    from layer.session import SessionSettings, session_options

    cpu = CpuInfo.detect()
    tuning = int8_tuning(cpu, None, probe_u8s8(cpu.arch)) if int8 else None
    settings = SessionSettings(1, False, tuning.optimization if tuning else "basic", tuning.config if tuning else ())
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(settings), providers=["CPUExecutionProvider"]
    )
    return np.stack([session.run(["y"], {"x": xi[None]})[0][0].reshape(-1) for xi in x])
