"""Which int8 format (bench/int8_formats.py): each variant quantized with the build's own tools and compared
in one run; its table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import int8_formats
from bench.int8_formats import EMULATED, VARIANTS, markdown
from layer.convert.quantize import QuantSettings


@pytest.mark.slow
def test_int8_formats_compares_variants(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "formats.json"
    rc = int8_formats.main(
        ["--model", str(model_dir), "--variants", "s8-portable,s7-portable", "--repeats", "3", "--no-emulation",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    result = json.loads(out.read_text())
    full, seven = result["variants"]["s8-portable"], result["variants"]["s7-portable"]
    # 7-bit weights are the less accurate format: what the shipped default trades against.
    assert 0.999 <= seven["cosine_to_fp32_min"] < full["cosine_to_fp32_min"]
    assert full["model_only_ms_p50"] > 0 and result["machine"]["kernel_path"]
    assert "| s8-portable" in out.with_suffix(".md").read_text()


def test_the_variants_are_quantizer_settings_and_the_shipped_one_is_the_default() -> None:
    settings = {name: QuantSettings(**changes) for name, (_, changes) in VARIANTS.items()}
    assert settings["s8-portable"] == QuantSettings()  # "(shipped)": the build's default format
    assert "(shipped)" in VARIANTS["s8-portable"][0] and len(set(settings.values())) == len(settings)
    assert settings["s7-portable"].reduce_range and not settings["s8"].portable_softmax
    assert settings["u8"].weight_type == "uint8"


def test_the_table_says_what_ran_where() -> None:
    row: dict[str, Any] = {"description": "d", "session_config": {"session.x64quantprecision": "1"},
                           "cosine_to_fp32_min": 0.9991, "cosine_to_fp32_mean": 0.9995, "model_only_ms_p50": 50.0,
                           "session_create_ms": 120.0,
                           "emulated": {EMULATED[0]: {"agreement_min": 1.0, "bit_identical": True},
                                        EMULATED[1]: {"not_run": "no qemu"}}}  # fmt: skip
    result = {"machine": {"summary": "CPU X [x86-avx2]", "onnxruntime": "1.2"}, "fp32_model_only_ms_p50": 100.0,
              "repeats": 3, "images": 17, "emulated_images": 5,
              "variants": {"s8-portable": row, "u8": {**row, "session_config": {}, "emulated": {}}}}  # fmt: skip
    lines = markdown(result).splitlines()
    assert lines[0].startswith("Machine: CPU X [x86-avx2], onnxruntime 1.2.") and "fp32 100.0 ms" in lines[0]
    header, rule, shipped, other = lines[2:]
    assert header.count("|") == rule.count("|") == shipped.count("|") == 7 + len(EMULATED)
    assert "session.x64quantprecision=1" in shipped and "| 2.00× |" in shipped
    assert (
        "| 1.0000000 (yes) | not run |" in shipped and "| none |" in other and other.endswith("| not run | not run |")
    )


def test_an_unknown_variant_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        int8_formats.main(["--model", str(tmp_path), "--variants", "s8,s9"])
    assert "unknown variants ['s9']" in capsys.readouterr().err
