"""Accuracy-aware int8: when a tower misses the gate, find the cheapest mix that meets it.

Two ways out, both planned in the simulation of ``layer.convert.sensitivity`` and then verified for real
(quantized, gated on this CPU and on the emulated ones, timed) by ``layer.convert.pipeline``:

- ``keep_fp32``: the quantize-one loss of every MatMul (1 - cosine to fp32 with only that node int8, on the
  inputs where int8 does worst); nodes are kept in fp32, greedily, by the loss they remove from the worst
  input per multiply-accumulate they cost, until the simulated mix clears the gate with a margin;
- ``smoothquant``: the LayerNorm → MatMul scale migration of ``layer.convert.smoothing`` first (free at run
  time), then the same search on what is left (outliers after GELU, which no migration reaches).

Losses of small independent errors add up (1 - cos ≈ ½‖δ‖², squared norms of nearly orthogonal
perturbations add), so the plan predicts a mix's loss as the sum of its nodes' losses, and confirms it by
simulating the mix on every gate input before anything is quantized for real.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import onnx

from layer.convert.sensitivity import (
    QNode,
    Simulator,
    activation_stats,
    cosines,
    quantizable_nodes,
    quantize_one_losses,
)
from layer.convert.smoothing import smooth, smoothable_groups

KEEP_FP32 = "keep_fp32"
SMOOTHQUANT = "smoothquant"
ALPHAS = (0.5, 0.75)  # migration strengths tried (SmoothQuant's default, and one for stronger outliers)
SENSITIVITY_INPUTS = 4  # the inputs where int8 does worst: where a node's loss decides the gate
MARGIN = 0.2  # the simulated mix must leave this share of the gate's budget (1 - threshold) unspent

Log = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """One way to meet the gate, as simulated: ``order`` is every node in the order it would be kept fp32,
    ``count`` how many of them the simulation needed."""

    method: str  # "keep_fp32" | "smoothquant" (then maybe nodes kept too)
    alpha: float  # migration strength (0: none)
    order: tuple[str, ...]
    count: int
    simulated_min: float  # min cosine to fp32 over the gate inputs with ``count`` nodes kept
    simulated_min_int8: float  # ... with every node int8 (after migration, if any)
    macs_fraction: float  # share of the quantizable multiply-accumulates left in fp32
    shares: tuple[float, ...] = ()  # each node of ``order``'s share of those multiply-accumulates

    def kept(self, extra: int = 0) -> tuple[str, ...]:
        return self.order[: min(len(self.order), self.count + extra)]

    def fraction(self, extra: int = 0) -> float:
        """The share of multiply-accumulates in fp32 with ``kept(extra)``: what the mix costs over int8."""
        return round(float(sum(self.shares[: self.count + extra])), 4)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["order"] = list(self.order[: self.count + 8])  # the next candidates, for the record
        d.pop("shares")
        return d


def node_costs(nodes: Sequence[QNode], rows: dict[str, int]) -> np.ndarray:
    """Multiply-accumulates per run of each MatMul (rows of its activation × k × n). The token embedding
    costs no time in fp32, only size (100 MB instead of 25 MB): it is priced as the smallest MatMul, so that
    it is kept only for a loss that no cheap MatMul removes."""
    macs = np.array([max(1, rows.get(q.activation, 1)) * q.macs for q in nodes], dtype=np.float64)
    matmul = [c for c, q in zip(macs, nodes, strict=True) if q.kind == "MatMul"]
    floor = min(matmul) if matmul else 1.0
    return np.array([c if q.kind == "MatMul" else floor for c, q in zip(macs, nodes, strict=True)])


def greedy_order(losses: np.ndarray, costs: np.ndarray) -> list[int]:
    """Node indices in the order they are kept fp32: each step takes the node that removes the most loss
    from the currently worst input per unit of cost."""
    remaining = list(range(len(losses)))
    total = losses.sum(axis=0)
    order: list[int] = []
    while remaining:
        worst = int(np.argmax(total))
        gains = np.array([losses[i, worst] / costs[i] for i in remaining])
        pick = remaining.pop(int(np.argmax(gains)))
        order.append(pick)
        total = total - losses[pick]
    return order


def _count_needed(losses: np.ndarray, order: Sequence[int], budget: float) -> int:
    """Fewest nodes of ``order`` whose removal brings the predicted worst loss under ``budget``."""
    total = losses.sum(axis=0)
    for k in range(len(order) + 1):
        if total.max() <= budget:
            return k
        if k < len(order):
            total = total - losses[order[k]]
    return len(order)


def plan_mix(
    sim: Simulator,
    method: str,
    alpha: float,
    inputs: np.ndarray,
    fp32: np.ndarray,
    *,
    threshold: float,
    rows: dict[str, int],
    log: Log,
) -> Plan:
    """The search on one (possibly migrated) graph, simulated by ``sim``."""
    nodes = sim.nodes
    all_int8 = cosines(sim.vectors(inputs, sim.mask()), fp32)
    costs = node_costs(nodes, rows)
    target = threshold + MARGIN * (1.0 - threshold)
    if all_int8.min() >= target:
        return Plan(method, alpha, (), 0, float(all_int8.min()), float(all_int8.min()), 0.0, ())
    worst = np.argsort(all_int8)[:SENSITIVITY_INPUTS]
    losses = quantize_one_losses(sim, inputs[worst], fp32[worst])
    order = greedy_order(losses, costs)
    names = tuple(nodes[i].name for i in order)
    count = _count_needed(losses, order, 1.0 - target)
    while True:
        kept = set(names[:count])
        mix = cosines(sim.vectors(inputs, sim.mask([n.name for n in nodes if n.name not in kept])), fp32)
        log(f"    {method} α={alpha:g}: {count} node(s) kept fp32 → simulated min cosine {mix.min():.6f}")
        if mix.min() >= target or count >= len(names):
            break
        count = min(len(names), count + max(1, count // 4))
    shares = tuple(float(costs[i] / costs.sum()) for i in order)
    plan = Plan(method, alpha, names, count, float(mix.min()), float(all_int8.min()), 0.0, shares)
    return replace(plan, macs_fraction=plan.fraction())


def plan_recovery(
    prepared: onnx.ModelProto,
    inputs: np.ndarray,
    fp32: np.ndarray,
    threshold: float,
    *,
    gather: bool = False,
    log: Log,
) -> tuple[list[Plan], dict[str, onnx.ModelProto]]:
    """The plans of both methods (cheapest first by fp32 multiply-accumulates), and the migrated graph of
    each smoothing strength a plan uses (keyed by ``graph_key``). ``gather``: the token embedding is int8
    too (a candidate to keep in fp32 like any MatMul)."""
    nodes = quantizable_nodes(prepared, gather=gather)
    stats, rows = activation_stats(prepared, [q.activation for q in nodes if q.kind == "MatMul"], inputs)
    plans = [
        plan_mix(Simulator(prepared, nodes), KEEP_FP32, 0.0, inputs, fp32, threshold=threshold, rows=rows, log=log)
    ]
    graphs = {graph_key(0.0): prepared}
    groups = smoothable_groups(prepared, nodes)
    tried: list[tuple[float, float, onnx.ModelProto, Simulator]] = []
    for alpha in ALPHAS if groups else ():
        migrated = smooth(prepared, nodes, groups, stats, alpha)
        sim = Simulator(migrated, quantizable_nodes(migrated, gather=gather))
        low = float(cosines(sim.vectors(inputs, sim.mask()), fp32).min())
        log(f"    smoothquant α={alpha:g} on {len(groups)} LayerNorm(s): every node int8 → min cosine {low:.6f}")
        tried.append((low, alpha, migrated, sim))
    if tried:
        _, alpha, migrated, sim = max(tried, key=lambda t: t[0])
        graphs[graph_key(alpha)] = migrated
        plans.append(plan_mix(sim, SMOOTHQUANT, alpha, inputs, fp32, threshold=threshold, rows=rows, log=log))
    plans.sort(key=lambda p: (p.macs_fraction, p.count))
    return plans, graphs


def graph_key(alpha: float) -> str:
    return f"alpha={alpha:g}"
