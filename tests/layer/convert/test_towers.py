"""One tower's build (layer/convert/towers.py), its small parts: the fp32 view of a tower, the interleaved speed
measurement, and when a quantized mix counts as passed (whole builds: test_pipeline.py, test_recovery.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layer.convert.cpu_paths import PathResult, PathsOutcome
from layer.convert.gate import judge
from layer.convert.quantize import QuantSettings
from layer.convert.towers import BuildContext, Verified, fp32_view, model_ms
from layer.cpu import CpuInfo
from layer.manifest import IMAGE, TEXT, TowerSpec

IMAGE_SPEC = TowerSpec(IMAGE, "model.onnx", "model.fp32.onnx", "pixel_values", "image_embeds", 512,
                       quantization={"method": "dynamic"}, preprocessor="preprocessor_config.json")  # fmt: skip


def test_the_fp32_view_is_the_fp32_export_and_nothing_else_changes() -> None:
    view = fp32_view(IMAGE_SPEC)
    assert (view.precision, view.file, view.fp32_file) == ("fp32", "model.fp32.onnx", "model.fp32.onnx")
    assert (view.quantization, view.preprocessor, view.dim) == (IMAGE_SPEC.quantization, IMAGE_SPEC.preprocessor, 512)
    assert IMAGE_SPEC.precision == "int8"  # a view, not a change


class Session:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def features(self, x: np.ndarray) -> np.ndarray:
        self.log.append(self.name)
        return x


def test_model_ms_warms_each_model_up_then_interleaves_the_runs() -> None:
    """A shared machine's noise hits every model alike: run by run, never one model's runs in a block."""
    log: list[str] = []
    models: dict[str, Any] = {"int8": Session("int8", log), "fp32": Session("fp32", log)}
    got = model_ms(models, np.zeros((1, 3)), runs=3, stat=len)
    assert got == {"int8": 3, "fp32": 3}  # the warm-up is not counted
    assert log == ["int8", "fp32"] * 4
    times = model_ms(models, np.zeros((1, 3)), runs=2)
    assert set(times) == {"int8", "fp32"} and all(t >= 0 and round(t, 2) == t for t in times.values())


def test_a_mix_passes_when_its_gate_and_every_cpu_path_pass() -> None:
    unit = np.eye(2, dtype=np.float32)
    passed, failed = judge(["a", "b"], unit, unit), judge(["a", "b"], unit[::-1], unit)

    def mix(gate: Any, *statuses: str) -> Verified:
        results = [PathResult(f"p{i}", s, "emulated", "a CPU") for i, s in enumerate(statuses)]  # type: ignore[arg-type]
        paths = PathsOutcome(results, {}) if statuses else None
        return Verified(QuantSettings(), gate, unit, paths, unit[0])

    assert mix(passed).passed and mix(passed, "passed", "not_run").passed  # a path not run fails nothing
    assert not mix(failed).passed and not mix(passed, "passed", "failed").passed
    assert mix(passed).fraction == 0.0  # no plan: nothing kept in fp32


def test_a_tower_is_gated_with_the_towers_already_built() -> None:
    """The text tower's gate reads a manifest that also holds the image tower (its quantization picks the
    session options the runtime gives both)."""
    text = TowerSpec(TEXT, "text_model.onnx", "text_model.fp32.onnx", "input_ids", "text_embeds", 512)
    ctx = BuildContext(folder=None, model_id="m", dim=512, min_cosine=0.999, recover=True, cross_cpu="off",  # type: ignore[arg-type]
                       native=CpuInfo("x86_64", "test", frozenset()), log=print, done={IMAGE: IMAGE_SPEC})  # fmt: skip
    manifest = ctx.provisional(text)
    assert manifest.towers == {IMAGE: IMAGE_SPEC, TEXT: text} and (manifest.model_id, manifest.dim) == ("m", 512)
    assert ctx.done == {IMAGE: IMAGE_SPEC}  # unchanged
