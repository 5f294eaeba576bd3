"""What int8 costs each MatMul of a tower, measured on the tower's own gate inputs.

The runtime model quantizes every MatMul with a constant weight the same way (``layer.convert.quantize``):
per-output-channel symmetric int8 weights, and per-tensor u8 activations whose range is taken from the
whole input at run time. ``simulated_model`` rewrites the prepared fp32 graph so that each such MatMul can
be switched, by one boolean input, between fp32 and exactly that arithmetic (onnxruntime's own
``DynamicQuantizeLinear`` → ``DequantizeLinear`` on the activation, the weights quantized as the quantizer
does). One session then answers "what if only these nodes were int8": the quantize-one sensitivity of each
node, and any candidate mix, without re-quantizing the model (seconds instead of minutes per try).

``activation_stats`` runs the fp32 graph once per input with every quantized MatMul's activation as an
extra output, keeping only per-channel maxima (for ``layer.convert.smoothing``): a ViT-L/14 at 336 px
would otherwise hold gigabytes of activations.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from layer.convert.quantize import is_embedding_gather, rowwise_quantize

MASK_INPUT = "clip_lambda_int8_mask"


@dataclass(frozen=True)
class QNode:
    """A node the build turns int8: its name (what ``nodes_to_exclude`` takes), the activation it reads,
    its constant weight and the weight's shape [k, n]. A MatMul's fp32 cost is ∝ rows·k·n; a Gather (the
    token embedding, as int8 rows) reads ``activation`` = the ids and costs no multiply."""

    name: str
    activation: str
    weight: str
    k: int
    n: int
    kind: str = "MatMul"  # "MatMul" | "Gather"

    @property
    def macs(self) -> int:
        return self.k * self.n if self.kind == "MatMul" else self.n


def quantizable_nodes(model: onnx.ModelProto, *, gather: bool = False) -> list[QNode]:
    """The MatMuls with a constant 2-D weight (the quantizer's ``MatMulConstBOnly``) and, with ``gather``,
    the token embedding's Gather, in graph order."""
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if gather and is_embedding_gather(node, inits):
            rows, width = (int(d) for d in inits[node.input[0]].dims)
            nodes.append(QNode(node.name, node.input[1], node.input[0], rows, width, kind="Gather"))
            continue
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[0] in inits:
            continue
        dims = tuple(inits[node.input[1]].dims)
        if len(dims) == 2:
            nodes.append(QNode(node.name, node.input[0], node.input[1], int(dims[0]), int(dims[1])))
    if len({n.name for n in nodes}) != len(nodes):
        raise ValueError("the graph has unnamed or duplicate MatMul node names: nodes cannot be excluded by name")
    return nodes


def fake_quant_weight(w: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric int8 [-127, 127], as onnxruntime's dynamic quantizer stores MatMul
    weights, dequantized back to float32."""
    absmax = np.abs(w).max(axis=0, keepdims=True).astype(np.float32)
    scale = np.where(absmax > 0, absmax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def fake_quant_activation(x: np.ndarray) -> np.ndarray:
    """Dynamic per-tensor u8, as ``DynamicQuantizeLinear`` (the range always includes 0)."""
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = np.float32((hi - lo) / 255.0) or np.float32(1.0)
    zp = np.clip(np.round(-lo / scale), 0, 255)
    return ((np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale).astype(np.float32)


def simulated_model(model: onnx.ModelProto, nodes: Sequence[QNode]) -> onnx.ModelProto:
    """A copy of ``model`` with a bool input ``MASK_INPUT`` [len(nodes)]: where it is true, node i computes
    int8 arithmetic (an ``If`` picks the branch, so only one branch runs)."""
    sim = onnx.ModelProto()
    sim.CopyFrom(model)
    graph = sim.graph
    inits = {i.name: i for i in graph.initializer}
    index = {n.name: i for i, n in enumerate(nodes)}
    graph.input.append(helper.make_tensor_value_info(MASK_INPUT, TensorProto.BOOL, [len(nodes)]))
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        i = index.get(node.name)
        if i is None:
            new_nodes.append(node)
            continue
        q = nodes[i]
        wq = f"{q.weight}__int8_sim"
        if wq not in inits:
            w = numpy_helper.to_array(inits[q.weight])
            if q.kind == "Gather":
                rows, scale = rowwise_quantize(w)
                fake = (rows.astype(np.float32) * scale).astype(np.float32)
            else:
                fake = fake_quant_weight(w)
            inits[wq] = numpy_helper.from_array(fake, wq)
            graph.initializer.append(inits[wq])
        out = node.output[0]
        p = f"{node.name}__sim"
        graph.initializer.append(numpy_helper.from_array(np.asarray(i, dtype=np.int64), f"{p}_idx"))
        if q.kind == "Gather":
            int8_nodes = [helper.make_node("Gather", [wq, q.activation], [f"{p}_yq"], axis=0)]
            fp32_nodes = [helper.make_node("Gather", [q.weight, q.activation], [f"{p}_yf"], axis=0)]
        else:
            int8_nodes = [
                helper.make_node("DynamicQuantizeLinear", [q.activation], [f"{p}_xq", f"{p}_s", f"{p}_z"]),
                helper.make_node("DequantizeLinear", [f"{p}_xq", f"{p}_s", f"{p}_z"], [f"{p}_xd"]),
                helper.make_node("MatMul", [f"{p}_xd", wq], [f"{p}_yq"]),
            ]
            fp32_nodes = [helper.make_node("MatMul", [q.activation, q.weight], [f"{p}_yf"])]
        then = helper.make_graph(
            int8_nodes, f"{p}_int8", [], [helper.make_tensor_value_info(f"{p}_yq", TensorProto.FLOAT, None)]
        )
        other = helper.make_graph(
            fp32_nodes, f"{p}_fp32", [], [helper.make_tensor_value_info(f"{p}_yf", TensorProto.FLOAT, None)]
        )
        new_nodes += [
            helper.make_node("Gather", [MASK_INPUT, f"{p}_idx"], [f"{p}_on"], name=f"{p}_gather"),
            helper.make_node("If", [f"{p}_on"], [out], name=f"{p}_if", then_branch=then, else_branch=other),
        ]
    del graph.node[:]
    graph.node.extend(new_nodes)
    return sim


class Simulator:
    """One session of the simulated model: unit vectors for any int8 mask, one input per run (as the
    runtime runs them)."""

    def __init__(self, model: onnx.ModelProto, nodes: Sequence[QNode], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.nodes = list(nodes)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.session = _session(simulated_model(model, self.nodes), so)
        self.input = next(i.name for i in self.session.get_inputs() if i.name != MASK_INPUT)
        self.output = self.session.get_outputs()[0].name

    def mask(self, int8: Sequence[str] | None = None) -> np.ndarray:
        """True for the named nodes (all of them when None)."""
        if int8 is None:
            return np.ones(len(self.nodes), dtype=bool)
        names = set(int8)
        return np.array([n.name in names for n in self.nodes], dtype=bool)

    def vectors(self, inputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        rows = [self.session.run([self.output], {self.input: x[None], MASK_INPUT: mask})[0].reshape(-1) for x in inputs]
        v = np.stack(rows).astype(np.float64)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two stacks of vectors."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def quantize_one_losses(sim: Simulator, inputs: np.ndarray, fp32: np.ndarray) -> np.ndarray:
    """[nodes, inputs]: 1 - cosine to fp32 with only that node int8. For small errors the losses of several
    nodes add up (squared errors of nearly orthogonal perturbations), which is what the search relies on
    (and checks, by simulating the mix it picks)."""
    losses = np.zeros((len(sim.nodes), len(inputs)))
    for i in range(len(sim.nodes)):
        one = np.zeros(len(sim.nodes), dtype=bool)
        one[i] = True
        losses[i] = 1.0 - cosines(sim.vectors(inputs, one), fp32)
    return np.maximum(losses, 0.0)


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel max |x| of one activation over every token of every input."""

    absmax: np.ndarray  # [k]


def activation_stats(
    model: onnx.ModelProto, tensors: Sequence[str], inputs: np.ndarray
) -> tuple[dict[str, ChannelStats], dict[str, int]]:
    """Per-channel max |activation| of each named tensor over ``inputs`` (run one at a time in fp32), and
    the rows (tokens) of each per run: a node's cost is rows × k × n."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    inputs_ = {i.name for i in m.graph.input}
    wanted = [t for t in dict.fromkeys(tensors) if t not in inputs_]
    for name in wanted:
        if name not in present:
            m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as exported
    so.log_severity_level = 3
    session = _session(m, so)
    feed = session.get_inputs()[0].name
    acc: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for x in inputs:
        outs = session.run(wanted, {feed: x[None]})
        for name, value in zip(wanted, outs, strict=True):
            flat = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            rows[name] = int(value.size // value.shape[-1])
            acc[name] = flat if name not in acc else np.maximum(acc[name], flat)
    return {name: ChannelStats(absmax=v.astype(np.float32)) for name, v in acc.items()}, rows


def _session(model: onnx.ModelProto, options: Any) -> Any:
    """A CPU session of an in-memory model, through a file with external data: a simulated ViT-L/14 holds
    its weights twice (fp32 and int8-rounded), past protobuf's 2 GB limit for one message."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="clip-sim-") as tmp:
        path = Path(tmp) / "model.onnx"
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        onnx.save(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
