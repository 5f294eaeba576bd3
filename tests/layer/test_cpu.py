"""CPU detection → int8 kernel path → the session options that keep int8 exact on that CPU (layer.cpu)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer.cpu import KERNEL_PATHS, CpuInfo, describe, int8_tuning
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
