"""Which checkpoint to build (bench/architectures.py): its table, from a tiny result."""

from __future__ import annotations

from bench.architectures import markdown


def test_one_row_per_architecture_with_its_figures() -> None:
    towers = {"image": {"int8": 40.1, "fp32": 120.5}, "text": {"int8": 9.0, "fp32": 20.0}}
    result = {"architectures": {
        "ViT-B-32": {"dim": 512, "towers": towers, "peak_rss_mib": 610.0, "self_check_ms": 95.0,
                     "usd_per_million_images_1024mb": 1.12},
        "ViT-L-14": {"dim": 768, "towers": towers, "peak_rss_mib": 1900.0, "self_check_ms": 900.0,
                     "usd_per_million_images_1024mb": 14.0},
    }}  # fmt: skip
    lines = markdown(result).splitlines()
    assert lines[2] == "| ViT-B-32 | 512 | 40.1 | 120.5 | 9.0 | 20.0 | 610.0 | 95.0 | 1.12 |"
    assert lines[3].startswith("| ViT-L-14 | 768 |") and lines[3].endswith("| 14.0 |")
    assert all(line.count("|") == lines[0].count("|") == 10 for line in lines[:4])
    assert "Random weights at the published geometry" in lines[-1]
