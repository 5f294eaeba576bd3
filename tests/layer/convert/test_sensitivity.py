"""The int8 simulation the recovery searches with (layer/convert/sensitivity.py): which nodes can be int8,
onnxruntime's int8 arithmetic in numpy, and each node switched between fp32 and int8 in one session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from layer.convert.quantize import QuantSettings, prepare, quantize_prepared
from layer.convert.sensitivity import (
    Simulator,
    cosines,
    fake_quant_activation,
    fake_quant_weight,
    quantizable_nodes,
    quantize_one_losses,
)
from tests.layer.convert.blocks import HIDDEN, TOKENS, WIDTH, block_inputs, run_block, tiny_block


def test_the_quantizable_nodes_are_the_constant_weight_matmuls() -> None:
    nodes = quantizable_nodes(tiny_block())
    assert [(n.name, n.activation, n.weight, n.k, n.n) for n in nodes] == [
        ("q", "n1", "wq", WIDTH, WIDTH),
        ("k", "n1", "wk", WIDTH, WIDTH),
        ("fc1", "n2", "w1", WIDTH, HIDDEN),
        ("fc2", "g", "w2", HIDDEN, WIDTH),
    ]


def test_fake_quantization_is_onnxruntimes_int8_arithmetic() -> None:
    w = np.random.default_rng(0).standard_normal((WIDTH, HIDDEN)).astype(np.float32)
    fq = fake_quant_weight(w)
    scale = np.abs(w).max(axis=0) / 127
    steps = fq / scale
    assert np.allclose(steps, np.round(steps), atol=1e-4) and np.abs(steps).max() <= 127 + 1e-4
    x = np.random.default_rng(1).standard_normal((TOKENS, WIDTH)).astype(np.float32) + 0.5
    fx = fake_quant_activation(x)
    assert len(np.unique(fx)) <= 256 and np.abs(fx - x).max() <= (x.max() - min(0, x.min())) / 255


def test_the_simulation_switches_each_node_between_fp32_and_int8() -> None:
    model, x = tiny_block(hot=50.0), block_inputs()
    sim = Simulator(model, quantizable_nodes(model))
    fp32 = run_block(model, x)
    assert np.allclose(sim.vectors(x, sim.mask([])), fp32 / np.linalg.norm(fp32, axis=1, keepdims=True), atol=1e-6)
    all_int8 = cosines(sim.vectors(x, sim.mask()), fp32)
    only_fc2 = cosines(sim.vectors(x, sim.mask(["fc2"])), fp32)
    assert all_int8.min() < only_fc2.min() < 1.0  # the outliers enter q, k and fc1, not fc2


def test_the_simulation_predicts_the_quantized_model(tmp_path: Path) -> None:
    """Every node int8 in the simulation vs onnxruntime's quantizer on the same graph: the same error (the two
    round differently only where a value sits on a quantization step's edge)."""
    model, x = tiny_block(hot=30.0), block_inputs()
    onnx.save(model, tmp_path / "fp32.onnx")
    settings = QuantSettings(portable_softmax=False)
    prepare(tmp_path / "fp32.onnx", tmp_path / "prepared.onnx", settings)
    quantize_prepared(tmp_path / "prepared.onnx", tmp_path / "int8.onnx", settings, input_name="x")
    real = run_block(onnx.load(tmp_path / "int8.onnx"), x, int8=True)
    fp32 = run_block(model, x)
    sim = Simulator(model, quantizable_nodes(model)).vectors(x, np.ones(4, dtype=bool))
    loss_real, loss_sim = 1 - cosines(real, fp32), 1 - cosines(sim, fp32)
    assert np.allclose(loss_sim, loss_real, rtol=0.25, atol=1e-6), (loss_sim, loss_real)


def test_quantize_one_losses_add_up_to_the_whole() -> None:
    model, x = tiny_block(hot=20.0), block_inputs()
    sim = Simulator(model, quantizable_nodes(model))
    fp32 = sim.vectors(x, sim.mask([]))
    losses = quantize_one_losses(sim, x, fp32)
    whole = 1 - cosines(sim.vectors(x, sim.mask()), fp32)
    assert np.allclose(losses.sum(axis=0), whole, rtol=0.5)
