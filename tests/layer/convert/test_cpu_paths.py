"""Every tower on every CPU path: the build's cross-CPU gate, and proofs that its emulation is real.

The emulated paths need QEMU (qemu-user-static) and, for arm64, root and debootstrap: required under CI
(tests/conftest.py ``cross_cpu_required``), skipped with the reason elsewhere. On an AVX2 build machine
x86-avx2 is the native path and only the arm64 paths are emulated; on a VNNI machine x86-avx2 is emulated
too: the tests hold on both.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layer import Embedder
from layer.config import PreprocessConfig
from layer.convert import cpu_paths
from layer.convert.calibration import calibration_images
from layer.convert.cpu_paths import (
    EMULATED_IMAGES,
    PATHS,
    CpuPath,
    emulate,
    native_result,
    pick_images,
    run_cpu_paths,
)
from layer.convert.emulation import EmulationUnavailable
from layer.convert.gate import CROSS_ARCH_AGREEMENT, DEFAULT_MIN_COSINE, SAME_ARCH_AGREEMENT
from layer.cpu import X64_PRECISION, CpuInfo, int8_tuning, probe_u8s8
from layer.embedder import pixel_values
from layer.limits import Limits
from layer.manifest import IMAGE, TOWERS, Manifest, decode_vector
from tests.conftest import cross_cpu_required

pytestmark = pytest.mark.slow
BY_NAME = {p.name: p for p in PATHS}
EMULATABLE = [p.name for p in PATHS if p.qemu_cpu]
KLEIDIAI_OFF = {"mlas.disable_kleidiai": "1"}
REENCODED = dict([X64_PRECISION])


def _require(result: dict[str, Any]) -> None:
    if result["status"] == "not_run" and not cross_cpu_required():
        pytest.skip(f"{result['path']} not run on this machine: {result['reason']}")


@pytest.fixture(scope="module")
def manifest(model_dir: Path) -> Manifest:
    return Manifest.read(model_dir)


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    images = dict(calibration_images(0))
    return np.stack(
        [pixel_values(images[n], PreprocessConfig(), Limits(), fast_jpeg=False)[0] for n in ("china.jpg", "noise")]
    )


@pytest.fixture(scope="module")
def native_vectors(model_dir: Path, pixels: np.ndarray) -> np.ndarray:
    return Embedder.from_dir(model_dir, threads=1, self_check=False).embed_pixels(pixels)[0]


def _emulate(path_name: str, model_dir: Path, manifest: Manifest, pixels: np.ndarray, **changes: Any) -> Any:
    path = replace(BY_NAME[path_name], **changes)
    try:
        return emulate(path, model_dir, manifest, IMAGE, pixels)
    except EmulationUnavailable as exc:
        if cross_cpu_required():
            raise
        pytest.skip(f"cannot emulate {path_name} here: {exc}")


# --- what the build recorded ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tower", TOWERS)
def test_manifest_lists_every_cpu_path_with_its_outcome(manifest: Manifest, tower: str) -> None:
    spec = manifest.towers[tower]
    results = {r["path"]: r for r in spec.cpu_paths}
    native = CpuInfo.detect().kernel_path
    assert set(BY_NAME) | {native} == set(results)
    # in PATHS order, then this machine's path if it is none of them
    assert list(results) == [p.name for p in PATHS] + ([] if native in BY_NAME else [native])
    gate = spec.accuracy_gate or {}
    mine = results[native]
    assert (mine["how"], mine["status"], mine["inputs"]) == ("native", "passed", gate["n_inputs"])
    assert mine["cosine_min"] == gate["cosine_min"]
    assert mine["probe"]["u8s8_exact"] == probe_u8s8(CpuInfo.detect().arch).u8s8_exact  # measured here
    for r in results.values():
        assert r["status"] in ("passed", "not_run"), r  # a failed path fails the build
        if r["status"] == "not_run":
            assert r["reason"], r  # never silently skipped
        else:
            assert r["cosine_min"] >= gate["threshold"] >= DEFAULT_MIN_COSINE
    for name, path in BY_NAME.items():
        if path.qemu_cpu is None and name != native:
            assert results[name]["status"] == "not_run" and "QEMU" in results[name]["reason"]


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("name", EMULATABLE)
def test_emulated_paths_agree_with_the_build_machine(manifest: Manifest, tower: str, name: str) -> None:
    native = CpuInfo.detect()
    result = manifest.towers[tower].gate_for(name) or {}
    if name == native.kernel_path:  # this machine's own path: gated natively, on every gate input
        assert (result["status"], result["how"]) == ("passed", "native"), result
        assert result["inputs"] == (manifest.towers[tower].accuracy_gate or {})["n_inputs"]
        if name == "x86-avx2":  # a real AVX2 CPU: its plain u8×s8 kernel saturates, re-encoded it is exact
            assert (result["probe"]["u8s8_exact"], result["probe"]["reencoded_exact"]) == (False, True)
        return
    _require(result)
    assert (result["status"], result["how"]) == ("passed", "emulated"), result
    threshold = (manifest.towers[tower].accuracy_gate or {})["threshold"]
    assert result["inputs"] == EMULATED_IMAGES and result["cosine_min"] >= threshold >= DEFAULT_MIN_COSINE
    assert result["seconds_per_input"] > 0
    if BY_NAME[name].arch == native.arch == "x86_64":
        # Exact integers and ISA-independent float kernels: the same bits on every x86 path.
        assert result["bit_identical"] is True and result["agreement_min"] >= SAME_ARCH_AGREEMENT
        assert result["agreement_threshold"] == SAME_ARCH_AGREEMENT
    else:
        assert result["agreement_min"] >= CROSS_ARCH_AGREEMENT
        assert result["agreement_threshold"] == CROSS_ARCH_AGREEMENT
    # What the emulated CPU measured and how its session was tuned for it.
    probe, config = result["probe"], result["session_config"]
    if BY_NAME[name].arch == "aarch64":
        assert probe["u8s8_exact"] is True and config == KLEIDIAI_OFF
    else:  # x86-avx2: VPMADDUBSW saturates the plain kernel, so the weights are re-encoded u8 at load
        assert (probe["u8s8_exact"], probe["reencoded_exact"]) == (False, True) and config == REENCODED


@pytest.mark.parametrize("tower", TOWERS)
def test_canary_vectors_exist_for_every_path_that_ran(manifest: Manifest, tower: str) -> None:
    """The build's canary rode along on each path: one vector per path that ran, here or emulated, each as
    close to this machine's as the gate requires of those paths."""
    spec = manifest.towers[tower]
    canary = spec.canary
    assert canary is not None
    ran = {r["path"] for r in spec.cpu_paths if r["status"] != "not_run"}
    assert set(canary.int8) == ran
    native = CpuInfo.detect()
    fp32 = decode_vector(canary.fp32).astype(np.float64)
    mine = decode_vector(canary.int8[native.kernel_path]).astype(np.float64)
    for name, encoded in canary.int8.items():
        v = decode_vector(encoded).astype(np.float64)
        assert v.shape == (manifest.dim,) and abs(np.linalg.norm(v) - 1) < 1e-5
        assert float(v @ fp32) >= canary.min_cosine, name
        same_x86 = BY_NAME[name].arch == native.arch == "x86_64" if name in BY_NAME else True
        assert float(v @ mine) >= (SAME_ARCH_AGREEMENT if same_x86 else CROSS_ARCH_AGREEMENT), name


