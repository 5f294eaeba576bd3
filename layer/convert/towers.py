"""One tower's build after its fp32 export, the same steps for every tower: prepare → int8 → gate here and on
the emulated CPUs → (recovery, if a path misses the gate) → speed → canary → its ``TowerSpec``.

A tower is described by a ``TowerJob``: its files and tensor names, its gate inputs (preprocessed images or
token ids, already made by the tower's own code), its canary and its quantization settings. Nothing here
knows which tower it builds.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from layer.convert.cpu_paths import (
    CpuPathsFailed,
    CrossCpuMode,
    PathResult,
    PathsOutcome,
    native_result,
    pick_images,
    run_cpu_paths,
)
from layer.convert.gate import CROSS_ARCH_AGREEMENT, SAME_ARCH_AGREEMENT, GateFailed, GateResult, judge
from layer.convert.quantize import GATHER, QuantSettings, prepare, quantize_prepared
from layer.convert.recovery import Plan, graph_key, plan_recovery
from layer.cpu import CpuInfo, describe, probe_u8s8
from layer.manifest import Canary, Manifest, TowerSpec, encode_vector
from layer.settings import EngineSettings
from layer.tower import Precision, TowerSession

Log = Callable[[str], None]
SPEED_RUNS = 12  # per model, after a warm-up, interleaved in rounds (a shared machine's noise hits all alike)


@dataclass
class TowerJob:
    spec: TowerSpec  # files, tensor names, dim and the tower's own fields; the build fills in the rest
    inputs: np.ndarray  # the gate inputs, stacked
    names: list[str]
    canary_input: np.ndarray  # one input, the same kind as ``inputs``
    canary_record: dict[str, Any]  # how the manifest stores it ({"png_base64": ...} or {"text": ...})
    quant: QuantSettings
    calibration: list[np.ndarray] = field(default_factory=list)  # for the static method


@dataclass(frozen=True)
class BuildContext:
    folder: Path
    model_id: str
    dim: int
    min_cosine: float
    recover: bool
    cross_cpu: CrossCpuMode
    native: CpuInfo
    log: Log
    done: dict[str, TowerSpec]  # towers already built (the image tower before the text tower)

    def provisional(self, spec: TowerSpec) -> Manifest:
        """What the runtime reads while this tower is gated (its quantization picks the session tuning)."""
        return Manifest(model_id=self.model_id, dim=self.dim, towers={**self.done, spec.name: spec})


@dataclass(frozen=True)
class Verified:
    """One int8 mix as quantized and gated for real."""

    quant: QuantSettings
    gate: GateResult
    int8: np.ndarray  # unit vectors of the gate inputs here
    paths: PathsOutcome | None
    canary: np.ndarray  # the canary's unit vector here
    graph: Path | None = None  # the prepared (maybe migrated) graph it was quantized from
    plan: Plan | None = None
    file: Path | None = None  # a copy of its model file, kept aside while other mixes are tried
    extra: int = 0  # nodes kept beyond the plan's simulated count

    @property
    def fraction(self) -> float:
        """Share of the tower's quantizable multiply-accumulates this mix leaves in fp32."""
        return self.plan.fraction(self.extra) if self.plan else 0.0

    ms: float | None = None

    @property
    def passed(self) -> bool:
        return self.gate.passed and (self.paths is None or self.paths.passed)


def _session(folder: Path, spec: TowerSpec, precision: Precision) -> TowerSession:
    """The tower as the runtime loads it on this CPU (all threads: the gate's speed is not measured)."""
    cpu = CpuInfo.detect()
    probe = probe_u8s8(cpu.arch) if precision == "int8" else None
    return TowerSession.load(folder, spec, precision=precision, cpu=cpu, engine=EngineSettings(), probe=probe)


def model_ms(
    models: dict[str, TowerSession], x: np.ndarray, runs: int = SPEED_RUNS, stat: Callable[[Any], Any] = np.median
) -> dict[str, float]:
    """Model-only milliseconds of one input per model (median of the runs, or ``stat``), interleaved run by
    run."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for session in models.values():
        session.features(x)  # warm-up
    for _ in range(runs):
        for name, session in models.items():
            t0 = time.perf_counter()
            session.features(x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: round(float(stat(t)), 2) for name, t in times.items()}


def _timed_file(folder: Path, spec: TowerSpec, path: Path | None) -> TowerSession:
    """``_timed`` of a model file kept aside (a candidate mix), loaded as ``spec``'s int8 file."""
    if path is None:
        return _timed(folder, spec)
    return _timed(path.parent, dataclasses.replace(spec, file=path.name))


