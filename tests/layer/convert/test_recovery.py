"""Accuracy-aware int8 (layer/convert/recovery.py): the search, and a whole build that must recover (a checkpoint
with trained CLIP's outliers; more seeds and the stricter gate on the random-init model: bench/recovery.py). The
simulation it searches with: test_sensitivity.py; SmoothQuant's migration: test_smoothing.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from layer.convert.recovery import greedy_order, node_costs
from layer.convert.sensitivity import (
    QNode,
)
from tests.conftest import CACHE, ROOT, _locked, build_key, cached_build, cross_cpu_mode

CLI = [sys.executable, "-m", "layer.convert"]


def test_the_search_keeps_the_node_that_removes_the_most_loss_per_cost() -> None:
    losses = np.array([[1e-4, 1e-4], [9e-4, 2e-4], [1e-5, 3e-4], [5e-4, 5e-4]])
    costs = np.array([1.0, 4.0, 1.0, 1.0])
    order = greedy_order(losses, costs)
    # The worst input is the first (loss 1.51e-3): node 3 removes 5e-4 per unit, node 1 only 2.25e-4.
    assert order[0] == 3 and sorted(order) == [0, 1, 2, 3]
    nodes = [QNode("a", "x", "w", 4, 8), QNode("t", "ids", "table", 1000, 8, kind="Gather")]
    assert list(node_costs(nodes, {"x": 10})) == [320.0, 320.0]  # the embedding: priced as the cheapest MatMul


# --- whole builds -----------------------------------------------------------------------------------------------
# One seeded variant here (with every emulated CPU path under CI); bench/recovery.py builds three at full depth,
# and the random-init model at --min-cosine 0.9999 (both towers, the text tower's token embedding included).
OUTLIER_SEEDS = (0,)
OUTLIER_LAYERS = 4  # the published ViT-B/32 widths at 4 layers: every kind of outlier, a third of the build time


def outlier_checkpoint(seed: int) -> Path:
    """A ViT-B/32-wide CLIPModel (4 layers) with trained CLIP's outliers (bench/checkpoints.py), seeded."""
    from bench.checkpoints import Outliers, write_checkpoint

    code = (ROOT / "bench" / "checkpoints.py").read_text()
    out = CACHE / f"outlier-ckpt-{seed}-{build_key(ROOT, code)}"
    with _locked(f"outlier-ckpt-{seed}"):
        if not (out / "config.json").exists():
            write_checkpoint(out, seed=seed, layers=OUTLIER_LAYERS, outliers=Outliers(seed=seed))
    return out


@pytest.fixture(scope="session", params=OUTLIER_SEEDS, ids=[f"seed{s}" for s in OUTLIER_SEEDS])
def outlier_model(request: pytest.FixtureRequest) -> Path:
    seed = request.param
    return cached_build(f"outliers-{seed}", str(outlier_checkpoint(seed)), cross_cpu_mode(), text=False)


def _tower(model: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((model / "manifest.json").read_text())["towers"][name])


def _float_weight_nodes(path: Path) -> set[str]:
    """The MatMuls and Gathers of ``path`` whose weight (a MatMul's B, a Gather's table) is a float initializer:
    the nodes left in fp32 (a quantized one reads an int8 weight, or was replaced by an integer op)."""
    graph = onnx.load(path).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    weight = {"MatMul": 1, "Gather": 0}
    return {n.name for n in graph.node if n.op_type in weight and n.input[weight[n.op_type]] in floats}


def _assert_recovered(model: Path, tower: str, min_cosine: float) -> dict[str, Any]:
    t = _tower(model, tower)
    r = t["recovery"]
    assert r["before"]["cosine_min"] < min_cosine <= r["after"]["cosine_min"], r
    assert t["accuracy_gate"]["passed"] and t["accuracy_gate"]["cosine_min"] == r["after"]["cosine_min"]
    assert r["kept_fp32"], "the recovery kept no node in fp32"
    assert r["method"] in {"keep_fp32", "smoothquant+keep_fp32"}
    # the kept nodes are float MatMuls (or the token embedding's Gather) in the shipped model; the others int8
    assert set(r["kept_fp32"]) <= _float_weight_nodes(model / t["file"])
    assert t["quantization"]["nodes_to_exclude"] == r["kept_fp32"]
    # both methods were planned, and the one shipped was verified
    assert {p["method"] for p in r["plans"]} == {"keep_fp32", "smoothquant"}
    assert any(c["shipped"] for c in r["candidates"])
    # The speed figures are recorded with the CPU they ran on (the build itself drops any mix no faster than
    # fp32; timings are not asserted here): a minority of the multiply-accumulates left in fp32.
    speed = t["speed"]
    assert {"int8", "shipped", "fp32"} <= set(speed) and speed["cpu"]
    [shipped] = [c for c in r["candidates"] if c["shipped"]]
    assert 0 < shipped["macs_fraction_fp32"] < 0.5
    assert shipped["macs_fraction_fp32"] == min(c["macs_fraction_fp32"] for c in r["candidates"])
    # every CPU path the build could run passed, emulated ones included
    ran = [p for p in t["cpu_paths"] if p["status"] != "not_run"]
    assert ran and all(p["status"] == "passed" and p["cosine_min"] >= min_cosine for p in ran), ran
    if cross_cpu_mode() == "required":
        assert {p["path"] for p in ran} >= {"arm64-dotprod", "arm64-i8mm"}
    return t


@pytest.mark.slow
def test_a_checkpoint_with_trained_outliers_recovers(outlier_model: Path) -> None:
    t = _assert_recovered(outlier_model, "image", 0.999)
    assert t["recovery"]["before"]["cosine_min"] < 0.99  # plain int8 is far off: what trained CLIP does to it
    from layer import Embedder

    engine = Embedder.from_dir(outlier_model)
    assert engine.self_check is not None and engine.self_check.passed


@pytest.mark.slow
def test_smoothquant_migrated_the_layernorm_gains_when_it_shipped(outlier_model: Path) -> None:
    t = _tower(outlier_model, "image")
    shipped = onnx.load(outlier_model / t["file"])
    fp32 = onnx.load(outlier_model / t["fp32_file"])

    def gains(model: onnx.ModelProto) -> list[np.ndarray]:
        inits = {i.name: i for i in model.graph.initializer}
        ln = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
        return [numpy_helper.to_array(inits[n.input[1]]) for n in ln if n.input[1] in inits]

    moved = [g for g in gains(shipped) if not any(np.array_equal(g, f) for f in gains(fp32))]
    assert bool(moved) == t["recovery"]["method"].startswith("smoothquant")


@pytest.mark.slow
def test_no_recover_keeps_the_refusal(tmp_path: Path) -> None:
    out = tmp_path / "m"
    proc = subprocess.run(
        [*CLI, "build-model", "--source", str(outlier_checkpoint(0)), "--out", str(out), "--no-text",
         "--cross-cpu", "off", "--no-recover"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "image accuracy gate failed" in proc.stderr and "leave out --no-recover" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
