"""Which checkpoint to build: ViT-B/32, B/16, L/14 (and L/14-336) side by side on this CPU, full size.

    .venv/bin/python -m bench.architectures [--archs ViT-B-32 ViT-B-16 ViT-L-14] [--out ...]

For each published geometry (random weights: the Hub is out of reach; the speed and memory of a model do
not depend on its weights, its accuracy does) it writes a ``save_pretrained`` checkpoint, builds the model
directory (``build-model``, both towers, ``--cross-cpu off``), then in a fresh process per model measures:
the image tower's model-only ms per image (int8 and fp32, one thread: the Lambda default of 1,024 MB), the
text tower's, the peak RSS of a process that loaded both towers and embedded one photo, the INIT
self-check's ms, the files' sizes, and from the image ms the compute cost per million images at 1,024 MB
(x86 price, at the vCPU share Lambda gives 1,024 MB). Results: ``bench/results/<cpu>/architectures.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import results_dir, write_report
from layer.settings import LAMBDA_MB_PER_VCPU

X86_GB_SECOND = 0.0000166667  # USD, us-east-1, first tier (2026 price page)
REQUEST = 0.20 / 1e6
MEMORY_MB = 1024


def measure(model: Path, runs: int = 12) -> dict[str, Any]:
    """In this (fresh) process: speeds, self-check, RSS."""

    import numpy as np

    from layer import Embedder
    from layer.convert.towers import fp32_view, model_ms
    from layer.cpu import CpuInfo, probe_u8s8
    from layer.manifest import Manifest
    from layer.settings import EngineSettings
    from layer.tower import TowerSession

    manifest = Manifest.read(model)
    cpu = CpuInfo.detect()
    probe = probe_u8s8(cpu.arch)
    out: dict[str, Any] = {"model_id": manifest.model_id, "dim": manifest.dim, "towers": {}}
    inputs = {
        "image": np.zeros((1, *manifest.image.input["shape"][1:]), dtype=np.float32),
        "text": np.full((1, 77), 49407, dtype=np.int64),
    }
    inputs["text"][0, :5] = [49406, 320, 1125, 539, 49407]
    for name, spec in manifest.towers.items():
        common = {"cpu": cpu, "engine": EngineSettings(), "threads": 1, "probe": probe}
        sessions = {
            "int8": TowerSession.load(model, spec, precision="int8", **common),  # type: ignore[arg-type]
            "fp32": TowerSession.load(model, fp32_view(spec), precision="fp32", **common),  # type: ignore[arg-type]
        }
        ms = model_ms(sessions, inputs[name], runs=runs)
        out["towers"][name] = {
            **ms,
            "fp32_vs_int8": round(ms["fp32"] / ms["int8"], 2),
            "kept_fp32": len(spec.kept_fp32),
            "int8_mb": round((model / spec.file).stat().st_size / 2**20, 1),
            "fp32_mb": round((model / spec.fp32_file).stat().st_size / 2**20, 1),
        }
        del sessions
    engine = Embedder.from_dir(model, threads=1, text=True)
    check = engine.self_check
    out["self_check_ms"] = check.ms if check else None  # both towers' canaries, one thread
    out["self_check_passed"] = check.passed if check else None
    image_s = out["towers"]["image"]["int8"] / 1e3
    out["usd_per_million_images_1024mb"] = usd_per_million(image_s)
    return out


def usd_per_million(image_s_one_vcpu: float, memory_mb: int = MEMORY_MB) -> float:
    """Compute cost of the model alone per million images: Lambda gives ``memory_mb / 1769`` of a vCPU (below
    1,769 MB), so one image takes ``image_s x 1769 / memory_mb`` seconds at ``memory_mb / 1024`` GB: the
    GB-seconds do not depend on the size (``image_s x 1769 / 1024``) while the size stays under one vCPU."""
    seconds = image_s_one_vcpu * LAMBDA_MB_PER_VCPU / min(memory_mb, LAMBDA_MB_PER_VCPU)
    return round(1e6 * (seconds * memory_mb / 1024 * X86_GB_SECOND + REQUEST), 2)


def peak_rss(model: Path) -> float:
    """In this (fresh) process: MiB of the API function's work, both towers loaded and one photo embedded."""
    from layer import Embedder
    from layer.convert.calibration import sample_photo_paths

    engine = Embedder.from_dir(model, threads=1, text=True)
    engine.embed_one(sample_photo_paths()[0].read_bytes())  # china.jpg, a real 640x427 camera JPEG
    engine.embed_text("a photo of a cat")
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build(arch: str, work: Path) -> Path:
    from bench.checkpoints import write_checkpoint

    ckpt, model = work / f"{arch}-ckpt", work / f"{arch}-model"
    if not (model / "manifest.json").exists():
        write_checkpoint(ckpt, arch, seed=0)
        cmd = [sys.executable, "-m", "layer.convert", "build-model", "--source", str(ckpt), "--out", str(model),
               "--cross-cpu", "off"]  # fmt: skip
        subprocess.run(cmd, check=True)
    return model


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| model | dim | image int8 ms | image fp32 ms | text int8 ms | text fp32 ms | peak RSS MiB | "
        "self-check ms | $ per 1M images (compute, 1,024 MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, r in result["architectures"].items():
        i, t = r["towers"]["image"], r["towers"]["text"]
        lines.append(
            f"| {arch} | {r['dim']} | {i['int8']} | {i['fp32']} | {t['int8']} | {t['fp32']} | {r['peak_rss_mib']} | "
            f"{r['self_check_ms']} | {r['usd_per_million_images_1024mb']} |"
        )
    return (
        "\n".join(lines)
        + "\n\nRandom weights at the published geometry (speed and memory do not depend on the weights).\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["ViT-B-32", "ViT-B-16", "ViT-L-14"])
    ap.add_argument("--work", type=Path, default=None, help="where the checkpoints and models go (kept)")
    ap.add_argument("--out", type=Path, default=results_dir() / "architectures.json")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the fresh processes' jobs
    ap.add_argument("--rss", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    if args.rss:
        print(json.dumps(peak_rss(args.rss)))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="clip-archs-"))
    results = {}
    for arch in args.archs:
        model = build(arch, work)
        proc = subprocess.run(
            [sys.executable, "-m", "bench.architectures", "--measure", str(model)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        results[arch] = json.loads(proc.stdout.strip().splitlines()[-1])
        rss = subprocess.run([sys.executable, "-m", "bench.architectures", "--rss", str(model)],
                             check=True, capture_output=True, text=True)  # fmt: skip
        results[arch]["peak_rss_mib"] = json.loads(rss.stdout.strip().splitlines()[-1])
        print(arch, results[arch], file=sys.stderr, flush=True)
    print(write_report({"architectures": results, "memory_mb": MEMORY_MB}, args.out, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