# --- the emulation is real ------------------------------------------------------------------------------------
def test_emulated_avx2_cpu_probes_the_saturating_kernel_and_reencodes(
    model_dir: Path, manifest: Manifest, pixels: np.ndarray, native_vectors: np.ndarray
) -> None:
    """Proof that the emulation reaches the AVX2 kernels: the emulated EPYC Milan's probe finds its plain u8×s8
    kernel (VPMADDUBSW) saturating and its session re-encodes the weights: the same bits as here (whether this
    machine is AVX2 or VNNI). Told the weights are 7-bit (so no re-encoding at load), the vectors leave the
    native ones by more than the gate allows between x86 paths."""
    exact, report = _emulate("x86-avx2", model_dir, manifest, pixels)
    cpu = report["cpu"]
    assert cpu["kernel_path"] == "x86-avx2" and cpu["exact_u8s8"] is False
    assert (cpu["probe"]["u8s8_exact"], cpu["probe"]["reencoded_exact"]) == (False, True)
    assert (cpu["session_config"], cpu["graph_optimization"]) == (REENCODED, "extended")
    assert np.array_equal(exact, native_vectors)
    image = replace(manifest.image, quantization={**(manifest.image.quantization or {}), "reduce_range": True})
    lied = dataclasses.replace(manifest, towers={**manifest.towers, IMAGE: image})
    saturated, report = _emulate("x86-avx2", model_dir, lied, pixels)
    assert report["cpu"]["probe"]["u8s8_exact"] is False and report["cpu"]["session_config"] == {}
    # Every x86 path gives the native bits (above); the saturating kernel leaves them by more than the gate
    # lets an x86 path differ (~1e-3 on plain int8, ~1e-4 where a recovery kept the sensitive nodes fp32).
    agreement = np.sum(saturated.astype(np.float64) * native_vectors, axis=1)
    assert agreement.min() < SAME_ARCH_AGREEMENT, agreement