def _timed(folder: Path, spec: TowerSpec, threads: int = 1) -> TowerSession:
    """A session like the runtime's at 1,024 MB (one thread), for the speed figures."""
    cpu = CpuInfo.detect()
    probe = probe_u8s8(cpu.arch) if spec.precision == "int8" else None
    return TowerSession.load(
        folder,
        spec,
        precision=spec.precision,  # type: ignore[arg-type]
        cpu=cpu,
        engine=EngineSettings(),
        threads=threads,
        probe=probe,
    )


def fp32_view(spec: TowerSpec) -> TowerSpec:
    """The tower as an fp32 build would ship it: its fp32 export."""
    return dataclasses.replace(spec, precision="fp32", file=spec.fp32_file)


class TowerBuild:
    """The steps of one tower; ``run`` returns its finished ``TowerSpec`` (and raises ``GateFailed`` or
    ``CpuPathsFailed`` only when no mix meets the gate, or recovery is off)."""

    def __init__(self, job: TowerJob, ctx: BuildContext, work: Path) -> None:
        self.job, self.ctx, self.work = job, ctx, work
        self.spec = job.spec
        self.folder = ctx.folder
        self.prepared = work / f"{self.spec.name}.prepared.onnx"
        self.plain_copy = work / f"{self.spec.name}.int8-plain.onnx"
        feed = np.concatenate([job.inputs, job.canary_input[None]])
        fp32 = _session(self.folder, self.spec, "fp32").embed(feed)[0]
        self.fp32, self.fp32_canary = fp32[:-1], fp32[-1]

    def _with(self, quant: QuantSettings) -> TowerSpec:
        return dataclasses.replace(self.spec, precision="int8", quantization=quant.to_dict())

    def _quantize(self, graph: Path, quant: QuantSettings) -> TowerSpec:
        quantize_prepared(graph, self.folder / self.spec.file, quant, self.job.calibration, self.spec.input_name)
        spec = self._with(quant)
        self.ctx.provisional(spec).write(self.folder)
        return spec

    def _verify(self, graph: Path, quant: QuantSettings, plan: Plan | None, *, paths: bool) -> Verified:
        spec = self._quantize(graph, quant)
        feed = np.concatenate([self.job.inputs, self.job.canary_input[None]])
        vectors = _session(self.folder, spec, "int8").embed(feed)[0]
        int8, canary = vectors[:-1], vectors[-1]
        gate = judge(self.job.names, int8, self.fp32, self.ctx.min_cosine, "texts" if self.spec.tokens else "images")
        kept = len(quant.nodes_to_exclude)
        self.ctx.log(
            f"    {plan.method if plan else 'int8'}{f' + {kept} kept fp32' if kept else ''}: cosine min "
            f"{gate.cosine_min:.6f} ({gate.worst}), mean {gate.cosine_mean:.6f} [{describe(self.ctx.native)}]"
        )
        outcome = self._paths(spec, int8, gate) if paths and gate.passed else None
        return Verified(quant, gate, int8, outcome, canary, graph, plan)

    def _paths(self, spec: TowerSpec, int8: np.ndarray, gate: GateResult) -> PathsOutcome:
        picked = pick_images(self.job.names, [gate.per_input[n] for n in self.job.names])
        probe = probe_u8s8(self.ctx.native.arch).to_dict()
        return run_cpu_paths(
            self.folder,
            self.ctx.provisional(spec),
            tower=self.spec.name,
            inputs=self.job.inputs[picked],
            native_int8=int8[picked],
            fp32=self.fp32[picked],
            native_summary=native_result(self.ctx.native, list(gate.per_input.values()), probe),
            native=self.ctx.native,
            canary=self.job.canary_input,
            mode=self.ctx.cross_cpu,
            min_cosine=self.ctx.min_cosine,
            log=self.ctx.log,
        )

    def run(self) -> TowerSpec:
        ctx, job = self.ctx, self.job
        prepare(self.folder / self.spec.fp32_file, self.prepared, job.quant)
        ctx.log(
            f"    {self.spec.name}: int8 ({job.quant.method}, {'+'.join(job.quant.op_types)}), "
            f"{len(job.names)} gate inputs"
        )
        first = self._verify(self.prepared, job.quant, None, paths=True)
        shutil.copyfile(self.folder / self.spec.file, self.plain_copy)
        chosen, recovery = first, None
        if not first.passed:
            if not ctx.recover:
                self._refuse(first)
            if job.quant.method != "dynamic":  # the recovery simulates dynamic int8 only
                self._refuse(first, "the recovery plans dynamic int8 only: build with --quant-method dynamic "
                             "(the default) or --precision fp32")  # fmt: skip
            chosen, recovery = self._recover(first)
        return self._finish(chosen, recovery, first)

    def _refuse(self, v: Verified, hint: str = "") -> None:
        if not v.gate.passed:
            raise GateFailed(v.gate, self.spec.name, hint)
        raise CpuPathsFailed(v.paths.results if v.paths else [])

    def _recover(self, first: Verified) -> tuple[Verified, dict[str, Any]]:
        """Plan both methods in simulation, verify each for real (here, on the emulated CPUs, timed), keep
        the fastest that passes everywhere and beats fp32."""
        ctx, job = self.ctx, self.job
        why = (
            f"cosine min {first.gate.cosine_min:.6f} < {ctx.min_cosine}"
            if not first.gate.passed
            else "; ".join(f"{r.path}: {r.reason}" for r in (first.paths.failed if first.paths else []))
        )
        ctx.log(f"    {self.spec.name} misses the gate ({why}): planning a recovery")
        t0 = time.perf_counter()
        plans, graphs = plan_recovery(
            onnx.load(str(self.prepared)),
            job.inputs,
            self.fp32,
            ctx.min_cosine,
            gather=GATHER in job.quant.op_types,
            log=ctx.log,
        )
        planning_s = round(time.perf_counter() - t0, 1)
        verified: list[Verified] = []
        for plan in plans:
            graph = self.prepared
            if plan.alpha:
                graph = self.work / f"{self.spec.name}.{graph_key(plan.alpha)}.onnx"
                onnx.save(graphs[graph_key(plan.alpha)], str(graph))
            result = self._verify_plan(plan, graph, 0)
            if result is not None:
                verified.append(result)
        # The cheapest candidate (fewest multiply-accumulates left in fp32: a shared machine's timings are too
        # noisy to rank mixes a few percent apart; they are measured and recorded, side by side) goes to the
        # emulated CPUs; one that fails there keeps more nodes and tries again.
        best: Verified | None = None
        while verified:
            timed = {f"c{i}": _timed_file(self.folder, self._with(v.quant), v.file) for i, v in enumerate(verified)}
            speeds = model_ms(timed, job.inputs[:1])
            verified = [dataclasses.replace(v, ms=speeds[f"c{i}"]) for i, v in enumerate(verified)]
            fastest = min(verified, key=lambda v: (v.fraction, v.ms or float("inf")))
            if fastest.file is not None:
                shutil.copyfile(fastest.file, self.folder / self.spec.file)
            spec = self._with(fastest.quant)
            self.ctx.provisional(spec).write(self.folder)
            checked = dataclasses.replace(fastest, paths=self._paths(spec, fastest.int8, fastest.gate))
            if checked.passed:
                best = checked
                break
            verified.remove(fastest)
            if fastest.plan is None or fastest.graph is None:  # never: every candidate comes from a plan
                continue
            retry = self._verify_plan(
                fastest.plan, fastest.graph, fastest.extra + max(1, len(fastest.quant.nodes_to_exclude) // 4)
            )
            if retry is not None:
                verified.append(retry)
        if best is None:
            raise GateFailed(
                dataclasses.replace(first.gate, passed=False),
                self.spec.name,
                "no int8 mix faster than fp32 meets the gate on every CPU path: build with --precision fp32",
            )
        recovery = {
            "method": self._method(best),
            "kept_fp32": list(best.quant.nodes_to_exclude),
            "smoothquant_alpha": best.plan.alpha if best.plan else 0.0,
            "before": {"cosine_min": first.gate.cosine_min, "cosine_mean": first.gate.cosine_mean,
                       "worst": first.gate.worst, "reason": why},
            "after": {"cosine_min": best.gate.cosine_min, "cosine_mean": best.gate.cosine_mean,
                      "worst": best.gate.worst},
            "candidates": [
                {"method": self._method(v), "kept": len(v.quant.nodes_to_exclude), "cosine_min": v.gate.cosine_min,
                 "macs_fraction_fp32": v.fraction, "ms": v.ms, "shipped": v.plan is best.plan and v.quant == best.quant}
                for v in verified
            ],
            "plans": [p.to_dict() for p in plans],
            "planning_seconds": planning_s,
        }  # fmt: skip
        ctx.log(
            f"    {self.spec.name} recovered: {recovery['method']}, {len(best.quant.nodes_to_exclude)} node(s) kept "
            f"fp32, cosine min {first.gate.cosine_min:.6f} → {best.gate.cosine_min:.6f}"
        )
        return best, recovery

    def _verify_plan(self, plan: Plan, graph: Path, extra: int) -> Verified | None:
        """Quantize the plan's mix (and ``extra`` more of its nodes kept) and gate it here; below the gate,
        keep the next nodes of its order and try again, until it passes (a copy of its model file is then
        kept aside) or is no faster than fp32."""
        while True:
            kept = plan.kept(extra)
            quant = dataclasses.replace(self.job.quant, nodes_to_exclude=kept)
            v = self._verify(graph, quant, plan, paths=False)
            ms = model_ms(
                {"mix": _timed(self.folder, self._with(quant)), "fp32": _timed(self.folder, fp32_view(self.spec))},
                self.job.inputs[:1],
                stat=np.min,  # each model's best run: a load spike on a shared machine hits one run, not the best
            )
            if ms["mix"] >= ms["fp32"]:
                self.ctx.log(
                    f"    {plan.method}: {len(kept)} kept fp32 runs {ms['mix']:.1f} ms ≥ fp32 {ms['fp32']:.1f} ms: "
                    "no faster than fp32, dropped"
                )
                return None
            if v.gate.passed:
                copy = self.work / f"{self.spec.name}.{plan.method}.onnx"
                shutil.copyfile(self.folder / self.spec.file, copy)
                return dataclasses.replace(v, file=copy, extra=extra)
            if len(kept) >= len(plan.order):
                return None
            extra += max(1, len(kept) // 4)

    @staticmethod
    def _method(v: Verified) -> str:
        if v.plan is None:
            return "int8"
        kept = bool(v.quant.nodes_to_exclude)
        if v.plan.alpha:
            return "smoothquant+keep_fp32" if kept else "smoothquant"
        return "keep_fp32"

    def _finish(self, chosen: Verified, recovery: dict[str, Any] | None, first: Verified) -> TowerSpec:
        ctx = self.ctx
        spec = self._with(chosen.quant)
        plain = dataclasses.replace(spec, file=self.plain_copy.name)
        shutil.copyfile(self.plain_copy, self.folder / self.plain_copy.name)
        try:
            speeds = model_ms(
                {
                    "int8": _timed(self.folder, plain),
                    "shipped": _timed(self.folder, spec),
                    "fp32": _timed(self.folder, fp32_view(spec)),
                },
                self.job.inputs[:1],
            )
        finally:
            (self.folder / self.plain_copy.name).unlink(missing_ok=True)
        speed = {
            **speeds,
            "threads": 1,
            "unit": "ms per input, model only (median)",
            "cpu": describe(ctx.native),
            "shipped_vs_int8": round(speeds["shipped"] / speeds["int8"], 3),
            "fp32_vs_shipped": round(speeds["fp32"] / speeds["shipped"], 3),
        }
        ctx.log(
            f"    {self.spec.name} speed (1 thread): int8 {speeds['int8']} ms, shipped {speeds['shipped']} ms, "
            f"fp32 {speeds['fp32']} ms"
        )
        paths = chosen.paths.results if chosen.paths else []
        # The canary's vector on every kernel path the build ran (here, and emulated).
        int8_canaries = {ctx.native.kernel_path: chosen.canary, **(chosen.paths.canary if chosen.paths else {})}
        canary = Canary(
            input=self.job.canary_record,
            fp32=encode_vector(self.fp32_canary),
            int8={path: encode_vector(v) for path, v in int8_canaries.items()},
            min_cosine=ctx.min_cosine,
            agreement={"same_path": SAME_ARCH_AGREEMENT, "same_arch": SAME_ARCH_AGREEMENT,
                       "arm64_other_path": CROSS_ARCH_AGREEMENT},
        )  # fmt: skip
        return dataclasses.replace(
            spec,
            graph_optimization="extended (offline)",
            accuracy_gate={"applicable": True, **chosen.gate.to_dict()},
            recovery=recovery or {"method": "int8", "kept_fp32": [], "before": None, "after": None},
            cpu_paths=tuple(r.to_dict() for r in paths),
            speed=speed,
            canary=canary,
        )


def fp32_spec(folder: Path, job: TowerJob, log: Log) -> TowerSpec:
    """An fp32 build: the shipped file is the export itself (one file on disk, linked), its canary the fp32
    vector."""
    spec = job.spec
    target, source = folder / spec.file, folder / spec.fp32_file
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)
    fp32 = dataclasses.replace(spec, precision="fp32")
    vector = _session(folder, fp32, "fp32").embed(job.canary_input[None])[0][0]
    log(f"    {spec.name}: fp32 build, no gate")
    return dataclasses.replace(
        fp32,
        accuracy_gate={"applicable": False, "reason": "fp32 build ships the reference export"},
        canary=Canary(input=job.canary_record, fp32=encode_vector(vector), min_cosine=0.99999),
        graph_optimization="none",
    )


def build_tower(job: TowerJob, ctx: BuildContext) -> TowerSpec:
    with tempfile.TemporaryDirectory(prefix=f"clip-{job.spec.name}-") as work:
        return TowerBuild(job, ctx, Path(work)).run()


__all__ = ["CROSS_ARCH_AGREEMENT", "BuildContext", "PathResult", "TowerJob", "build_tower", "fp32_spec"]
