"""What the recovery does, tabulated (bench/recovery.py): a model directory's manifest summarized per tower,
and its table (the builds themselves: tests/layer/convert/test_recovery.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.recovery import markdown, summarize


def tower(recovery: dict[str, Any], cosine_min: float) -> dict[str, Any]:
    return {
        "recovery": recovery,
        "accuracy_gate": {"cosine_min": cosine_min, "threshold": 0.999},
        "speed": {"int8": 40.0, "shipped": 52.0, "fp32": 120.0},
        "cpu_paths": [
            {"path": "x86-avx2", "status": "passed", "how": "native", "cosine_min": 0.9993, "agreement_min": 1.0},
            {"path": "arm64-i8mm", "status": "not_run", "how": "none"},
        ],
    }


def test_a_manifest_is_summarized_per_tower(tmp_path: Path) -> None:
    recovered = {"method": "smoothquant+keep_fp32", "kept_fp32": ["fc1", "fc2"], "before": {"cosine_min": 0.91},
                 "planning_seconds": 12.5, "candidates": [{"shipped": False, "macs_fraction_fp32": 0.2},
                                                          {"shipped": True, "macs_fraction_fp32": 0.05}]}  # fmt: skip
    towers = {"image": tower(recovered, 0.9993), "text": tower({"method": "int8", "kept_fp32": []}, 0.9999)}
    manifest = {"model_id": "m", "build_seconds": {"image tower: export": 3.0}, "towers": towers}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    got = summarize(tmp_path)
    image, text = got["towers"]["image"], got["towers"]["text"]
    assert (image["before"], image["after"], image["kept_fp32"], image["kept_macs_fraction"]) == (0.91, 0.9993, 2, 0.05)
    assert image["paths"]["arm64-i8mm"] == {
        "status": "not_run",
        "how": "none",
        "cosine_min": None,
        "agreement_min": None,
    }
    assert (text["before"], text["after"], text["kept_macs_fraction"]) == (0.9999, 0.9999, 0.0)  # nothing to recover
    assert (got["model_id"], got["build_seconds"]) == ("m", {"image tower: export": 3.0})

    lines = markdown({"models": {"ViT-B/32 + outliers": got}}).splitlines()
    assert lines[2] == (
        "| ViT-B/32 + outliers | image | 0.910000 → 0.999300 (≥ 0.999) | smoothquant+keep_fp32 | 2 (5.0%) "
        "| 40.0 / 52.0 / 120.0 | x86-avx2 passed 0.999300 |"
    )
    assert lines[3].startswith("| ViT-B/32 + outliers | text | 0.999900 → 0.999900") and "arm64" not in lines[3]
