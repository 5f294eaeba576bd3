"""CPU detection → int8 kernel path → the session options that keep int8 exact on that CPU (layer.cpu), and
the u8×s8 probe that decides them by what onnxruntime computes here."""

from __future__ import annotations

import base64
import platform
import zlib
from pathlib import Path

import numpy as np
import pytest

from layer.cpu import (
    KERNEL_PATHS,
    PROBE_INPUT,
    PROBE_MODEL,
    PROBE_OUTPUT,
    PROBE_SHAPE,
    X64_PRECISION,
    CpuInfo,
    Probe,
    describe,
    int8_tuning,
    probe_u8s8,
)
from layer.session import SessionSettings, session_options
from layer.settings import EngineSettings

# First processor blocks as real machines print them (flags trimmed to what matters plus neighbours).
HASWELL = "model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz\nflags\t\t: fpu sse4_2 avx fma avx2 bmi2\n"
MILAN = "model name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu sse4_2 avx fma avx2 sha_ni vaes vpclmulqdq\n"
SKYLAKE = "model name\t: Intel(R) Xeon(R) Platinum 8175M\nflags\t\t: avx2 avx512f avx512dq avx512cd avx512bw avx512vl\n"
CASCADE = (
    "model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\n"
    "flags\t\t: avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni\n"
)
SAPPHIRE = (
    "model name\t: Intel(R) Xeon(R) Platinum 8488C\n"
    "flags\t\t: avx2 avx_vnni avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8\n"
)
ALDER = "model name\t: 12th Gen Intel(R) Core(TM) i7-12700\nflags\t\t: avx2 avx_vnni\n"
GRAVITON2 = (
    "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    "CPU variant\t: 0x3\n"
    "CPU part\t: 0xd0c\nCPU revision\t: 1\n\nprocessor\t: 1\nFeatures\t: fp asimd\n"
)
GRAVITON3 = (
    "processor\t: 0\nFeatures\t: fp asimd asimddp sve i8mm bf16 svei8mm\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
)

A72 = "Features\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"


@pytest.mark.parametrize(
    ("text", "arch", "path", "model"),
    [
        (HASWELL, "x86_64", "x86-avx2", "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz"),
        (MILAN, "x86_64", "x86-avx2", "AMD EPYC 7R13 Processor"),
        (SKYLAKE, "x86_64", "x86-avx512", "Intel(R) Xeon(R) Platinum 8175M"),
        (CASCADE, "x86_64", "x86-avx512-vnni", "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"),
        (SAPPHIRE, "x86_64", "x86-amx", "Intel(R) Xeon(R) Platinum 8488C"),
        (ALDER, "x86_64", "x86-avx-vnni", "12th Gen Intel(R) Core(TM) i7-12700"),
        ("flags\t\t: sse2 sse4_2\n", "x86_64", "x86-sse", "unknown"),
        (GRAVITON2, "aarch64", "arm64-dotprod", "Arm Neoverse-N1 (Graviton2)"),
        (GRAVITON3, "aarch64", "arm64-i8mm", "Arm Neoverse-V1 (Graviton3)"),
        (A72, "aarch64", "arm64-neon", "Arm Cortex-A72 (Graviton1)"),
    ],
)
def test_kernel_path_from_proc_cpuinfo(text: str, arch: str, path: str, model: str) -> None:
    cpu = CpuInfo.parse(text, arch)
    assert (cpu.kernel_path, cpu.model) == (path, model)
    assert path in KERNEL_PATHS and path in describe(cpu)


def test_only_the_first_processor_block_counts() -> None:
    # Graviton2's second block lists fewer features: the first one decides.
    assert CpuInfo.parse(GRAVITON2, "aarch64").flags == {"asimddp"}


def test_blank_lines_before_the_first_block_are_skipped() -> None:
    cpu = CpuInfo.parse("\n\n" + CASCADE, "x86_64")
    assert cpu == CpuInfo.parse(CASCADE, "x86_64") and cpu.kernel_path == "x86-avx512-vnni"


def test_unknown_arm_part_is_named_by_its_ids() -> None:
    cpu = CpuInfo.parse("Features\t: fp asimd\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n", "aarch64")
    assert cpu.model == "arm64 implementer 0x61 part 0x022"


def test_detect_reads_the_file_and_survives_its_absence(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CASCADE)
    assert CpuInfo.detect(tmp_path / "cpuinfo").flags == {"avx2", "avx512f", "avx512bw", "avx512_vnni"}
    missing = CpuInfo.detect(tmp_path / "absent")
    assert (missing.model, missing.flags) == ("unknown", frozenset())
    import platform

    assert CpuInfo.detect(tmp_path / "cpuinfo").arch == missing.arch == platform.machine().lower()
    (tmp_path / "latin1").write_bytes(CASCADE.encode() + b"\nbogus\t: \xff\xfe\n")  # undecodable bytes
    assert CpuInfo.detect(tmp_path / "latin1").kernel_path == "x86-avx512-vnni"


