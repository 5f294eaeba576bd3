"""What zero-shot tags cost per image: ``Tagger.tag`` (one [labels, dim] x [dim] product and a partial sort)
against the image tower's inference, measured in the same run on this CPU.

    .venv/bin/python -m bench.tags --model build/model [--runs 2000]

For the default vocabulary's size (``layer/convert/labels.txt``) and for 5,000 labels (the build's limit), at
512-d (ViT-B) and 768-d (ViT-L), with label vectors as the build writes them (float32 unit rows); the peer
is the model directory's image tower, one thread, on the same photo. Writes bench/results/<cpu kind>/tags.json
and .md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import results_dir, write_report
from layer.convert.labels import DEFAULT_LABELS, MAX_LABELS, read_labels
from layer.manifest import LABELS_FILE, LABELS_NAMES_FILE, TagSpec
from layer.tags import Tagger


def tag_us(n: int, dim: int, runs: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = TagSpec(file=LABELS_FILE, names_file=LABELS_NAMES_FILE, prompt="a photo of a {}.", count=n)
    tagger = Tagger([f"l{i}" for i in range(n)], vectors, spec)
    image = vectors[0] + 0.1 * rng.standard_normal(dim).astype(np.float32)
    image /= np.linalg.norm(image)
    tagger.tag(image)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        tagger.tag(image)
        times.append((time.perf_counter() - t0) * 1e6)
    return round(statistics.median(times), 1)


def image_ms(model: Path) -> float:
    """The image tower's model-only ms per image, one thread, int8 as shipped (median of 12)."""
    from layer.convert.towers import model_ms
    from layer.cpu import CpuInfo, probe_u8s8
    from layer.manifest import Manifest
    from layer.settings import EngineSettings
    from layer.tower import TowerSession

    spec = Manifest.read(model).image
    cpu = CpuInfo.detect()
    session = TowerSession.load(model, spec, precision="int8", cpu=cpu, engine=EngineSettings(), threads=1,
                                probe=probe_u8s8(cpu.arch))  # fmt: skip
    x = np.zeros((1, *spec.input["shape"][1:]), dtype=np.float32)
    return model_ms({"int8": session}, x)["int8"]


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Tags per image (median of {result['runs']} calls, 1 thread) against the image tower's inference "
        f"({result['inference_ms']} ms, model only, same run, {result['model']}).",
        "",
        "| labels | dim | µs per image | share of inference |",
        "|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['labels']:,} | {r['dim']} | {r['us']} | {r['share_of_inference']:.2%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a model directory (its image tower is the peer)")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=results_dir() / "tags.json")
    args = ap.parse_args(argv)
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    from threadpoolctl import threadpool_limits

    inference_ms = image_ms(args.model)
    default = len(read_labels(DEFAULT_LABELS))
    rows = []
    with threadpool_limits(1):  # numpy's BLAS at one thread, as the image sets it (OPENBLAS_NUM_THREADS=1)
        for n in (default, MAX_LABELS):
            for dim in (512, 768):
                us = tag_us(n, dim, args.runs)
                rows.append({"labels": n, "dim": dim, "us": us, "share_of_inference": us / 1e3 / inference_ms})
    result = {"runs": args.runs, "model": str(args.model), "inference_ms": inference_ms, "rows": rows}
    print(write_report(result, args.out, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
