"""A CPU-tuned onnxruntime session for one-image-at-a-time inference inside a Lambda sandbox.

Every option kept here is explained where it is set. The thread count is the one decision that matters most:
Lambda shows 2 CPUs from 128 MB to 3,008 MB but grants CPU time in proportion to memory (1,769 MB = one
vCPU), so the visible CPU count overstates what a small function gets.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from layer.settings import LAMBDA_MB_PER_VCPU, EngineSettings


def _cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """CPUs granted by a cgroup v2 quota (``docker run --cpus``), or None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


@dataclass(frozen=True)
class CpuBudget:
    """How much CPU this process may really use, and from which source the limit came."""

    visible: int  # CPUs in our affinity mask
    quota: float | None  # cgroup quota in CPUs
    lambda_vcpus: float | None  # vCPU share implied by the function's memory size

    @property
    def cpus(self) -> float:
        limits = [float(self.visible)] + [x for x in (self.quota, self.lambda_vcpus) if x is not None]
        return min(limits)

    @property
    def threads(self) -> int:
        # A fractional share still runs best on ceil(share) threads (the 1.5-vCPU case wants 2), but
        # never more threads than CPUs we can be scheduled on.
        return max(1, min(self.visible, math.ceil(self.cpus - 1e-9)))

    @property
    def fractional(self) -> bool:
        """True when the quota is below the visible CPUs: spinning threads would burn that quota."""
        return self.cpus < self.visible - 1e-9

    @classmethod
    def detect(cls, lambda_memory_mb: int | None = None) -> CpuBudget:
        try:
            visible = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            visible = os.cpu_count() or 1
        lambda_vcpus = lambda_memory_mb / LAMBDA_MB_PER_VCPU if lambda_memory_mb else None
        return cls(visible=visible, quota=_cgroup_cpu_quota(), lambda_vcpus=lambda_vcpus)


@dataclass(frozen=True)
class SessionSettings:
    threads: int
    spinning: bool
    optimization: str  # "basic" | "extended" | "all" | "disabled"
    config: tuple[tuple[str, str], ...] = ()  # extra session config entries (the CPU's int8 tuning)

    @classmethod
    def auto(
        cls,
        engine: EngineSettings | None = None,
        *,
        threads: int | None = None,
        optimization: str = "basic",
        config: tuple[tuple[str, str], ...] = (),
    ) -> SessionSettings:
        """Threads: explicit argument, else ``CLIP_LAMBDA_THREADS``, else the detected CPU budget.
        ``optimization``: the graph level for this model unless ``CLIP_LAMBDA_GRAPH_OPT`` overrides it.
        ``config``: session config entries this model needs on this CPU (``layer.cpu.int8_tuning``)."""
        engine = engine or EngineSettings.from_env()
        budget = CpuBudget.detect(engine.lambda_memory_mb)
        return cls(
            threads=max(1, threads or engine.threads or budget.threads),
            spinning=not budget.fractional if engine.spinning is None else engine.spinning,
            optimization=engine.graph_optimization or optimization,
            config=config,
        )


_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(settings: SessionSettings) -> ort.SessionOptions:
    so = ort.SessionOptions()
    # One image per run: intra-op parallelism (GEMM tiles) is where the time goes; inter-op parallelism
    # of a straight-line ViT graph buys nothing and would add a second pool of threads.
    so.intra_op_num_threads = settings.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning workers burn CPU while they wait for work; under a fractional quota (Lambda below 1,769 MB
    # per thread, docker --cpus) that time is taken from the inference itself.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # The int8 model.onnx is saved already optimized ("extended": LayerNorm/Gelu/attention fusions) by the
    # build, so "basic" (constant folding, redundant-node removal) is all that is left to do at each cold
    # start, except on x86 without VNNI, where the weight re-encoding needs "extended" (layer.cpu). The plain
    # fp32 export (gate, benchmarks, MODEL_PRECISION=fp32) gets "all" at load time.
    so.graph_optimization_level = _LEVELS[settings.optimization]
    # No CPU arena: the arena keeps its high-water mark forever and grows with batch shape (fastembed
    # users report 6.5 GiB spikes). With the fixed [1,3,224,224] input, the memory pattern planner
    # (enable_mem_pattern, default on) already reuses one pre-planned block per run.
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = True
    for key, value in settings.config:
        so.add_session_config_entry(key, value)
    so.log_severity_level = 3
    return so


def create_session(model_path: str | Path, settings: SessionSettings) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(model_path), sess_options=session_options(settings), providers=["CPUExecutionProvider"]
    )