def test_arm64_with_sme_gives_the_graviton_vectors(model_dir: Path, manifest: Manifest, pixels: np.ndarray) -> None:
    """QEMU's ``max`` CPU has SME, which onnxruntime answers with KleidiAI's per-row activation quantization
    (cosine ~0.6 to every other CPU under QEMU 7.2); the runtime's ``mlas.disable_kleidiai`` keeps it on the
    common path, bit for bit."""
    graviton, report = _emulate("arm64-i8mm", model_dir, manifest, pixels)
    assert report["cpu"]["session_config"] == KLEIDIAI_OFF and "sme" not in report["cpu"]["int8_flags"]
    sme_features = BY_NAME["arm64-i8mm"].features + " sme"
    with_sme, report = _emulate("arm64-i8mm", model_dir, manifest, pixels, qemu_cpu="max", features=sme_features)
    assert report["cpu"]["kernel_path"] == "arm64-i8mm" and "sme" in report["cpu"]["int8_flags"]
    assert report["cpu"]["session_config"] == KLEIDIAI_OFF and report["cpu"]["probe"]["u8s8_exact"] is True
    assert np.array_equal(with_sme, graviton)


# --- the runtime's view ---------------------------------------------------------------------------------------
def test_runtime_reports_its_path_and_the_gate_coverage(model_dir: Path, manifest: Manifest) -> None:
    engine = Embedder.from_dir(model_dir, text=True)
    report = engine.cpu_report()
    cpu = CpuInfo.detect()
    probe = probe_u8s8(cpu.arch)
    assert report["kernel_path"] == cpu.kernel_path and report["model"] == cpu.model
    assert report["gate_covered"] is True and report["gate"] == manifest.image.gate_for(cpu.kernel_path)
    assert report["gate"]["how"] == "native"
    assert report["probe"]["u8s8_exact"] == probe.u8s8_exact
    assert report["probe"]["flags_agree"] is (probe.u8s8_exact == cpu.exact_u8s8)
    # the session options follow what the probe measured, for both towers (the same weight format)
    tuning = dict(int8_tuning(cpu, manifest.image.quantization, probe).config)
    assert report["session_config"] == tuning
    assert set(report["towers"]) == {"image", "text"}
    assert all(t["session_config"] == tuning and t["precision"] == "int8" for t in report["towers"].values())
    assert report["self_check"]["passed"] is True
    json.dumps(report)  # served by GET /model


# --- run_cpu_paths' bookkeeping, with the emulator stood in for ------------------------------------------------
VNNI = CpuInfo(
    arch="x86_64", model="Intel Xeon (test)", flags=frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"})
)


def _unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _run(
    monkeypatch: pytest.MonkeyPatch, fake: Any, mode: Any = "auto", log: list[str] | None = None
) -> cpu_paths.PathsOutcome:
    """``run_cpu_paths`` for 4 inputs and a canary on a VNNI build machine; ``fake(path, tower, feed)`` stands in
    for ``emulate``."""
    inputs, canary = np.arange(4 * 3, dtype=np.int64).reshape(4, 3), np.full(3, 99, dtype=np.int64)
    vectors = _unit_rows(4, 0)
    monkeypatch.setattr(cpu_paths, "emulate", lambda path, _dir, _m, tower, feed: fake(path, tower, feed))
    return run_cpu_paths(
        Path("unused"),
        None,  # type: ignore[arg-type]  # only the (stood-in) emulator reads it
        tower="text",
        inputs=inputs,
        native_int8=vectors,
        fp32=vectors,
        native_summary=native_result(VNNI, [0.9995] * 4),
        native=VNNI,
        canary=canary,
        mode=mode,
        min_cosine=0.999,
        log=(log if log is not None else []).append,
    )


