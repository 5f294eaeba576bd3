"""The machine a measurement ran on, recorded next to every figure: the CPU model, its int8 kernel path and
the flags that decide it (layer.cpu), and the software versions. Results are filed per CPU kind
(``results_dir``), since the same model runs 5× faster on one CPU than on another."""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from layer.cpu import CpuInfo, describe
from layer.session import CpuBudget

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import onnxruntime

    cpu = CpuInfo.detect()
    return {
        **cpu.to_dict(),
        "cpu": cpu.model,
        "summary": describe(cpu),
        "visible_cpus": CpuBudget.detect().visible,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


def cpu_kind(cpu: CpuInfo | None = None) -> str:
    """``x86-avx512-vnni-amd``, ``x86-avx2-intel``, ``arm64-i8mm-arm``: the results folder of this machine."""
    cpu = cpu or CpuInfo.detect()
    vendor = next((v for v in ("intel", "amd", "arm") if re.search(v, cpu.model, re.IGNORECASE)), "other")
    return f"{cpu.kernel_path}-{vendor}"


def results_dir(cpu: CpuInfo | None = None) -> Path:
    return RESULTS / cpu_kind(cpu)


def write_report(result: dict[str, Any], out: Path, markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write a measurement as ``out`` (JSON) and ``out`` with ``.md`` (its table), both naming the machine
    (CPU model, int8 kernel path and flags); return the table."""
    result = {"machine": machine(), **result}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    md = f"Machine: {result['machine']['summary']}, onnxruntime {result['machine']['onnxruntime']}.\n\n"
    md += markdown(result)
    out.with_suffix(".md").write_text(md)
    return md