@pytest.mark.parametrize(
    ("text", "arch", "config", "level"),
    [
        # Saturating u8×s8 kernels: re-encode the weights as u8 at load (needs graph level extended).
        (HASWELL, "x86_64", {"session.x64quantprecision": "1"}, "extended"),
        (SKYLAKE, "x86_64", {"session.x64quantprecision": "1"}, "extended"),
        # Exact kernels: the pre-optimized model as built, nothing to do at load.
        (CASCADE, "x86_64", {}, "basic"),
        (SAPPHIRE, "x86_64", {}, "basic"),
        (ALDER, "x86_64", {}, "basic"),
        # arm64: keep off KleidiAI's per-row activation quantization (SME CPUs).
        (GRAVITON2, "aarch64", {"mlas.disable_kleidiai": "1"}, "basic"),
        (GRAVITON3, "aarch64", {"mlas.disable_kleidiai": "1"}, "basic"),
    ],
)
def test_int8_tuning_per_cpu(text: str, arch: str, config: dict[str, str], level: str) -> None:
    tuning = int8_tuning(CpuInfo.parse(text, arch), {"weight_type": "int8", "reduce_range": False})
    assert (dict(tuning.config), tuning.optimization) == (config, level)


def test_the_macos_spelling_of_arm64_gets_the_arm_tuning() -> None:
    cpu = CpuInfo.parse(GRAVITON2, "arm64")
    assert cpu.kernel_path == "arm64-dotprod"
    tuning = int8_tuning(cpu, {"weight_type": "int8", "reduce_range": False})
    assert (dict(tuning.config), tuning.optimization) == ({"mlas.disable_kleidiai": "1"}, "basic")


def test_weights_that_cannot_saturate_need_no_reencoding() -> None:
    haswell = CpuInfo.parse(HASWELL, "x86_64")
    assert int8_tuning(haswell, {"reduce_range": True}).config == ()
    assert int8_tuning(haswell, {"weight_type": "uint8"}).config == ()
    assert int8_tuning(haswell, None).config == (("session.x64quantprecision", "1"),)


def test_tuning_reaches_the_onnxruntime_session_options() -> None:
    tuning = int8_tuning(CpuInfo.parse(HASWELL, "x86_64"))
    settings = SessionSettings.auto(EngineSettings(), threads=1, optimization=tuning.optimization, config=tuning.config)
    so = session_options(settings)
    assert so.get_session_config_entry("session.x64quantprecision") == "1"
    assert str(so.graph_optimization_level).endswith("ORT_ENABLE_EXTENDED")


def test_cpuinfo_of_another_architecture_is_recognised() -> None:
    # An arm64 process under QEMU 7.2 user-mode emulation reads the x86 host's /proc/cpuinfo.
    assert CpuInfo.describes_other_arch(HASWELL, "aarch64") is True
    assert CpuInfo.describes_other_arch(GRAVITON2, "aarch64") is False
    assert CpuInfo.describes_other_arch(CASCADE, "x86_64") is False
    assert CpuInfo.describes_other_arch(GRAVITON3, "x86_64") is True


def test_half_an_arm_cpuinfo_still_reads_as_arm() -> None:
    assert CpuInfo.describes_other_arch("Features\t: fp asimd\n", "x86_64") is True
    assert CpuInfo.describes_other_arch("CPU implementer\t: 0x41\n", "x86_64") is True
    assert CpuInfo.describes_other_arch(GRAVITON2, "arm64") is False  # macOS/BSD spelling of the arch
    assert CpuInfo.describes_other_arch(HASWELL, "arm64") is True


def test_reports_name_the_cpu_path_and_flags() -> None:
    cpu = CpuInfo.parse(CASCADE, "x86_64")
    assert cpu.to_dict() == {
        "arch": "x86_64",
        "model": "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
        "int8_flags": ["avx2", "avx512_vnni", "avx512bw", "avx512f"],
        "kernel_path": "x86-avx512-vnni",
        "exact_u8s8": True,
    }
    assert describe(cpu) == (
        "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz "
        "[x86-avx512-vnni; int8 flags: avx2,avx512_vnni,avx512bw,avx512f]"
    )
    spaced = CpuInfo.parse("model name\t: AMD  EPYC\t7R13\nflags\t\t: avx2\n", "x86_64")
    assert describe(spaced).startswith("AMD EPYC 7R13 [")  # runs of blanks collapse to one space
    bare = CpuInfo.parse("flags\t\t: sse2\n", "x86_64")
    assert describe(bare) == "unknown [x86-sse; int8 flags: none]"


# --- the u8×s8 probe ---------------------------------------------------------------------------------------


