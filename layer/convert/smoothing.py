"""SmoothQuant-style scale migration (Xiao et al., 2022) into the LayerNorm in front of the MatMuls.

A LayerNorm whose output feeds only quantized MatMuls (q/k/v after ``layer_norm1``, fc1 after
``layer_norm2``, the projection after the final norm) can divide channel j of its output by s_j — its gain
and bias, once, at build time — while the MatMuls' weight rows j are multiplied by s_j: the fp32 function
is the same, but an outlier channel's range moves from the per-tensor activation scale (which it would
dominate) into the per-channel weight scales (which absorb it). s_j = max|x_j|^α / max|w_j|^(1-α).

It cannot reach outliers born after a nonlinearity (fc2's input, after GELU): those the recovery keeps in
fp32 (``layer.convert.recovery``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from layer.convert.sensitivity import ChannelStats, QNode

MIN_SCALE = 1e-5


@dataclass(frozen=True)
class SmoothGroup:
    """A LayerNormalization whose output only quantized MatMuls read."""

    norm: str  # the LayerNormalization node's name
    activation: str  # its output
    consumers: tuple[str, ...]  # QNode names


def smoothable_groups(model: onnx.ModelProto, nodes: Sequence[QNode]) -> list[SmoothGroup]:
    inits = {i.name for i in model.graph.initializer}
    by_activation: dict[str, list[QNode]] = {}
    for q in nodes:
        by_activation.setdefault(q.activation, []).append(q)
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in model.graph.output}
    groups = []
    for node in model.graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 3 or len(node.output) < 1:
            continue
        out = node.output[0]
        consumers = by_activation.get(out, [])
        gain_and_bias = node.input[1] in inits and node.input[2] in inits
        if consumers and gain_and_bias and readers.get(out, 0) == len(consumers) and out not in outputs:
            groups.append(SmoothGroup(node.name, out, tuple(q.name for q in consumers)))
    return groups


def smooth(
    model: onnx.ModelProto,
    nodes: Sequence[QNode],
    groups: Sequence[SmoothGroup],
    stats: Mapping[str, ChannelStats],
    alpha: float,
) -> onnx.ModelProto:
    """A copy of ``model`` with every group's scales migrated at strength ``alpha`` (0: unchanged). New
    initializers are written for each changed gain, bias and weight: the exporter shares identical tensors
    between nodes (every LayerNorm of an untrained model has the same all-ones gain)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if alpha <= 0:
        return out
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    by_name = {q.name: q for q in nodes}
    norms = {n.name: n for n in graph.node}
    matmuls = {n.name: n for n in graph.node if n.name in by_name}
    for g in groups:
        consumers = [by_name[c] for c in g.consumers]
        weights = [numpy_helper.to_array(inits[q.weight]) for q in consumers]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        x_max = stats[g.activation].absmax
        s = np.power(np.maximum(x_max, MIN_SCALE), alpha) / np.power(np.maximum(w_max, MIN_SCALE), 1.0 - alpha)
        s = np.maximum(s, MIN_SCALE).astype(np.float32)
        ln = norms[g.norm]
        for slot in (1, 2):
            name = ln.input[slot]
            value = numpy_helper.to_array(inits[name]) / s
            new = f"{g.norm}__smooth{slot}"
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), new))
            ln.input[slot] = new
        for q, w in zip(consumers, weights, strict=True):
            new = f"{q.name}__smooth_w"
            graph.initializer.append(numpy_helper.from_array((w * s[:, None]).astype(np.float32), new))
            matmuls[q.name].input[1] = new
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return out
