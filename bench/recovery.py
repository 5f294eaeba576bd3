"""What the recovery does to checkpoints that fail plain int8, full size, on this CPU.

    .venv/bin/python -m bench.recovery [--seeds 0 1 2] [--cross-cpu auto] [--work DIR]

Builds (``build-model``) ViT-B/32 checkpoints given trained CLIP's outliers (``bench/checkpoints.py``, image
tower only, one per seed), and the random-init model with ``--min-cosine 0.9999`` (both towers), then
tabulates from each manifest, per tower: the gate before and after, the method, the nodes kept in fp32 and
their share of the multiply-accumulates, the model-only ms (int8 / shipped / fp32, one thread, as the build
measured them) and every CPU path's result. Results: ``bench/results/<cpu>/recovery.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import results_dir, write_report


def build(source: str, out: Path, *extra: str) -> Path:
    if not (out / "manifest.json").exists():
        cmd = [sys.executable, "-m", "layer.convert", "build-model", "--source", source, "--out", str(out), *extra]
        subprocess.run(cmd, check=True)
    return out


def summarize(model: Path) -> dict[str, Any]:
    m = json.loads((model / "manifest.json").read_text())
    towers = {}
    for name, t in m["towers"].items():
        r = t["recovery"]
        shipped: dict[str, Any] = next((c for c in r.get("candidates") or [] if c.get("shipped")), {})
        towers[name] = {
            "before": (r.get("before") or {}).get("cosine_min", t["accuracy_gate"]["cosine_min"]),
            "after": t["accuracy_gate"]["cosine_min"],
            "threshold": t["accuracy_gate"]["threshold"],
            "method": r["method"],
            "kept_fp32": len(r["kept_fp32"]),
            "kept_macs_fraction": shipped.get("macs_fraction_fp32", 0.0),
            "candidates": r.get("candidates"),
            "speed": t["speed"],
            "paths": {
                p["path"]: {k: p.get(k) for k in ("status", "how", "cosine_min", "agreement_min")}
                for p in t["cpu_paths"]
            },
            "planning_seconds": r.get("planning_seconds"),
        }
    return {"model_id": m["model_id"], "towers": towers, "build_seconds": m["build_seconds"]}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| model | tower | gate before → after (min cosine) | method | kept fp32 (share of MACs) | "
        "int8 / shipped / fp32 ms | CPU paths |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, model in result["models"].items():
        for tower, t in model["towers"].items():
            s = t["speed"]
            paths = ", ".join(
                f"{p} {v['status']}" + (f" {v['cosine_min']:.6f}" if v.get("cosine_min") else "")
                for p, v in t["paths"].items()
                if v["status"] != "not_run"
            )
            lines.append(
                f"| {name} | {tower} | {t['before']:.6f} → {t['after']:.6f} (≥ {t['threshold']}) | {t['method']} | "
                f"{t['kept_fp32']} ({t['kept_macs_fraction']:.1%}) | {s['int8']} / {s['shipped']} / {s['fp32']} | "
                f"{paths} |"
            )
    return "\n".join(lines) + "\n\nms: model only, one thread, as the build measured them (median).\n"


def main(argv: list[str] | None = None) -> int:
    from bench.checkpoints import Outliers, write_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cross-cpu", default="auto", choices=["auto", "required", "off"])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=results_dir() / "recovery.json")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="clip-recovery-"))
    models: dict[str, Any] = {}
    for seed in args.seeds:
        ckpt = work / f"outliers-{seed}-ckpt"
        if not (ckpt / "config.json").exists():
            write_checkpoint(ckpt, "ViT-B-32", seed=seed, outliers=Outliers(seed=seed))
        model = build(str(ckpt), work / f"outliers-{seed}", "--no-text", "--cross-cpu", args.cross_cpu)
        models[f"ViT-B/32 + outliers, seed {seed}"] = summarize(model)
    strict = build(
        "random-init", work / "strict", "--min-cosine", "0.9999", "--cross-cpu", args.cross_cpu, "--labels", "none"
    )  # the towers are the subject here, not the tags
    models["random-init, --min-cosine 0.9999"] = summarize(strict)
    print(write_report({"models": models}, args.out, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
