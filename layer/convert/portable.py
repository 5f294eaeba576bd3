"""Graph rewrites that make the int8 model compute the same vector on every x86 CPU.

With exact integer GEMMs (see ``layer.cpu``), the only onnxruntime kernel whose float result depends on the
x86 ISA is ``Softmax``: MLAS picks an AVX-512 or an AVX2/FMA3 exp-and-sum kernel at run time, and the two
differ by a few ulp (3.7e-9 measured). Dynamic int8 quantization turns such differences into whole
quantization steps at the next MatMul's input, and the vectors of an AVX2 and an AVX-512 CPU then differed
at cosine 0.99994. Written as ReduceMax → Sub → Exp → ReduceSum → Div, the same function runs on kernels
compiled once for every x86 CPU, and the vectors of all x86 paths are bit-identical (measured: native
AVX512-VNNI vs ``qemu -cpu Haswell``), at no measurable speed cost (the attention softmax is ~0.1% of the
FLOPs). arm64 still differs in a few float kernels (LayerNormalization, SVE Exp): see README "CPU paths".
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), -1)


def decompose_softmax(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace every ``Softmax`` (opset ≥ 13 semantics: one axis) by its decomposition, in place.

    Returns the model and the number of nodes rewritten. The decomposition subtracts the row maximum
    first, exactly like the fused kernel, so it is as stable numerically."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:
        raise ValueError(f"decompose_softmax expects opset >= 18 (axes as inputs), got {opset}")
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        if node.op_type != "Softmax" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        count += 1
        x, y = node.input[0], node.output[0]
        p = f"{node.name or y}_portable"
        axes = f"{p}_axes"
        graph.initializer.append(helper.make_tensor(axes, TensorProto.INT64, [1], [_axis(node)]))
        nodes += [
            helper.make_node("ReduceMax", [x, axes], [f"{p}_max"], name=f"{p}_max", keepdims=1),
            helper.make_node("Sub", [x, f"{p}_max"], [f"{p}_shifted"], name=f"{p}_sub"),
            helper.make_node("Exp", [f"{p}_shifted"], [f"{p}_exp"], name=f"{p}_exp"),
            helper.make_node("ReduceSum", [f"{p}_exp", axes], [f"{p}_sum"], name=f"{p}_sum", keepdims=1),
            helper.make_node("Div", [f"{p}_exp", f"{p}_sum"], [y], name=f"{p}_div"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model, count
