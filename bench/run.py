"""``clip-lambda bench``: every contender on the same images and thread count, in one run.

Figures are reported as ratios against fastembed measured in the same run, never as absolute pass/fail.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.contenders import CONTENDERS
from bench.machine import machine, results_dir
from bench.report import summarise, write_markdown, write_plot
from bench.workloads import make_workloads
from layer.manifest import Manifest

ROOT = Path(__file__).resolve().parent.parent


def run(args: argparse.Namespace) -> dict[str, object]:
    from layer import Limits
    from layer.config import PreprocessConfig
    from layer.embedder import pixel_values
    from layer.manifest import PREPROCESSOR_FILE

    cache = ROOT / ".cache" / "bench-images"
    workloads = make_workloads(cache, args.count)
    config = PreprocessConfig.from_file(Path(args.model) / PREPROCESSOR_FILE)
    png = next(w for w in workloads if w.name == "png-640x480")
    tensors = np.stack([pixel_values(f.read_bytes(), config, Limits(), fast_jpeg=False)[0] for f in png.files])
    selected = [w for w in workloads if w.name in args.workloads]
    with tempfile.TemporaryDirectory(prefix="clip-bench-") as tmp:
        spec = Path(tmp) / "workloads.json"
        spec.write_text(json.dumps({w.name: [str(f) for f in w.files] for w in selected}))
        np.save(spec.with_suffix(".npy"), tensors)
        cold_image = next(w for w in workloads if w.name == "jpeg-1080p").files[0]
        raw: dict[str, dict[str, object]] = {}
        for name in args.contenders:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            spawned = time.time()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.worker",
                    "--contender",
                    name,
                    "--model",
                    str(args.model),
                    "--threads",
                    str(args.threads),
                    "--workloads",
                    str(spec),
                    "--cold-image",
                    str(cold_image),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            out["spawned_at"] = spawned
            raw[name] = out
    manifest = Manifest.read(args.model)
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine(),
        "threads": args.threads,
        "images_per_workload": args.count,
        "model": {"id": manifest.model_id, "dir": str(args.model)},
        "workloads": {w.name: w.description for w in selected},
        "summary": summarise(raw),
        "raw": raw,
    }


def main(argv: list[str] | None = None) -> int:
    from layer.session import CpuBudget

    p = argparse.ArgumentParser(prog="clip-lambda bench", description=__doc__)
    p.add_argument("--model", type=Path, default=ROOT / "build" / "model")
    p.add_argument("--count", type=int, default=8, help="images per workload")
    p.add_argument("--threads", type=int, default=CpuBudget.detect().threads)
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--workloads", nargs="+", default=["jpeg-12mp", "jpeg-1080p", "png-640x480", "model-only"])
    p.add_argument("--out", type=Path, default=results_dir(), help="default: bench/results/<this CPU kind>/")
    p.add_argument("--name", default="latest", help="basename of the result files")
    args = p.parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = write_markdown(result, args.out / f"{args.name}.md")
    write_plot(result, args.out / f"{args.name}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