def _report(path: CpuPath, kernel_path: str | None = None) -> dict[str, Any]:
    cpu = {"kernel_path": kernel_path or path.name, "model": path.model or "arm", "int8_flags": ["x"]}
    return {"cpu": {**cpu, "probe": {"u8s8_exact": True}, "session_config": {}}, "seconds_per_input": 0.5}


def test_cross_cpu_off_runs_nothing_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(path: CpuPath, tower: str, feed: np.ndarray) -> Any:
        raise AssertionError(f"{path.name} emulated with --cross-cpu off")

    outcome = _run(monkeypatch, never, mode="off")
    assert outcome.passed and outcome.canary == {}
    by = {r.path: r for r in outcome.results}
    assert list(by) == [p.name for p in PATHS]  # the build machine's path among them, in its place
    assert by["x86-avx512-vnni"].how == "native" and by["x86-avx512-vnni"].inputs == 4
    for p in PATHS:
        if p.name != "x86-avx512-vnni":
            assert by[p.name].status == "not_run"
            assert by[p.name].reason == ("--cross-cpu off" if p.qemu_cpu else cpu_paths._NO_AVX512)


def test_each_path_that_ran_gives_its_canary_and_is_judged_on_the_gate_inputs_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agreeing path passes (its canary kept apart, its inputs counted without it), a crashed one fails
    with its error, one detected as another kernel path fails, one that cannot be emulated is not run."""
    seen: dict[str, tuple[str, np.ndarray]] = {}
    vectors = _unit_rows(4, 0)

    def fake(path: CpuPath, tower: str, feed: np.ndarray) -> Any:
        seen[path.name] = (tower, feed)
        if path.name == "x86-avx2":
            raise EmulationUnavailable("no qemu-x86_64-static")
        if path.name == "arm64-i8mm":
            raise RuntimeError("exit 139: Segmentation fault")
        return np.concatenate([vectors, _unit_rows(1, 1)]), _report(path)

    lines: list[str] = []
    outcome = _run(monkeypatch, fake, log=lines)
    by = {r.path: r for r in outcome.results}
    tower, feed = seen["arm64-dotprod"]
    assert tower == "text" and feed.shape == (5, 3) and (feed[-1] == 99).all()  # the canary, run last
    assert by["arm64-dotprod"].status == "passed" and by["arm64-dotprod"].inputs == 4
    assert by["arm64-dotprod"].probe == {"u8s8_exact": True} and by["arm64-dotprod"].seconds_per_input == 0.5
    assert set(outcome.canary) == {"arm64-dotprod"}  # only the paths that ran
    assert np.array_equal(outcome.canary["arm64-dotprod"], _unit_rows(1, 1)[0])
    assert by["x86-avx2"].status == "not_run" and "qemu-x86_64-static" in (by["x86-avx2"].reason or "")
    assert by["arm64-i8mm"].status == "failed" and "Segmentation fault" in (by["arm64-i8mm"].reason or "")
    assert not outcome.passed and [r.path for r in outcome.failed] == ["arm64-i8mm"]
    assert len(lines) == len(PATHS) and any("arm64-i8mm" in ln and "Segmentation fault" in ln for ln in lines)

    def misdetected(path: CpuPath, tower: str, feed: np.ndarray) -> Any:
        return np.concatenate([vectors, _unit_rows(1, 1)]), _report(path, kernel_path="arm64-neon")

    outcome = _run(monkeypatch, misdetected)
    assert {r.path for r in outcome.failed} == {"x86-avx2", "arm64-dotprod", "arm64-i8mm"}
    assert all("detected as arm64-neon" in (r.reason or "") for r in outcome.failed)


def test_required_mode_fails_when_a_path_cannot_be_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(path: CpuPath, tower: str, feed: np.ndarray) -> Any:
        raise EmulationUnavailable(f"{path.name}: chroot needs root")

    with pytest.raises(EmulationUnavailable, match="chroot needs root"):
        _run(monkeypatch, unavailable, mode="required")


def test_the_emulated_inputs_are_the_photos_then_the_worst() -> None:
    """Images: the two real photos, then the furthest from fp32 natively; texts (no photos): the worst."""
    names = ["a.jpg", "b", "c.jpg", "d", "e", "f"]
    assert pick_images(names, [0.9999, 0.9991, 0.9998, 0.9999, 0.9992, 0.9990]) == [0, 1, 2, 5]
    assert pick_images(["t1", "t2", "t3", "t4", "t5"], [0.5, 0.1, 0.4, 0.2, 0.3]) == [1, 2, 3, 4]
