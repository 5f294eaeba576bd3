"""SmoothQuant's migration (layer/convert/smoothing.py): the outliers of a LayerNorm's output moved into the
weights of its consumers, the fp32 function unchanged."""

from __future__ import annotations

import numpy as np

from layer.convert.sensitivity import Simulator, activation_stats, cosines, quantizable_nodes
from layer.convert.smoothing import smooth, smoothable_groups
from tests.layer.convert.blocks import TOKENS, block_inputs, run_block, tiny_block


def test_smoothquant_keeps_the_fp32_function_and_moves_the_outliers_into_the_weights() -> None:
    model, x = tiny_block(hot=80.0), block_inputs()
    nodes = quantizable_nodes(model)
    groups = smoothable_groups(model, nodes)
    assert [(g.norm, g.consumers) for g in groups] == [("ln1", ("q", "k")), ("ln2", ("fc1",))]
    stats, rows = activation_stats(model, [n.activation for n in nodes], x)
    assert rows == {"n1": TOKENS, "n2": TOKENS, "g": TOKENS}
    migrated = smooth(model, nodes, groups, stats, alpha=0.5)
    fp32, after = run_block(model, x), run_block(migrated, x)
    assert np.allclose(after, fp32, rtol=1e-4, atol=1e-4)  # the same function
    before_sim = Simulator(model, nodes)
    after_sim = Simulator(migrated, quantizable_nodes(migrated))
    loss_before = 1 - cosines(before_sim.vectors(x, before_sim.mask()), fp32)
    loss_after = 1 - cosines(after_sim.vectors(x, after_sim.mask()), fp32)
    assert loss_after.max() < loss_before.max() / 5
    shared = {i.name for i in model.graph.initializer}
    assert {n.input[1] for n in migrated.graph.node if n.name in {"q", "k", "fc1"}}.isdisjoint(shared)
