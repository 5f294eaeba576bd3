"""The gate on every CPU path Lambda may run, not only the build machine's.

The native gate compares int8 with fp32 on all gate inputs of a tower. Here a few of those inputs (images
or texts) also go through the int8 tower on the kernel paths this machine lacks, emulated with QEMU
(``layer.convert.emulation``), in the runtime's own session (``python -m layer.run_tower``, tuned for the
CPU it sees and measures). Each path must pass the same int8-vs-fp32 threshold and agree with this
machine's int8 vectors: bit for bit in practice between x86 paths (≥ 0.99999 required), ≥ 0.9995 between
x86 and arm64 (their float kernels differ; see docs). A path that cannot run here is recorded as
``not_run`` with the reason, never as passed. The tower's canary rides along as one more input, so the
manifest holds the canary's vector for each architecture the build reached.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from layer.convert.emulation import QEMU_WARNING, Arm64Root, EmulationUnavailable, link_or_copy, x86_run
from layer.convert.gate import CROSS_ARCH_AGREEMENT, SAME_ARCH_AGREEMENT
from layer.cpu import CpuInfo, describe
from layer.manifest import Manifest

CrossCpuMode = Literal["auto", "required", "off"]
EMULATED_IMAGES = 4  # ~3-12 s per image per path under QEMU
_NO_AVX512 = "QEMU's TCG emulates neither AVX-512 nor AMX: not reachable from this machine"


WORKER = "layer.run_tower"  # python -m layer.run_tower MODEL_DIR TOWER INPUTS.npy OUT.npy


@dataclass(frozen=True)
class CpuPath:
    name: str  # a layer.cpu kernel path
    arch: str  # "x86_64" | "aarch64"
    stands_for: str
    qemu_cpu: str | None = None  # None: no emulator reaches it
    model: str = ""
    features: str = ""  # /proc/cpuinfo flags (x86) or Features (arm64) of the emulated CPU
    arm_part: str = ""

    def cpuinfo(self) -> str:
        """The /proc/cpuinfo the emulated process reads (two identical processors)."""
        blocks = []
        for n in range(2):
            if self.arch == "x86_64":
                blocks.append(f"processor\t: {n}\nmodel name\t: {self.model}\nflags\t\t: {self.features}\n")
            else:
                blocks.append(
                    f"processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: {self.features}\n"
                    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
                    f"CPU part\t: {self.arm_part}\nCPU revision\t: 1\n"
                )
        return "\n".join(blocks)


_X86_BASE = "fpu tsc cx8 cmov mmx fxsr sse sse2 ht syscall nx lm sse3 pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe"
_X86_AVX = "popcnt aes xsave avx f16c rdrand bmi1 avx2 bmi2 adx"
_ARM_BASE = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop"

PATHS: tuple[CpuPath, ...] = (
    CpuPath(
        "x86-avx2",
        "x86_64",
        "AMD EPYC Milan/Rome, Intel Haswell/Broadwell (AVX2, no VNNI)",
        qemu_cpu="EPYC-Milan",
        model="AMD EPYC-Milan Processor (QEMU model)",
        features=f"{_X86_BASE} {_X86_AVX}",
    ),
    CpuPath("x86-avx512", "x86_64", "Intel Skylake-SP (AVX-512, no VNNI)"),
    CpuPath("x86-avx512-vnni", "x86_64", "Intel Cascade Lake/Ice Lake, AMD EPYC Genoa (AVX512-VNNI)"),
    CpuPath("x86-amx", "x86_64", "Intel Sapphire Rapids and later (AMX)"),
    CpuPath(
        "arm64-dotprod",
        "aarch64",
        "AWS Graviton2 (Neoverse N1: dot product, no i8mm)",
        qemu_cpu="neoverse-n1",
        features=f"{_ARM_BASE} asimddp ssbs",
        arm_part="0xd0c",
    ),
    CpuPath(
        "arm64-i8mm",
        "aarch64",
        "AWS Graviton3/4 (Neoverse V1/V2: SVE, i8mm)",
        qemu_cpu="max,sme=off",
        features=f"{_ARM_BASE} jscvt fcma sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
        "sb dcpodp sve2 flagm2 frint svei8mm svebf16 i8mm bf16",
        arm_part="0xd4f",
    ),
)


@dataclass(frozen=True)
class PathResult:
    path: str
    status: Literal["passed", "failed", "not_run"]
    how: Literal["native", "emulated", "none"]
    stands_for: str
    cpu: str | None = None
    qemu_cpu: str | None = None
    inputs: int | None = None  # how many gate inputs ran on this path (images or texts)
    cosine_min: float | None = None  # int8 vs fp32
    cosine_mean: float | None = None
    agreement_min: float | None = None  # int8 vectors vs this machine's int8 vectors
    agreement_threshold: float | None = None
    bit_identical: bool | None = None
    seconds_per_input: float | None = None
    probe: dict[str, Any] | None = None  # what the u8×s8 probe measured there
    session_config: dict[str, str] | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def line(self) -> str:
        if self.status == "not_run":
            return f"    {self.path:16s} not run: {self.reason}"
        cos = "no vectors" if self.cosine_min is None else f"cos to fp32 min {self.cosine_min:.6f}"
        agree = "" if self.agreement_min is None else f", agreement {self.agreement_min:.7f}"
        exact = " (bit-identical)" if self.bit_identical else ""
        why = f": {self.reason}" if self.reason else ""
        return f"    {self.path:16s} {self.how:8s} {self.status}: {cos}{agree}{exact}{why}"


class CpuPathsFailed(RuntimeError):
    def __init__(self, results: Sequence[PathResult]) -> None:
        bad = [r for r in results if r.status == "failed"]
        super().__init__("accuracy gate failed on CPU path(s): " + "; ".join(f"{r.path}: {r.reason}" for r in bad))
        self.results = list(results)


def _unit(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pick_images(names: Sequence[str], native_cosines: Sequence[float], n: int = EMULATED_IMAGES) -> list[int]:
    """The real photos first, then the images where int8 is furthest from fp32 natively."""
    photos = [i for i, name in enumerate(names) if name.endswith(".jpg")]
    worst = sorted(range(len(names)), key=lambda i: native_cosines[i])
    chosen: list[int] = []
    for i in [*photos[: n // 2], *worst]:
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen[:n])


def emulate(
    path: CpuPath, model_dir: Path, manifest: Manifest, tower: str, inputs: np.ndarray
) -> tuple[np.ndarray, dict]:
    """The int8 ``tower`` of ``model_dir`` on ``inputs`` (pixel values or token ids) in an emulated ``path``
    CPU: (unit vectors, the worker's report). ``manifest`` is what the runtime reads there (the tower's
    quantization settings pick the tuning)."""
    if path.qemu_cpu is None:
        raise EmulationUnavailable(f"{path.name}: no emulator reaches it")
    spec = manifest.towers[tower]
    with ExitStack() as stack:
        if path.arch == "x86_64":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"clip-{path.name}-"))
            run = x86_run(path.qemu_cpu, path.cpuinfo(), Path(tmp))
        else:
            run = stack.enter_context(Arm64Root.locked()).ensure().run(path.qemu_cpu, path.cpuinfo())
        model = run.stage / "model"
        model.mkdir(parents=True, exist_ok=True)
        link_or_copy(model_dir / spec.file, model / spec.file)
        manifest.write(model)
        np.save(run.stage / "inputs.npy", inputs)
        guest = run.stage_in_guest
        argv = [*run.argv, WORKER, f"{guest}/model", tower, f"{guest}/inputs.npy", f"{guest}/out.npy"]
        proc = subprocess.run(argv, env=run.env, capture_output=True, text=True, check=False, timeout=3600)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if QEMU_WARNING not in ln]
            raise RuntimeError(f"exit {proc.returncode}: " + " | ".join(errors[-6:]))
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        return np.load(run.stage / "out.npy"), report


def _judge(
    path: CpuPath,
    native: CpuInfo,
    *,
    vectors: np.ndarray,
    report: dict[str, Any],
    native_int8: np.ndarray,
    fp32: np.ndarray,
    min_cosine: float,
) -> PathResult:
    cos = np.sum(_unit(vectors) * _unit(fp32), axis=1)
    agree = np.sum(_unit(vectors) * _unit(native_int8), axis=1)
    same_x86 = path.arch == native.arch == "x86_64"
    threshold = SAME_ARCH_AGREEMENT if same_x86 else CROSS_ARCH_AGREEMENT
    cpu = report["cpu"]
    problems = []
    if cpu["kernel_path"] != path.name:
        problems.append(f"the emulated CPU was detected as {cpu['kernel_path']}")
    if cos.min() < min_cosine:
        problems.append(f"int8 vs fp32 cosine {cos.min():.6f} < {min_cosine}")
    if agree.min() < threshold:
        problems.append(f"agreement with {native.kernel_path} {agree.min():.7f} < {threshold}")
    return PathResult(
        path=path.name,
        status="failed" if problems else "passed",
        how="emulated",
        stands_for=path.stands_for,
        cpu=f"{cpu['model']} [{', '.join(cpu['int8_flags'])}]",
        qemu_cpu=path.qemu_cpu,
        cosine_min=round(float(cos.min()), 6),
        cosine_mean=round(float(cos.mean()), 6),
        agreement_min=round(float(agree.min()), 7),
        agreement_threshold=threshold,
        bit_identical=bool(np.array_equal(vectors, native_int8)),
        inputs=len(vectors),
        seconds_per_input=report.get("seconds_per_input"),
        probe=cpu.get("probe"),
        session_config=cpu.get("session_config"),
        reason="; ".join(problems) or None,
    )


@dataclass(frozen=True)
class PathsOutcome:
    results: list[PathResult]  # every known path: native, emulated or not run, in PATHS order
    canary: dict[str, np.ndarray]  # path → the canary's unit vector there (emulated paths that ran)

    @property
    def passed(self) -> bool:
        return not any(r.status == "failed" for r in self.results)

    @property
    def failed(self) -> list[PathResult]:
        return [r for r in self.results if r.status == "failed"]


def run_cpu_paths(
    model_dir: Path,
    manifest: Manifest,
    *,
    tower: str,
    inputs: np.ndarray,
    native_int8: np.ndarray,
    fp32: np.ndarray,
    native_summary: PathResult,
    native: CpuInfo,
    canary: np.ndarray | None = None,
    mode: CrossCpuMode = "auto",
    min_cosine: float,
    log: Callable[[str], None] = print,
) -> PathsOutcome:
    """One result per known path (native, emulated or not run) for one tower's gate inputs (and its canary
    input, if given, run after them); raises ``EmulationUnavailable`` in ``required`` mode when an
    emulatable path cannot run here. Failures are results, for the caller (the recovery) to act on."""
    results: dict[str, PathResult] = {native.kernel_path: native_summary}
    canaries: dict[str, np.ndarray] = {}
    todo: list[CpuPath] = []
    for path in PATHS:
        if path.name == native.kernel_path:
            continue
        if path.qemu_cpu is None:
            results[path.name] = PathResult(path.name, "not_run", "none", path.stands_for, reason=_NO_AVX512)
        elif mode == "off":
            results[path.name] = PathResult(path.name, "not_run", "none", path.stands_for, reason="--cross-cpu off")
        else:
            todo.append(path)
    feed = inputs if canary is None else np.concatenate([inputs, canary[None]])

    def one(path: CpuPath) -> PathResult:
        try:
            vectors, report = emulate(path, model_dir, manifest, tower, feed)
        except EmulationUnavailable as exc:
            if mode == "required":
                raise
            return PathResult(path.name, "not_run", "none", path.stands_for, qemu_cpu=path.qemu_cpu, reason=str(exc))
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            return PathResult(path.name, "failed", "emulated", path.stands_for, qemu_cpu=path.qemu_cpu, reason=str(exc))
        if canary is not None:
            canaries[path.name] = vectors[-1]
            vectors = vectors[:-1]
        return _judge(
            path, native, vectors=vectors, report=report, native_int8=native_int8, fp32=fp32, min_cosine=min_cosine
        )

    # x86 and arm64 emulation in parallel (one core each); arm64 paths share one root, so in turn.
    x86 = [p for p in todo if p.arch == "x86_64"]
    arm = [p for p in todo if p.arch != "x86_64"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(lambda ps: [one(p) for p in ps], group) for group in (x86, arm) if group]
        for future in futures:
            for result in future.result():
                results[result.path] = result
    ordered = [results[p.name] for p in PATHS if p.name in results]
    ordered += [r for name, r in results.items() if name not in {p.name for p in PATHS}]
    for r in ordered:
        log(r.line())
    return PathsOutcome(ordered, canaries)


def native_result(native: CpuInfo, cosines: Sequence[float], probe: dict[str, Any] | None = None) -> PathResult:
    """The build machine's own gate (all of the tower's gate inputs), as one of the paths."""
    vals = np.asarray(cosines)
    known = {p.name: p.stands_for for p in PATHS}
    return PathResult(
        path=native.kernel_path,
        status="passed",
        how="native",
        stands_for=known.get(native.kernel_path, "the build machine"),
        cpu=describe(native),
        inputs=len(vals),
        probe=probe,
        cosine_min=round(float(vals.min()), 6),
        cosine_mean=round(float(vals.mean()), 6),
    )
