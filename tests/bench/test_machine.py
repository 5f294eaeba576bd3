"""The machine a measurement ran on (bench/machine.py): results filed per CPU kind, every report naming its
machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import machine as bench_machine
from bench.machine import RESULTS, cpu_kind, machine, results_dir, write_report
from layer.cpu import CpuInfo


@pytest.mark.parametrize(
    ("model", "arch", "flags", "kind"),
    [
        ("AMD EPYC 7R13 Processor", "x86_64", {"avx2"}, "x86-avx2-amd"),
        ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "x86_64", {"avx2", "avx512f", "avx512bw", "avx512_vnni"},
         "x86-avx512-vnni-intel"),
        ("Neoverse-V1 (ARM)", "aarch64", {"asimddp", "i8mm"}, "arm64-i8mm-arm"),
        ("QEMU Virtual CPU", "x86_64", set(), "x86-sse-other"),
    ],
)  # fmt: skip
def test_results_are_filed_by_kernel_path_and_vendor(model: str, arch: str, flags: set[str], kind: str) -> None:
    cpu = CpuInfo(arch=arch, model=model, flags=frozenset(flags))
    assert cpu_kind(cpu) == kind and results_dir(cpu) == RESULTS / kind


def test_this_machine_is_described_with_its_cpu_and_versions() -> None:
    m = machine()
    cpu = CpuInfo.detect()
    assert (m["kernel_path"], m["cpu"], m["arch"]) == (cpu.kernel_path, cpu.model, cpu.arch)
    assert m["summary"].startswith(" ".join(cpu.model.split())) and m["visible_cpus"] >= 1
    assert m["python"].count(".") == 2 and m["onnxruntime"]


def test_a_report_is_json_and_markdown_both_naming_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_machine, "machine", lambda: {"summary": "CPU X [x86-avx2]", "onnxruntime": "1.2"})

    def table(result: dict[str, Any]) -> str:
        return f"| figure | {result['figure']} |\n"

    out = tmp_path / "deep" / "thing.json"
    md = write_report({"figure": 3}, out, table)
    assert json.loads(out.read_text()) == {
        "machine": {"summary": "CPU X [x86-avx2]", "onnxruntime": "1.2"},
        "figure": 3,
    }
    assert md == out.with_suffix(".md").read_text() == "Machine: CPU X [x86-avx2], onnxruntime 1.2.\n\n| figure | 3 |\n"