def _probe_input() -> np.ndarray:
    a = np.ones(PROBE_SHAPE, dtype=np.float32)
    a[:, 0] = 0.0
    return a


def _run_probe_model(config: tuple[tuple[str, str], ...], level: str) -> np.ndarray:
    """The probe model in onnxruntime, outside ``layer.cpu``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level.upper()}")
    for key, value in config:
        so.add_session_config_entry(key, value)
    model = zlib.decompress(base64.b64decode(PROBE_MODEL))
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return np.asarray(session.run([PROBE_OUTPUT], {PROBE_INPUT: _probe_input()})[0])


def _reference(saturating: bool) -> np.ndarray:
    """What the probe model computes, in integers: exactly, or as VPMADDUBSW does (adjacent u8×s8 products
    added in a saturating int16 lane). The weights and scales are read from the model itself."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(zlib.decompress(base64.b64decode(PROBE_MODEL))).graph
    node = graph.node[0]
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    qw, w_scale = inits[node.input[1]].astype(np.int64), float(inits[node.input[2]][0])
    a = _probe_input()
    a_scale = (a.max() - min(a.min(), 0.0)) / 255  # dynamic u8 quantization over [min(x, 0), max(x)]
    qa = np.round(a / a_scale).astype(np.int64)
    products = qa[:, :, None] * qw[None]  # [m, k, n]
    if saturating:
        products = np.clip(products[:, 0::2] + products[:, 1::2], -(2**15), 2**15 - 1)
    return products.sum(axis=1) * a_scale * w_scale


def test_the_probe_input_overflows_a_16_bit_lane() -> None:
    assert not np.allclose(_reference(saturating=True), _reference(saturating=False), rtol=1e-2)


def test_the_probes_verdict_is_what_onnxruntime_computes_here() -> None:
    """The plain kernel computes one of the two references, and the probe says which (whatever the
    /proc/cpuinfo flags say: on QEMU or some hypervisors they promise kernels the CPU does not run)."""
    plain = _run_probe_model((), "basic")
    exact, saturated = (np.allclose(plain, _reference(s), rtol=1e-4) for s in (False, True))
    assert exact != saturated
    probe = probe_u8s8()
    assert probe.u8s8_exact is exact


def test_the_reencoded_weights_are_exact_and_tried_only_where_needed_on_x86() -> None:
    assert np.allclose(_run_probe_model((X64_PRECISION,), "extended"), _reference(saturating=False), rtol=1e-4)
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    probe = probe_u8s8()
    assert probe.reencoded_exact is (None if probe.u8s8_exact or not x86 else True)
    assert probe_u8s8("aarch64").reencoded_exact is None  # no x86 re-encoding to try on arm64


def test_the_probe_runs_once_per_architecture() -> None:
    assert probe_u8s8() is probe_u8s8()
    assert probe_u8s8().to_dict() == {
        "u8s8_exact": probe_u8s8().u8s8_exact,
        "reencoded_exact": probe_u8s8().reencoded_exact,
        "ms": probe_u8s8().ms,
    }


@pytest.mark.parametrize(
    ("text", "u8s8_exact", "config", "level"),
    [
        (CASCADE, False, {"session.x64quantprecision": "1"}, "extended"),  # VNNI flags, saturating kernel
        (HASWELL, True, {}, "basic"),  # AVX2 flags, exact kernel
        (HASWELL, False, {"session.x64quantprecision": "1"}, "extended"),
        (CASCADE, True, {}, "basic"),
    ],
    ids=["vnni-flags-saturating", "avx2-flags-exact", "avx2-flags-saturating", "vnni-flags-exact"],
)
def test_int8_tuning_follows_the_probe_when_the_flags_disagree(
    text: str, u8s8_exact: bool, config: dict[str, str], level: str
) -> None:
    probe = Probe(u8s8_exact=u8s8_exact, reencoded_exact=None if u8s8_exact else True, ms=1.0)
    tuning = int8_tuning(CpuInfo.parse(text, "x86_64"), {"weight_type": "int8", "reduce_range": False}, probe)
    assert (dict(tuning.config), tuning.optimization) == (config, level)


def test_a_saturating_probe_changes_nothing_for_weights_that_cannot_saturate_or_on_arm64() -> None:
    saturating = Probe(u8s8_exact=False, reencoded_exact=True, ms=1.0)
    cascade = CpuInfo.parse(CASCADE, "x86_64")
    assert int8_tuning(cascade, {"reduce_range": True}, saturating).config == ()
    assert int8_tuning(cascade, {"weight_type": "uint8"}, saturating).config == ()
    graviton = CpuInfo.parse(GRAVITON3, "aarch64")
    assert int8_tuning(graviton, None, saturating).config == (("mlas.disable_kleidiai", "1"),)
