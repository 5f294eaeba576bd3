"""The int8 model on every CPU path: the build's cross-CPU gate, and proofs that its emulation is real.

The emulated paths need QEMU (qemu-user-static) and, for arm64, root and debootstrap: required under CI
(tests/conftest.py ``cross_cpu_required``), skipped with the reason elsewhere.
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
from layer.convert.calibration import calibration_images
from layer.convert.cpu_paths import PATHS, emulate
from layer.convert.emulation import EmulationUnavailable
from layer.convert.gate import CROSS_ARCH_AGREEMENT, DEFAULT_MIN_COSINE, SAME_ARCH_AGREEMENT
from layer.cpu import CpuInfo
from layer.embedder import pixel_values
from layer.limits import Limits
from layer.manifest import Manifest
from tests.conftest import cross_cpu_required

pytestmark = pytest.mark.slow
BY_NAME = {p.name: p for p in PATHS}


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
    return Embedder.from_dir(model_dir, threads=1).embed_pixels(pixels)[0]


def _emulate(path_name: str, model_dir: Path, manifest: Manifest, pixels: np.ndarray, **changes: Any) -> Any:
    path = replace(BY_NAME[path_name], **changes)
    try:
        return emulate(path, model_dir, manifest, pixels)
    except EmulationUnavailable as exc:
        if cross_cpu_required():
            raise
        pytest.skip(f"cannot emulate {path_name} here: {exc}")


def test_manifest_lists_every_cpu_path_with_its_outcome(manifest: Manifest) -> None:
    results = {r["path"]: r for r in manifest.cpu_paths}
    native = CpuInfo.detect().kernel_path
    assert set(BY_NAME) | {native} == set(results)
    assert (
        results[native]["how"] == "native" and results[native]["images"] == (manifest.accuracy_gate or {})["n_images"]
    )
    for r in results.values():
        assert r["status"] in ("passed", "not_run"), r  # a failed path fails the build
        if r["status"] == "not_run":
            assert r["reason"], r  # never silently skipped
        else:
            assert r["cosine_min"] >= DEFAULT_MIN_COSINE
    for name, path in BY_NAME.items():
        if path.qemu_cpu is None and name != native:
            assert results[name]["status"] == "not_run" and "QEMU" in results[name]["reason"]


@pytest.mark.parametrize("name", [p.name for p in PATHS if p.qemu_cpu])
def test_emulated_paths_agree_with_the_build_machine(manifest: Manifest, name: str) -> None:
    native = CpuInfo.detect()
    result = manifest.gate_for(name) or {}
    if name == native.kernel_path:
        pytest.skip(f"{name} is this machine's own path (gated natively)")
    _require(result)
    assert (result["status"], result["how"]) == ("passed", "emulated"), result
    assert result["images"] >= 4 and result["cosine_min"] >= DEFAULT_MIN_COSINE
    if BY_NAME[name].arch == native.arch == "x86_64":
        # Exact integers and ISA-independent float kernels: the same bits on every x86 path.
        assert result["bit_identical"] is True and result["agreement_min"] >= SAME_ARCH_AGREEMENT
    else:
        assert result["agreement_min"] >= CROSS_ARCH_AGREEMENT


def test_emulated_avx2_cpu_runs_the_saturating_kernel(
    model_dir: Path, manifest: Manifest, pixels: np.ndarray, native_vectors: np.ndarray
) -> None:
    """Proof that the emulation reaches the AVX2 kernels: told the weights are 7-bit (so no u8 re-encoding
    at load), the emulated EPYC Milan's VPMADDUBSW saturates and its vectors leave the native ones; with the
    manifest as built, the same bits as natively."""
    if CpuInfo.detect().kernel_path == "x86-avx2":
        pytest.skip("this machine is AVX2: the test needs a VNNI reference")
    lied = dataclasses.replace(manifest, quantization={**(manifest.quantization or {}), "reduce_range": True})
    saturated, report = _emulate("x86-avx2", model_dir, lied, pixels)
    assert report["cpu"]["session_config"] == {}
    exact, report = _emulate("x86-avx2", model_dir, manifest, pixels)
    assert report["cpu"]["session_config"] == {"session.x64quantprecision": "1"}
    assert np.array_equal(exact, native_vectors)
    agreement = np.sum(saturated.astype(np.float64) * native_vectors, axis=1)
    assert agreement.min() < 0.9999, agreement


def test_arm64_with_sme_gives_the_graviton_vectors(model_dir: Path, manifest: Manifest, pixels: np.ndarray) -> None:
    """QEMU's ``max`` CPU has SME, which onnxruntime answers with KleidiAI's per-row activation quantization
    (cosine ~0.6 to every other CPU under QEMU 7.2); the runtime's ``mlas.disable_kleidiai`` keeps it on the
    common path, bit for bit."""
    graviton, _ = _emulate("arm64-i8mm", model_dir, manifest, pixels)
    sme_features = BY_NAME["arm64-i8mm"].features + " sme"
    with_sme, report = _emulate("arm64-i8mm", model_dir, manifest, pixels, qemu_cpu="max", features=sme_features)
    assert report["cpu"]["session_config"] == {"mlas.disable_kleidiai": "1"}
    assert np.array_equal(with_sme, graviton)


def test_runtime_reports_its_path_and_the_gate_coverage(model_dir: Path) -> None:
    report = Embedder.from_dir(model_dir).cpu_report()
    cpu = CpuInfo.detect()
    assert report["kernel_path"] == cpu.kernel_path and report["model"] == cpu.model
    assert report["gate_covered"] is True and report["gate"]["how"] == "native"
    json.dumps(report)  # served by GET /model


def test_arm64_root_is_used_by_one_build_at_a_time(tmp_path: Path) -> None:
    """Two builds (or a build and the tests) on one machine share the root, its fake /proc/cpuinfo and its
    staged model: the second waits for the first (CI once failed copying QEMU over a running one)."""
    import threading
    import time

    from layer.convert.emulation import Arm64Root

    order: list[str] = []

    def second() -> None:
        with Arm64Root.locked(tmp_path / "root"):
            order.append("2")

    with Arm64Root.locked(tmp_path / "root"):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        order.append("1")
    waiter.join(timeout=5)
    assert order == ["1", "2"]
